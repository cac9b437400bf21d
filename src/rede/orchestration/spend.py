"""What one call may spend: its size, its reservation on the caps, and the task's budget.

Before a call the orchestrator sizes it (:func:`call_size`: the prompt estimated from the
task's text, and a worst case that bounds any prompt an agent's template can make of it plus
the completion it is allowed), reserves that worst case on the run's and the network's caps,
cut to what they have left (:func:`before_call`), and sends the reservation in the task's
:class:`~rede.protocol.messages.Budget`; the agent keeps within it. An agent whose own prompt
does not fit answers with a failed result marked ``over_budget``, which ends the run with
``RunLimitExceeded`` when a cap cut the reservation (:func:`refused_for_budget`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from rede.errors import RunLimitExceeded
from rede.models._base import tokens_for_chars
from rede.orchestration.state import RunState
from rede.protocol.messages import Budget, Critique, Result
from rede.routing.budget import CallSize, Reservation, reserve
from rede.routing.router import Route

TEMPLATE_TOKENS = 1024
"""Room for the prompt template around a task's text (the bundled ones are under 700 bytes)."""
MIN_COMPLETION_TOKENS = 512
"""The least completion a call is allowed when the caps have room: twice the expected one,
and never less than this."""


def call_size(
    s: RunState, route: Route, texts: Iterable[str], metadata: Mapping[str, Any]
) -> CallSize:
    """The call's size: ``texts`` are what its prompt is built from (instruction, request,
    context). The worst-case prompt counts every byte a token (a byte-level tokenizer's
    most), each text twice (a template may show the request and a draft twice), the
    metadata and :data:`TEMPLATE_TOKENS`."""
    texts = list(texts)
    prompt = max(1, tokens_for_chars(sum(len(t) for t in texts)))
    merged = {**s.metadata, **metadata}
    extra = json.dumps(merged, default=str) if merged else "{}"
    worst_prompt = 2 * sum(map(_utf8_len, texts)) + _utf8_len(extra)
    router = s.services.router
    _, completion = router.expected_tokens(route.agent, route.capability, prompt)
    allowed = max(MIN_COMPLETION_TOKENS, 2 * round(completion))
    views = router.registry.agents(route.capability)
    card = next((v.card for v in views if v.name == route.agent), None)
    if card is not None:
        price_in, price_out = card.price_in_per_1k, card.price_out_per_1k
    else:  # the agent vanished: price every token at the route's expected average
        price_in = price_out = route.expected_cost_usd * 1000 / max(1, route.expected_tokens)
    return CallSize(prompt, worst_prompt + TEMPLATE_TOKENS + allowed, price_in, price_out)


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


async def before_call(s: RunState, route: Route, size: CallSize, *, wait: bool) -> Reservation:
    """Count the call against max_steps and reserve its spend on the run's and the network's
    caps; raise, naming the limit, when it cannot be made. ``wait``: wait for calls in flight
    to settle when the caps are short (not for a question asked from inside a call, whose
    asker holds what it waits for)."""
    s.calls += 1
    limits = s.limits
    if s.calls > limits.max_steps:
        raise RunLimitExceeded(
            "max_steps",
            limits.max_steps,
            s.calls - 1,
            "step executions, planning and critiques included",
        )
    caps = (s.budget, s.services.network_budget)
    return await reserve(caps, size, f"the next call to {route.agent}", wait=wait)


def task_budget(reservation: Reservation) -> Budget:
    """The bounds the task carries: what was reserved for it, where a cap bounds it."""
    return Budget(
        max_tokens=max(1, reservation.max_tokens) if reservation.max_tokens is not None else None,
        max_cost_usd=reservation.max_cost_usd,
    )


def refused_for_budget(
    payload: Result | Critique, reservation: Reservation, size: CallSize, agent: str
) -> RunLimitExceeded | None:
    """The error that ends the run when the agent found no room for its prompt in a task a
    cap cut short; None when the reply is no such refusal or no cap cut it (a failure)."""
    if not (isinstance(payload, Result) and payload.status == "failed" and payload.data):
        return None
    refusal = payload.data.get("over_budget")
    if not isinstance(refusal, dict) or reservation.clamped is None:
        return None
    prompt = int(refusal.get("prompt_tokens", size.prompt_tokens))
    needed = CallSize(prompt, prompt + 1, size.price_in_per_1k, size.price_out_per_1k)
    return reservation.clamped.refusal(needed, f"{agent}'s prompt")
