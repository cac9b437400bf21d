"""A person in the loop: a run pauses until someone approves a plan or a step's output, or
answers an agent's question addressed to ``human``.

The run records what it waits for in its checkpoint (status ``waiting``: ``rede runs`` shows
it), emits a ``waiting_for_human`` event, and looks in the ledger every ``human.poll_s`` for
an answer, which ``rede approve`` / ``rede reply`` or :meth:`rede.Network.approve` write from
any process. No model is called while it waits, and the wait does not count against the
run's ``wall_time_s``. A process that stops while a run waits leaves it paused in the ledger:
``rede resume`` (or ``rede serve`` at start) takes it up again, and an answer given in the
meantime is found at once. ``human.timeout_s`` with ``on_timeout`` decides what happens when
nobody answers: fail the step, accept, or answer with ``human.default``.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import time
from typing import Any, Literal

from rede.errors import ConfigError, StepFailed
from rede.orchestration.durable import Wait
from rede.orchestration.ledger import Ledger
from rede.orchestration.state import RunState
from rede.protocol.messages import Result

WaitKind = Literal["plan", "step", "input"]
HUMAN = "human"
"""The capability an agent asks (``ctx.ask("human", question)``) to put a question to a person."""


async def ask_person(
    s: RunState, wait_id: str, kind: WaitKind, step: str, prompt: str, show: str = ""
) -> dict[str, Any]:
    """Wait for a person's answer to ``wait_id``: ``{"approved", "text", "by", "reason"}``.
    An answer already in the ledger (given while the run was paused) is taken at once."""
    ledger, conf = s.services.ledger, s.services.human
    answer = ledger.answer_for(s.run_id, wait_id)
    if answer is None:
        wait = Wait(
            id=wait_id,
            kind=kind,
            step=step,
            prompt=prompt,
            show=show,
            since=time.time(),
            timeout_s=conf.timeout_s,
        )
        answer = await _wait(s, wait)
    s.checkpoint.waiting.pop(wait_id, None)
    s.checkpoint.status = "waiting" if s.checkpoint.waiting else "running"
    s.save()
    s.decide("human_answer", wait=wait_id, step=step, **answer)
    s.emit("human_answered", wait=wait_id, step=step, approved=answer.get("approved", True))
    return answer


async def _wait(s: RunState, wait: Wait) -> dict[str, Any]:
    ledger, conf = s.services.ledger, s.services.human
    s.checkpoint.waiting[wait.id] = wait
    s.checkpoint.status = "waiting"
    s.save()
    s.decide("human_wait", wait=wait.id, kind=wait.kind, step=wait.step, prompt=wait.prompt)
    s.emit(
        "waiting_for_human",
        wait=wait.id,
        kind=wait.kind,
        step=wait.step,
        prompt=wait.prompt,
        show=wait.show,
        timeout_s=wait.timeout_s,
    )
    started = time.monotonic()
    answered = s.services.answered.setdefault((s.run_id, wait.id), asyncio.Event())
    try:
        while (answer := ledger.answer_for(s.run_id, wait.id)) is None:
            if conf.timeout_s is not None and time.monotonic() - started >= conf.timeout_s:
                return _on_timeout(s, wait)
            # an answer given in this process wakes the run at once; another process's is
            # only in the ledger, looked at every poll_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(answered.wait(), conf.poll_s)
        return answer
    finally:
        s.services.answered.pop((s.run_id, wait.id), None)
        if s.clock is not None and s.clock.when() is not None:  # waiting costs no wall time
            s.clock.reschedule(s.clock.when() + time.monotonic() - started)  # type: ignore[operator]


def _on_timeout(s: RunState, wait: Wait) -> dict[str, Any]:
    conf = s.services.human
    if conf.on_timeout == "fail":
        raise StepFailed(wait.step, f"no answer from a person within {conf.timeout_s:g}s")
    text = conf.default if conf.on_timeout == "default" else ""
    return {"approved": True, "text": text, "by": f"timeout ({conf.on_timeout})", "reason": ""}


async def approved(s: RunState, step_id: str, capability: str, result: Result) -> Result:
    """A person approves a step's output (and may replace it with their own text). A
    rejection, or no answer in time under ``on_timeout: fail``, fails the step ``by_person``:
    the run fails (a person's no is not bypassed by ``on_step_failure``)."""
    prompt = f"Approve the output of step {step_id!r} ({capability})?"
    try:
        answer = await ask_person(s, f"step:{step_id}", "step", step_id, prompt, result.output)
    except StepFailed as exc:
        raise StepFailed(exc.step_id, exc.reason, by_person=True) from None
    if not answer.get("approved", True):
        raise StepFailed(step_id, f"a person rejected its output: {why(answer)}", by_person=True)
    if answer.get("text"):
        return result.model_copy(update={"output": answer["text"]})
    return result


def why(answer: dict[str, Any]) -> str:
    """Why a person said no, and who did."""
    return f"{answer.get('reason') or 'no reason given'} ({answer.get('by') or 'someone'})"


def needs_approval(s: RunState, capability: str, asked: bool) -> bool:
    """Whether a person approves a step's output: the plan marks it, or the network asks
    for every step of its capability."""
    return asked or capability in s.services.human.approve


def waits_of(ledger: Ledger, run_id: str) -> dict[str, dict[str, Any]]:
    """What the run waits for from a person now (from its checkpoint), by wait id."""
    row = ledger.load_run(run_id)
    if row is None:
        raise ConfigError(f"no run {run_id!r} with a checkpoint in this ledger")
    return dict(row.state.get("waiting") or {})


def answer_wait(
    ledger: Ledger,
    run_id: str,
    step: str | None,
    *,
    approved: bool = True,
    reason: str = "",
    text: str = "",
    by: str = "",
) -> str:
    """Write a person's answer for the run to find (``rede approve``/``rede reply``,
    :meth:`rede.Network.approve`); returns the id of the wait answered."""
    waits = waits_of(ledger, run_id)
    if step is None:
        if len(waits) != 1:
            what = ", ".join(sorted(waits)) or "nothing"
            raise ConfigError(
                f"run {run_id} waits for {what}; name the step to answer"
                if waits
                else f"run {run_id} is not waiting for a person"
            )
        wait_id = next(iter(waits))
    else:
        wait_id = next((w for w, d in waits.items() if d.get("step") == step), None) or (
            "plan" if step == "plan" else f"step:{step}"
        )
    answer = {"approved": approved, "reason": reason, "text": text, "by": by or _who()}
    if not ledger.answer(run_id, wait_id, answer):
        raise ConfigError(f"{wait_id} of run {run_id} was already answered")
    return wait_id


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "someone"


__all__ = [
    "HUMAN",
    "answer_wait",
    "approved",
    "ask_person",
    "needs_approval",
    "waits_of",
    "why",
]
