"""One call: a task routed to an agent, sent, awaited, accounted, retried and escalated.

:meth:`Calls.call` reads top to bottom: make sure an agent can serve the capability (spawn
one from a template, or wait up to the step timeout for a configured one to come back), then
until an answer is kept or the retries run out: route, reserve what the call may spend on the
budget caps (:mod:`rede.orchestration.spend`), send and wait, account for what came back, and
decide whether to keep it, retry (a failure, a lost reply: see :mod:`rede.orchestration.tries`)
or escalate (a cascade answer below its confidence threshold). Every choice is recorded as a
decision.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rede.errors import BusError, StepFailed
from rede.models._base import tokens_for_chars
from rede.orchestration.patience import ensure_agent, time_left
from rede.orchestration.run import CallRecord, StepRecord
from rede.orchestration.spend import before_call, call_size, refused_for_budget, task_budget
from rede.orchestration.state import ReaderStopped, RunState
from rede.orchestration.tries import Tries, expected_kind
from rede.orchestration.waits import Lost, wait_reply
from rede.protocol.messages import Budget, ContextItem, Critique, Envelope, Result, Task
from rede.protocol.topics import Topic
from rede.routing.auction import run_auction
from rede.routing.feedback import reported_confidence
from rede.routing.router import Route, RouteRequest
from rede.runtime._outlast import until_done


@dataclass(frozen=True)
class Ask:
    """What is asked of an agent."""

    capability: str
    instruction: str
    context: list[ContextItem]
    required_confidence: float = 0.0
    acceptance: str | None = None
    metadata: dict[str, Any] | None = None

    def texts(self, request: str) -> list[str]:
        """What the task's prompt is built from: instruction, request and context."""
        return [self.instruction, request, *(c.content for c in self.context)]


class Calls:
    """The call path of one run."""

    def __init__(self, state: RunState) -> None:
        self.s = state
        self.router = state.services.router

    async def call(self, rec: StepRecord, ask: Ask, *, agent: str | None = None) -> Any:
        """Route, send and await one task; retry, re-route and escalate as needed.

        ``agent`` pins the call to that agent (an agreement tier's member): no other agent
        is tried and no cascade escalation happens."""
        if rec.started_at is None:
            rec.started_at = self.s.elapsed()
        cascade = self.router.strategy_for(ask.capability) == "cascade" and agent is None
        tries = Tries(
            left=self.s.limits.step_retries + 1,
            cascade=cascade,
            threshold=max(self.router.config.escalate_below, ask.required_confidence),
        )
        while tries.left > 0:
            if tries.forced is None:
                await ensure_agent(self.s, rec, ask.capability, tries)
            route = tries.forced or await self._route(rec, ask, tries, agent)
            tries.forced = None
            if route is None:
                return self._no_route(rec, ask.capability, tries)
            payload = await self._attempt(rec, route, ask, tries)
            if payload is None or self._escalated(rec, route, payload, tries):
                continue
            return payload
        if tries.kept is not None:
            return self._keep(
                rec, tries.kept, f"no higher tier answered: {'; '.join(tries.failures)}"
            )
        raise StepFailed(rec.id, "; ".join(tries.failures))

    # ------------------------------------------------------------------ the steps of a call

    async def _route(
        self, rec: StepRecord, ask: Ask, tries: Tries, agent: str | None
    ) -> Route | None:
        prompt_tokens = max(1, tokens_for_chars(sum(map(len, ask.texts(self.s.request)))))
        live = self.router.candidates(ask.capability)
        req = RouteRequest(
            ask.capability,
            ask.required_confidence,
            exclude=tries.avoid(v.name for v in live if agent in (None, v.name)),
            min_rank=tries.floor,
            prompt_tokens=prompt_tokens,
            afford=self.s.affordable,
            only=agent,
            run_id=self.s.run_id,
            step_id=rec.id,
            sender=self.s.services.sender,
            reply_to=self.s.reply_topic,
            instruction=ask.instruction,
            task_timeout_s=self.s.limits.step_timeout_s,
            on_sent=self.s.sent,
        )
        if self.router.strategy_for(ask.capability) == "auction" and agent is None:
            return await run_auction(self.router, self.s.services.bus, req)
        return self.router.route(req)

    def _no_route(self, rec: StepRecord, capability: str, tries: Tries) -> Result:
        if tries.kept is not None:
            return self._keep(
                rec, tries.kept, f"no higher tier answered: {'; '.join(tries.failures)}"
            )
        raise StepFailed(
            rec.id,
            f"no live agent left for {capability!r}; "
            f"failures: {'; '.join(tries.failures) or 'none'}",
        )

    async def _attempt(
        self, rec: StepRecord, route: Route, ask: Ask, tries: Tries
    ) -> Result | Critique | None:
        """Send to the routed agent and account for its reply; None when it failed or was
        lost (recorded, and the agent excluded from this call's next tries)."""
        size = call_size(self.s, route, ask.texts(self.s.request), ask.metadata or {})
        reservation = await before_call(self.s, route, size, wait=rec.kind != "input")
        self.s.decide(
            "route",
            step=rec.id,
            capability=ask.capability,
            agent=route.agent,
            strategy=route.strategy,
            reason=route.reason,
            tier=route.tier,
            expected_cost_usd=route.expected_cost_usd,
            **route.details,
        )
        if ask.capability == rec.capability:
            rec.agent, rec.tier = route.agent, route.tier
        started = self.router.started(route.agent)
        service: float | None = None
        attempt = self.s.attempts.get(rec.id, 0)
        self.s.attempts[rec.id] = attempt + 1
        stranded = False
        try:
            payload = await self.send(rec, route, ask, attempt, task_budget(reservation))
            service = payload.usage.latency_s
        except Lost as lost:
            # a late reply may still come and be booked: its reservation stays until then
            stranded = self.s.strand(rec.id, reservation)
            tries.failed(route.agent, str(lost))
            self.router.observe_result(route.agent, ask.capability, ok=False)
            self.s.decide("reroute", step=rec.id, agent=route.agent, reason=str(lost))
            return None
        finally:  # also when cancelled: the router's load and the caps stay right
            self.router.finished(route.agent, started, service)
            if not stranded:
                reservation.release()
        refused = refused_for_budget(payload, reservation, size, route.agent)
        if refused is not None:
            raise refused
        payload = expected_kind(ask.capability, payload)
        ok = self._account(rec, route, ask.capability, payload, f"{rec.id}/{attempt}")
        if not ok:
            assert isinstance(payload, Result)
            tries.failed(route.agent, str(payload.error))
            self.s.decide("retry", step=rec.id, agent=route.agent, error=payload.error)
            return None
        return payload

    def _account(
        self, rec: StepRecord, route: Route, capability: str, payload: Result | Critique, key: str
    ) -> bool:
        """Book the reply's usage on the step, the run and the caps (``key``: a resumed run
        books no call twice); tell the router."""
        usage = payload.usage
        rec.usage = rec.usage + usage
        ok = not (isinstance(payload, Result) and payload.status == "failed")
        rec.calls.append(
            CallRecord(
                agent=route.agent,
                capability=capability,
                tier=route.tier,
                status="ok" if ok else "failed",
                usage=usage,
                confidence=getattr(payload, "confidence", 0.0),
                error=getattr(payload, "error", None),
            )
        )
        self.s.account(usage, key)
        self.router.observe_result(
            route.agent,
            capability,
            ok=ok,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            confidence=reported_confidence(payload) if ok else None,
        )
        return ok

    def _escalated(
        self, rec: StepRecord, route: Route, payload: Result | Critique, tries: Tries
    ) -> bool:
        """Cascade: escalate an answer below the threshold to the next tier, if one can be
        paid for (True: try again there); otherwise record why this answer stands."""
        if not (tries.cascade and isinstance(payload, Result)):
            return False
        facts = {"step": rec.id, "confidence": payload.confidence, "threshold": tries.threshold}
        if payload.confidence >= tries.threshold:
            reason = f"confidence {payload.confidence:.2f} >= {tries.threshold:.2f}"
        else:
            nxt = self.router.escalation(
                rec.capability, route.agent, exclude=tries.excluded | tries.failed_on
            )
            if nxt is None:
                reason = "below the threshold at the top tier; nothing to escalate to"
            elif not self.s.affordable(nxt.expected_cost_usd, nxt.expected_tokens):
                reason = (
                    f"below the threshold, but {nxt.agent} (about "
                    f"${nxt.expected_cost_usd:.6f}) does not fit the budget"
                )
                self.s.decide("escalation_skipped", to_agent=nxt.agent, **facts)
            else:
                self.s.decide(
                    "escalate",
                    from_agent=route.agent,
                    to_agent=nxt.agent,
                    from_tier=route.tier,
                    to_tier=nxt.tier,
                    reason=nxt.reason,
                    **facts,
                )
                tries.kept = (payload, route)
                tries.excluded.add(route.agent)
                tries.floor = self.router.rank_of(nxt.agent, rec.capability)
                tries.forced = nxt
                return True
        self.s.decide("answered", agent=route.agent, tier=route.tier, reason=reason, **facts)
        return False

    def _keep(self, rec: StepRecord, kept: tuple[Result, Route], reason: str) -> Result:
        """Cascade: the higher tiers failed; answer with the escalated lower-tier result."""
        result, route = kept
        if route.capability == rec.capability:
            rec.agent, rec.tier = route.agent, route.tier
        self.s.decide(
            "answered",
            step=rec.id,
            agent=route.agent,
            tier=route.tier,
            confidence=result.confidence,
            reason=f"kept the lower tier's answer; {reason}",
        )
        return result

    # ------------------------------------------------------------------ send and wait

    async def send(
        self, rec: StepRecord, route: Route, ask: Ask, attempt: int, budget: Budget
    ) -> Result | Critique:
        """Publish the task to the agent and wait for its reply, the agent's disappearance,
        the step timeout, or the run's reply reader dying (then raise, naming why)."""
        s = self.s
        env = self._task_envelope(rec, ask, attempt, budget)
        key = (rec.id, attempt)
        future: asyncio.Future[Result | Critique] = asyncio.get_running_loop().create_future()
        s.futures[key] = future
        s.sent_to[key] = (route, ask.capability)
        s.sent(env)
        s.emit(
            "step_started",
            step=rec.id,
            capability=ask.capability,
            agent=route.agent,
            attempt=attempt,
            tier=route.tier,
        )
        services = s.services
        if s.reader is not None and s.reader.done():  # no reply can come: say why, now
            raise _reader_gone(s)
        topic = Topic.task(ask.capability, route.agent)  # sent through any outage
        s.in_flight[key] = (topic, env)
        await until_done(lambda: services.bus.publish(topic, env), f"sending a task to {topic}")
        # one future, completed by whichever comes first: the reply (the reader), the agent
        # vanishing (a registry callback), the reader dying (its done callback, see
        # RunState.reader_stopped); the step timeout, counted from the agent's start of the
        # task and not its wait for a slot, is wait_reply's (see rede.orchestration.waits)
        lost = functools.partial(_fail, future)
        unwatch = services.registry.on_gone(
            route.agent, lambda: lost(Lost("agent vanished from the registry (missed heartbeats)"))
        )
        try:
            return await wait_reply(s, key, route.agent, ask.capability, future)
        except ReaderStopped:
            raise _reader_gone(s) from None
        finally:
            unwatch()
            s.futures.pop(key, None)
            s.started_at.pop(key, None)
            s.in_flight.pop(key, None)

    def _task_envelope(self, rec: StepRecord, ask: Ask, attempt: int, budget: Budget) -> Envelope:
        s = self.s
        timeout = s.limits.step_timeout_s
        return Envelope(
            run_id=s.run_id,
            step_id=rec.id,
            sender=s.services.sender,
            reply_to=str(s.reply_topic),
            attempt=attempt,
            deadline=datetime.now(UTC) + timedelta(seconds=_horizon(s)),
            payload=Task(
                capability=ask.capability,
                instruction=ask.instruction,
                request=s.request,
                context=ask.context,
                required_confidence=ask.required_confidence,
                acceptance=ask.acceptance,
                budget=budget,
                metadata={**s.metadata, **(ask.metadata or {})},
                idempotency_key=f"{s.run_id}/{rec.id}/{attempt}/{ask.capability}",
                timeout_s=timeout,
            ),
        )


def _horizon(s: RunState) -> float:
    """How long a task stays worth doing: a wait for the agent's slot (``slot_wait_s``,
    within the run's deadline) and then the step timeout of work."""
    timeout, wait = s.limits.step_timeout_s, s.limits.slot_wait_s
    horizon = timeout + (wait if wait is not None else float("inf"))
    left = time_left(s)
    if left is not None:
        horizon = min(horizon, left)
    return max(timeout, horizon) if horizon != float("inf") else timeout


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _reader_gone(s: RunState) -> BusError:
    reader = s.reader
    assert reader is not None
    error = None if reader.cancelled() else reader.exception()
    why = f"{type(error).__name__}: {error}" if error else "the subscription was closed"
    return BusError(f"replies to run {s.run_id} can no longer be read ({why})")


__all__ = ["Ask", "Calls", "Lost"]
