"""The Orchestrator: runs a plan on the bus.

Every ready step of the plan (``graphlib.TopologicalSorter``) is dispatched at once; results
flow as context to dependants; a step marked ``review`` is critiqued and refined until the
critic accepts or the round limit; a synthesis step writes the answer. Each call is routed
(see :mod:`rede.routing`), timed out, retried and re-routed to another agent with the same
capability when one fails, times out or vanishes from the registry. Replies are matched by
``(step, attempt)``, so a late or redelivered reply never produces a second result.
Run limits (steps, refine rounds, wall time, cost, tokens) end a run with an error naming
the limit; the partial run record travels on the error as ``exc.run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import graphlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from rede.budget import BudgetCap, Hold, hold_all
from rede.bus import Bus
from rede.config import LimitsConfig
from rede.dispatcher import Dispatcher
from rede.errors import BusError, ConfigError, RedeError, RunLimitExceeded, StepFailed
from rede.ledger import Ledger
from rede.messages import (
    Budget,
    ContextItem,
    Critique,
    Envelope,
    ErrorPayload,
    Event,
    InputReply,
    InputRequest,
    Result,
    Task,
    Usage,
    new_id,
)
from rede.plan import Plan, Step, validate_plan
from rede.registry import Registry
from rede.routing import Route, Router, RouteRequest, reported_confidence
from rede.run import CallRecord, RunResult, StepRecord, critical_path
from rede.topics import Topic

Observer = Callable[[Event], None]


class _Lost(Exception):
    """A call got no reply: the agent timed out or vanished."""


class Orchestrator:
    def __init__(
        self,
        bus: Bus,
        registry: Registry,
        router: Router,
        ledger: Ledger,
        limits: LimitsConfig,
        *,
        name: str = "orchestrator",
        publish_events: bool = True,
    ) -> None:
        self.bus = bus
        self.registry = registry
        self.router = router
        self.ledger = ledger
        self.limits = limits
        self.id = new_id(f"{name}-")
        self.dispatcher = Dispatcher(limits)
        self.publish_events = publish_events
        self.budget = BudgetCap("network", limits.network_max_cost_usd, limits.network_max_tokens)
        """What every run of this network together has spent, against the network caps."""

    async def run(
        self,
        request: str,
        *,
        metadata: dict[str, Any] | None = None,
        run_id: str | None = None,
        observer: Observer | None = None,
        plan: Plan | None = None,
    ) -> RunResult:
        run_id = run_id or new_id("run-")
        try:
            Topic.reply(run_id)
        except ValueError:
            raise ConfigError(
                f"invalid run_id {run_id!r}: use letters, digits, '_' and '-' only"
            ) from None
        run = _Run(self, request, metadata or {}, run_id, observer)
        return await run.execute(plan)


class _Run:
    def __init__(
        self,
        orch: Orchestrator,
        request: str,
        metadata: dict[str, Any],
        run_id: str,
        observer: Observer | None,
    ) -> None:
        self.o = orch
        self.limits = orch.limits
        self.request = request
        self.metadata = metadata
        self.run_id = run_id
        self.observer = observer
        self.reply_topic = Topic.reply(run_id)
        self.record = RunResult(run_id=run_id, request=request)
        self._futures: dict[tuple[str, int], asyncio.Future[Result | Critique]] = {}
        self._attempts: dict[str, int] = {}
        self._sent_to: dict[tuple[str, int], tuple[Route, str]] = {}
        """(step, attempt) -> the route and capability of the task sent, for late replies."""
        self._replies: set[str] = set()
        """Ids of the replies received, so a reply delivered twice is counted once."""
        self._calls = 0
        self._helpers: set[asyncio.Task[None]] = set()
        self._events: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._t0 = 0.0
        self.budget = BudgetCap("run", self.limits.max_cost_usd, self.limits.max_tokens)

    # ------------------------------------------------------------------ bookkeeping

    def emit(self, name: str, **data: Any) -> None:
        event = Event(name=name, data={"run_id": self.run_id, **data})
        if self.observer is not None:
            self.observer(event)
        if self.o.publish_events:
            env = Envelope(run_id=self.run_id, sender=self.o.id, payload=event)
            task = asyncio.create_task(self._publish_event(env))
            self._events.add(task)
            task.add_done_callback(self._events.discard)

    async def _publish_event(self, env: Envelope) -> None:
        with contextlib.suppress(RedeError):
            await self.o.bus.publish(Topic.events(), env)

    def decide(self, name: str, **data: Any) -> None:
        self.o.ledger.record_decision(self.run_id, name, **data)
        self.record.decisions.append({"name": name, **data})

    def _sent(self, env: Envelope) -> None:
        self.o.ledger.record_envelope("sent", env)
        self.record.envelopes.append(env)

    def _received(self, env: Envelope) -> None:
        self.o.ledger.record_envelope("received", env)
        self.record.envelopes.append(env)

    def _account(self, usage: Usage) -> None:
        self.record.usage = self.record.usage + usage
        errors: list[RunLimitExceeded] = []
        for cap in (self.budget, self.o.budget):  # both book the spend, even if one fails
            try:
                cap.charge(usage)
            except RunLimitExceeded as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    # ------------------------------------------------------------------ the run

    async def execute(self, plan: Plan | None) -> RunResult:
        self._t0 = time.perf_counter()
        self.record.started_at = datetime.now(UTC)
        sub = await self.o.bus.subscribe(self.reply_topic, group="orchestrator", consumer=self.o.id)
        reader = self._reader = asyncio.create_task(self._read_replies(sub))
        try:
            self.emit("run_started", request=self.request)
            try:
                async with asyncio.timeout(self.limits.wall_time_s):
                    await self._main(plan)
            except TimeoutError:
                raise RunLimitExceeded(
                    "wall_time_s", self.limits.wall_time_s, time.perf_counter() - self._t0
                ) from None
            self.record.status = "ok"
        except RedeError as exc:
            self.record.status = "failed"
            self.record.error = str(exc)
            self.decide("run_failed", error=str(exc), error_type=type(exc).__name__)
            exc.run = self.record
            raise
        finally:
            reader.cancel()
            for helper in list(self._helpers):
                helper.cancel()
            await asyncio.gather(reader, *self._helpers, return_exceptions=True)
            # the last events (the final step's) still go out to the bus's observers
            await asyncio.gather(*self._events, return_exceptions=True)
            await sub.aclose()
            with contextlib.suppress(RedeError):
                await self.o.bus.delete(self.reply_topic)
            self.record.wall_time_s = time.perf_counter() - self._t0
            self.record.critical_path, self.record.critical_path_s = critical_path(self.record)
            await self.emit_final()
        return self.record

    async def emit_final(self) -> None:
        """``run_finished`` to the observer and, awaited, to the bus's ``rede.events``."""
        usage = self.record.usage
        self.emit(
            "run_finished",
            status=self.record.status,
            error=self.record.error,
            wall_time_s=self.record.wall_time_s,
            total_tokens=usage.total_tokens,
            cost_usd=usage.cost_usd,
        )
        await asyncio.gather(*self._events, return_exceptions=True)

    async def _main(self, plan: Plan | None) -> None:
        capabilities = self.o.registry.capabilities() | self.o.router.spawnable()
        if plan is None:
            plan = await self.o.dispatcher.plan(
                self.request, capabilities, self._call_planner, self.decide
            )
        else:
            validate_plan(plan, capabilities, max_steps=self.limits.max_plan_steps)
        self.record.plan = plan
        self.emit("plan_ready", plan=plan.model_dump())
        outputs = await self._run_plan(plan)
        sinks = plan.sinks()
        if len(plan.steps) > 1 and "synthesise" in capabilities:
            context = [self._context_item(plan.step(s.id), outputs[s.id]) for s in plan.steps]
            rec = self._new_record(
                "synthesis",
                "synthesise",
                "Write the final answer.",
                [s.id for s in sinks],
                kind="synthesis",
            )
            result = await self._call(rec, "synthesise", rec.instruction, context)
            self._finish(rec, result)
            self.record.answer = result.output
        elif len(sinks) == 1:
            self.record.answer = outputs[sinks[0].id].output
        else:
            self.record.answer = "\n\n".join(outputs[s.id].output for s in sinks)
        self.record.confidence = min(
            (r.confidence for r in self.record.steps if r.kind != "plan" and r.status == "ok"),
            default=0.0,
        )

    async def _call_planner(self, instruction: str, metadata: dict[str, Any]) -> Result:
        n = sum(1 for r in self.record.steps if r.kind == "plan")
        rec = self._new_record(
            "plan" if n == 0 else f"plan.r{n}", "plan", instruction, [], kind="plan"
        )
        try:
            result = await self._call(rec, "plan", instruction, [], metadata=metadata)
        except StepFailed as exc:
            self._finish(rec, None)
            return Result(status="failed", error=exc.reason)
        self._finish(rec, result)
        return result

    async def _run_plan(self, plan: Plan) -> dict[str, Result]:
        sorter = graphlib.TopologicalSorter(plan.graph())
        sorter.prepare()
        outputs: dict[str, Result] = {}
        running: dict[asyncio.Task[Result], str] = {}
        try:
            while sorter.is_active():
                for step_id in sorter.get_ready():
                    step = plan.step(step_id)
                    context = [
                        self._context_item(plan.step(d), outputs[d]) for d in step.depends_on
                    ]
                    running[asyncio.create_task(self._run_step(step, context))] = step_id
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    step_id = running.pop(task)
                    outputs[step_id] = task.result()  # a failed step ends the run
                    sorter.done(step_id)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        return outputs

    @staticmethod
    def _context_item(step: Step, result: Result) -> ContextItem:
        return ContextItem(
            step_id=step.id, capability=step.capability, content=result.output, data=result.data
        )

    def _new_record(
        self,
        step_id: str,
        capability: str,
        instruction: str,
        depends_on: list[str],
        *,
        kind: str = "step",
    ) -> StepRecord:
        rec = StepRecord(
            id=step_id,
            capability=capability,
            instruction=instruction,
            depends_on=depends_on,
            kind=kind,
        )
        self.record.steps.append(rec)
        return rec

    def _finish(self, rec: StepRecord, result: Result | None) -> None:
        """Close a step record: ``result`` None means the step failed."""
        rec.status = "ok" if result is not None else "failed"
        if result is not None:
            rec.output = result.output
            rec.confidence = result.confidence
        rec.ended_at = time.perf_counter() - self._t0
        self.emit(
            "step_finished",
            step=rec.id,
            status=rec.status,
            agent=rec.agent,
            usage=rec.usage.model_dump(),
            confidence=rec.confidence,
            rounds=rec.rounds,
        )

    async def _run_step(self, step: Step, context: list[ContextItem]) -> Result:
        rec = self._new_record(step.id, step.capability, step.instruction, step.depends_on)
        try:
            result = await self._call(
                rec,
                step.capability,
                step.instruction,
                context,
                required_confidence=step.required_confidence,
                acceptance=step.acceptance,
                metadata=step.task_metadata(),
            )
            if step.review and "critique" in self.o.registry.capabilities():
                result = await self._review(rec, step, context, result)
        except RedeError:
            self._finish(rec, None)
            raise
        self._finish(rec, result)
        return result

    async def _review(
        self, rec: StepRecord, step: Step, context: list[ContextItem], result: Result
    ) -> Result:
        rounds = 0
        while True:
            draft = ContextItem(step_id=step.id, capability=step.capability, content=result.output)
            critique = await self._call(
                rec,
                "critique",
                f"Review the output of step {step.id!r}.",
                [draft],
                acceptance=step.acceptance,
            )
            assert isinstance(critique, Critique)
            rec.critiques.append(critique.model_dump(exclude={"usage"}))
            if rec.agent:
                self.o.router.observe_score(rec.agent, step.capability, critique.score)
            self.emit(
                "critique",
                step=step.id,
                score=critique.score,
                accepted=critique.accepted,
                round=rounds,
            )
            if critique.accepted:
                self.decide("accepted", step=step.id, round=rounds, score=critique.score)
                return result
            if rounds >= self.limits.max_refine_rounds:
                self.decide(
                    "round_limit",
                    step=step.id,
                    rounds=rounds,
                    score=critique.score,
                    action=self.limits.on_round_limit,
                )
                if self.limits.on_round_limit == "fail":
                    raise RunLimitExceeded(
                        "max_refine_rounds",
                        self.limits.max_refine_rounds,
                        rounds,
                        f"step {step.id!r} not accepted (last score {critique.score:.2f})",
                    )
                return result
            rounds += 1
            rec.rounds = rounds
            self.decide(
                "refine", step=step.id, round=rounds, score=critique.score, issues=critique.issues
            )
            feedback = ContextItem(
                step_id=f"{step.id}.critique",
                capability="critique",
                content=(
                    f"Critique of the previous draft (score {critique.score:.2f}): "
                    f"issues: {'; '.join(critique.issues) or 'none'}. "
                    f"Advice: {critique.advice or 'improve it'}"
                ),
            )
            previous = ContextItem(
                step_id=f"{step.id}.draft",
                capability=step.capability,
                content=f"Previous draft:\n{result.output}",
            )
            refined = await self._call(
                rec,
                step.capability,
                step.instruction,
                [*context, previous, feedback],
                acceptance=step.acceptance,
                metadata=step.task_metadata(),
            )
            assert isinstance(refined, Result)
            result = refined

    # ------------------------------------------------------------------ one call

    async def _call(
        self,
        rec: StepRecord,
        capability: str,
        instruction: str,
        context: list[ContextItem],
        *,
        required_confidence: float = 0.0,
        acceptance: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Any:
        """Route, send and await one task; retry, re-route and escalate as needed."""
        if rec.started_at is None:
            rec.started_at = time.perf_counter() - self._t0
        router = self.o.router
        spawned = await router.ensure(capability)
        if spawned is not None:
            self.decide(
                "spawn",
                step=rec.id,
                capability=capability,
                agent=spawned,
                reason=f"no live agent served {capability!r}; started {spawned} from its template",
            )
        excluded: set[str] = set()
        failures: list[str] = []
        forced: Route | None = None
        cascade = router.strategy_for(capability) == "cascade"
        threshold = max(router.config.escalate_below, required_confidence)
        floor: float | None = None  # cascade: after an escalation, retries stay at its tier
        kept: tuple[Result, Route] | None = None  # cascade: the answer that was escalated
        size = len(instruction) + len(self.request) + sum(len(c.content) for c in context)
        attempts_left = self.limits.step_retries + 1
        while attempts_left > 0:
            route = forced or await router.route(
                RouteRequest(
                    capability,
                    required_confidence,
                    exclude=excluded,
                    min_rank=floor,
                    prompt_tokens=size // 4 + 1,
                    afford=self._affordable,
                    run_id=self.run_id,
                    step_id=rec.id,
                    sender=self.o.id,
                    reply_to=self.reply_topic,
                    instruction=instruction,
                    task_timeout_s=self.limits.step_timeout_s,
                    on_sent=self._sent,
                ),
                self.o.bus,
            )
            forced = None
            if route is None:
                if kept is not None:
                    return self._keep(rec, kept, f"no higher tier answered: {'; '.join(failures)}")
                raise StepFailed(
                    rec.id,
                    f"no live agent left for {capability!r}; "
                    f"failures: {'; '.join(failures) or 'none'}",
                )
            holds = self._before_call(route)
            self.decide(
                "route",
                step=rec.id,
                capability=capability,
                agent=route.agent,
                strategy=route.strategy,
                reason=route.reason,
                tier=route.tier,
                expected_cost_usd=route.expected_cost_usd,
                **route.details,
            )
            if capability == rec.capability:
                rec.agent = route.agent
                rec.tier = route.tier
            started = router.started(route.agent)
            service: float | None = None
            try:
                payload = await self._send(
                    rec,
                    route,
                    capability,
                    instruction,
                    context,
                    required_confidence,
                    acceptance,
                    metadata,
                )
                service = payload.usage.latency_s
            except _Lost as lost:
                attempts_left -= 1
                failures.append(f"{route.agent}: {lost}")
                excluded.add(route.agent)
                router.observe_result(route.agent, capability, ok=False)
                self.decide("reroute", step=rec.id, agent=route.agent, reason=str(lost))
                continue
            finally:  # also when cancelled: the router's load and the caps stay right
                router.finished(route.agent, started, service)
                for hold in holds:
                    hold.release()
            payload = self._expected_kind(capability, payload)
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
            self._account(usage)
            router.observe_result(
                route.agent,
                capability,
                ok=ok,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                confidence=reported_confidence(payload) if ok else None,
            )
            if not ok:
                attempts_left -= 1
                failures.append(f"{route.agent}: {payload.error}")
                excluded.add(route.agent)
                self.decide("retry", step=rec.id, agent=route.agent, error=payload.error)
                continue
            if cascade and isinstance(payload, Result):
                facts = {"step": rec.id, "confidence": payload.confidence, "threshold": threshold}
                if payload.confidence >= threshold:
                    reason = f"confidence {payload.confidence:.2f} >= {threshold:.2f}"
                else:
                    nxt = router.escalation(capability, route.agent, exclude=excluded)
                    if nxt is None:
                        reason = "below the threshold at the top tier; nothing to escalate to"
                    elif not self._affordable(nxt.expected_cost_usd, nxt.expected_tokens):
                        reason = (
                            f"below the threshold, but {nxt.agent} (about "
                            f"${nxt.expected_cost_usd:.6f}) does not fit the budget"
                        )
                        self.decide("escalation_skipped", to_agent=nxt.agent, **facts)
                    else:
                        self.decide(
                            "escalate",
                            from_agent=route.agent,
                            to_agent=nxt.agent,
                            from_tier=route.tier,
                            to_tier=nxt.tier,
                            reason=nxt.reason,
                            **facts,
                        )
                        kept = (payload, route)
                        excluded.add(route.agent)
                        floor = router.rank_of(nxt.agent, capability)
                        forced = nxt
                        continue
                self.decide("answered", agent=route.agent, tier=route.tier, reason=reason, **facts)
            return payload
        if kept is not None:
            return self._keep(rec, kept, f"no higher tier answered: {'; '.join(failures)}")
        raise StepFailed(rec.id, "; ".join(failures))

    @staticmethod
    def _expected_kind(capability: str, payload: Result | Critique) -> Result | Critique:
        """A critic must answer with a critique and every other capability with a result; a
        reply of the other kind is a failed call, never trusted as it is."""
        expected = "critique" if capability == "critique" else "result"
        if payload.kind == expected:
            return payload
        return Result(
            status="failed",
            error=f"replied with a {payload.kind} to a {capability!r} task; expected a {expected}",
            usage=payload.usage,
        )

    def _keep(self, rec: StepRecord, kept: tuple[Result, Route], reason: str) -> Result:
        """Cascade: the higher tiers failed; answer with the escalated lower-tier result."""
        result, route = kept
        if route.capability == rec.capability:
            rec.agent, rec.tier = route.agent, route.tier
        self.decide(
            "answered",
            step=rec.id,
            agent=route.agent,
            tier=route.tier,
            confidence=result.confidence,
            reason=f"kept the lower tier's answer; {reason}",
        )
        return result

    def _affordable(self, cost_usd: float, tokens: int) -> bool:
        return all(c.shortfall(cost_usd, tokens) is None for c in (self.budget, self.o.budget))

    def _before_call(self, route: Route) -> list[Hold]:
        """Count the call against max_steps and hold its expected spend on the budget caps
        (per run and per network); raise, naming the cap, if it cannot be paid for."""
        self._calls += 1
        if self._calls > self.limits.max_steps:
            raise RunLimitExceeded(
                "max_steps",
                self.limits.max_steps,
                self._calls - 1,
                "step executions, planning and critiques included",
            )
        return hold_all(
            (self.budget, self.o.budget),
            route.expected_cost_usd,
            route.expected_tokens,
            f"the next call to {route.agent}",
        )

    async def _send(
        self,
        rec: StepRecord,
        route: Route,
        capability: str,
        instruction: str,
        context: list[ContextItem],
        required_confidence: float,
        acceptance: str | None,
        metadata: dict[str, Any] | None,
    ) -> Result | Critique:
        attempt = self._attempts.get(rec.id, 0)
        self._attempts[rec.id] = attempt + 1
        timeout = self.limits.step_timeout_s
        remaining_tokens = None
        if self.limits.max_tokens is not None:
            remaining_tokens = max(1, self.limits.max_tokens - self.record.usage.total_tokens)
        env = Envelope(
            run_id=self.run_id,
            step_id=rec.id,
            sender=self.o.id,
            reply_to=str(self.reply_topic),
            attempt=attempt,
            deadline=datetime.now(UTC) + timedelta(seconds=timeout),
            payload=Task(
                capability=capability,
                instruction=instruction,
                request=self.request,
                context=context,
                required_confidence=required_confidence,
                acceptance=acceptance,
                budget=Budget(max_tokens=remaining_tokens),
                metadata={**self.metadata, **(metadata or {})},
            ),
        )
        key = (rec.id, attempt)
        future: asyncio.Future[Result | Critique] = asyncio.get_running_loop().create_future()
        self._futures[key] = future
        self._sent_to[key] = (route, capability)
        self._sent(env)
        self.emit(
            "step_started",
            step=rec.id,
            capability=capability,
            agent=route.agent,
            attempt=attempt,
            tier=route.tier,
        )
        await self.o.bus.publish(Topic.task(capability, route.agent), env)
        gone = asyncio.create_task(self.o.registry.wait_gone(route.agent))
        waits = {future, gone} if self._reader is None else {future, gone, self._reader}
        try:
            done, _ = await asyncio.wait(
                waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            gone.cancel()
            self._futures.pop(key, None)
        if future in done:
            return future.result()
        future.cancel()
        if self._reader in done:  # no reply can reach this run any more: say why, now
            error = None if self._reader.cancelled() else self._reader.exception()
            why = f"{type(error).__name__}: {error}" if error else "the subscription was closed"
            raise BusError(f"replies to run {self.run_id} can no longer be read ({why})")
        if gone in done:
            raise _Lost("agent vanished from the registry (missed heartbeats)")
        raise _Lost(f"no reply within {timeout:g}s")

    # ------------------------------------------------------------------ replies

    async def _read_replies(self, sub) -> None:  # type: ignore[no-untyped-def]
        async for delivery in sub:
            env = delivery.envelope
            self._received(env)
            payload = env.payload
            if isinstance(payload, Result | Critique):
                future = self._futures.get((env.step_id or "", env.attempt))
                if future is not None and not future.done():
                    future.set_result(payload)
                else:
                    self.decide(
                        "duplicate_ignored",
                        step=env.step_id,
                        attempt=env.attempt,
                        sender=env.sender,
                    )
                    if env.id not in self._replies:
                        self._account_late(env, payload)
                self._replies.add(env.id)
            elif isinstance(payload, ErrorPayload) and payload.code == "max_deliveries":
                # the bus gave up on the task (its holders kept dying): the attempt failed
                self.decide(
                    "dead_lettered", step=env.step_id, attempt=env.attempt, reason=payload.message
                )
                future = self._futures.get((env.step_id or "", env.attempt))
                if future is not None and not future.done():
                    future.set_result(
                        Result(status="failed", error=f"dead-lettered: {payload.message}")
                    )
            elif isinstance(payload, Event) and payload.name == "redelivered":
                # an agent took over a task whose first holder died or stalled
                self.decide(
                    "redelivered",
                    step=env.step_id,
                    attempt=env.attempt,
                    agent=env.sender,
                    delivery_count=payload.data.get("delivery_count"),
                )
            elif isinstance(payload, InputRequest):
                task = asyncio.create_task(self._answer_input(env, payload))
                self._helpers.add(task)
                task.add_done_callback(self._helpers.discard)
            await delivery.ack()

    def _account_late(self, env: Envelope, payload: Result | Critique) -> None:
        """A reply no call waits for any more (its attempt timed out or was re-routed, or a
        redelivered task was answered twice): its answer is ignored, but the work was done
        and paid for, so its usage is booked on the step, the run and the caps."""
        sent = self._sent_to.get((env.step_id or "", env.attempt))
        rec = next((r for r in reversed(self.record.steps) if r.id == env.step_id), None)
        if sent is None or rec is None:
            return
        route, capability = sent
        usage = payload.usage
        rec.usage = rec.usage + usage
        rec.calls.append(
            CallRecord(
                agent=route.agent,
                capability=capability,
                tier=route.tier,
                status="failed",
                usage=usage,
                confidence=payload.confidence,
                error=f"reply to attempt {env.attempt} came after the step moved on; ignored",
            )
        )
        with contextlib.suppress(RunLimitExceeded):  # already spent: the caps stop the next call
            self._account(usage)

    async def _answer_input(self, env: Envelope, request: InputRequest) -> None:
        """An agent asked another capability a question mid-task: route it as a sub-step."""
        rec = self._new_record(
            f"{env.step_id}.ask{len(self.record.steps)}",
            request.capability,
            request.question,
            [],
            kind="input",
        )
        self.decide(
            "input_request", step=env.step_id, asker=env.sender, capability=request.capability
        )
        try:
            if request.capability == "critique":
                raise StepFailed(
                    rec.id, "'critique' reviews a step's output; it does not answer questions"
                )
            result = await self._call(rec, request.capability, request.question, [])
            self._finish(rec, result)
            reply = InputReply(
                answer=result.output, confidence=result.confidence, usage=result.usage
            )
        except RedeError as exc:  # the asker gets the error; the run's own limits still hold
            self._finish(rec, None)
            reply = InputReply(answer="", error=str(exc))
        out = env.reply(reply, sender=self.o.id)
        self._sent(out)
        if env.reply_to:
            await self.o.bus.publish(Topic.from_str(env.reply_to), out)
