"""The Orchestrator: runs a plan on the bus.

Every ready step of the plan (``graphlib.TopologicalSorter``) is dispatched at once; results
flow as context to dependants; a step marked ``review`` is critiqued and refined until the
critic accepts or the round limit; a synthesis step writes the answer. Each call is routed
(see :mod:`rede.routing.router`), timed out, retried and re-routed to another agent with the same
capability when one fails, times out or vanishes from the registry. Replies are matched by
``(step, attempt)``, so a late or redelivered reply never produces a second result.
Run limits (steps, refine rounds, wall time, cost, tokens) end a run with an error naming
the limit; the partial run record travels on the error as ``exc.run``. A step that fails is
handled by the network's step-failure policy (:mod:`~rede.orchestration.failures`: replan,
continue with a partial answer, or fail).

The parts: :mod:`~rede.orchestration.steps` (the plan loop), :mod:`~rede.orchestration.call`
(one call: route, send, await, retry, escalate),
:mod:`~rede.orchestration.replies` (the reply reader), :mod:`~rede.orchestration.review`
(critique and refine), :mod:`~rede.orchestration.agreement` (tiers that vote), all sharing
the run's :class:`~rede.orchestration.state.RunState`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from rede.bus import Bus
from rede.config import (
    AgreementConfig,
    DurableConfig,
    HumanConfig,
    LimitsConfig,
    StepFailureConfig,
)
from rede.errors import ConfigError, RedeError, RunLimitExceeded, StepFailed
from rede.orchestration.agreement import decide_by_agreement
from rede.orchestration.call import Ask, Calls
from rede.orchestration.dispatcher import Dispatcher
from rede.orchestration.durable import RunCheckpoint
from rede.orchestration.failures import (
    Failures,
    answer_without_synthesis,
    failures_before,
    repaired_plan,
)
from rede.orchestration.human import approved, ask_person, needs_approval, why
from rede.orchestration.ledger import LIVE, Ledger
from rede.orchestration.plan import Plan, Step, validate_plan
from rede.orchestration.replies import SharedReplies
from rede.orchestration.review import review
from rede.orchestration.run import RunResult, StepFailure, StepRecord, critical_path
from rede.orchestration.state import Observer, RunState, Services
from rede.orchestration.steps import context_item
from rede.protocol.messages import ContextItem, Result, new_id
from rede.protocol.topics import Topic
from rede.routing.budget import BudgetCap
from rede.routing.router import Router
from rede.runtime.registry import Registry


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
        network: str = "",
        human: HumanConfig | None = None,
        durable: DurableConfig | None = None,
        on_step_failure: StepFailureConfig | None = None,
    ) -> None:
        self.bus = bus
        self.registry = registry
        self.router = router
        self.ledger = ledger
        self.limits = limits
        self.id = new_id(f"{name}-")
        self.dispatcher = Dispatcher(limits)
        self.budget = BudgetCap("network", limits.network_max_cost_usd, limits.network_max_tokens)
        """What every run of this network together has spent, against the network caps."""
        self.replies = SharedReplies(bus, Topic.reply(self.id), self.id)
        """One reply topic and reader for all this orchestrator's live runs."""
        self.services = Services(
            bus,
            registry,
            router,
            ledger,
            limits,
            self.id,
            self.budget,
            publish_events,
            self.replies.topic,
            network,
            human or HumanConfig(),
            durable or DurableConfig(),
            on_step_failure or StepFailureConfig(),
        )
        self.live: set[str] = set()
        """Runs this orchestrator holds; their leases are renewed while they run."""
        self._renewing: asyncio.Task[None] | None = None

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
        _check_run_id(run_id)
        state = RunState(self.services, run_id, request, metadata or {}, observer)
        state.save(lease_s=self.services.durable.lease_s)  # held from its first write
        return await self._execute(state, plan)

    def accept(self, run_id: str, request: str, metadata: dict[str, Any] | None = None) -> None:
        """Make a run durable before it starts: its first checkpoint, held by this
        orchestrator (and renewed) from now. A server accepts a run only after this, so a
        run it answered 202 for is resumed elsewhere if the server dies before it starts;
        :meth:`run` with the same ``run_id`` takes it up. Raises ConfigError for a bad id."""
        _check_run_id(run_id)
        state = RunState(self.services, run_id, request, metadata or {}, None)
        state.save(lease_s=self.services.durable.lease_s)
        self._hold(run_id)

    def release(self, run_id: str) -> None:
        """Stop renewing the lease on a run this orchestrator no longer runs."""
        self.live.discard(run_id)

    def _hold(self, run_id: str) -> None:
        self.live.add(run_id)
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.create_task(self._renew_leases())

    async def resume(
        self, run_id: str, *, observer: Observer | None = None, force: bool = False
    ) -> RunResult:
        """Take up a run from its checkpoint in the ledger, where its last orchestrator left
        it (see :mod:`rede.orchestration.durable`). ``force`` takes it even while another
        orchestrator's lease on it runs (that process is known to be gone)."""
        row = self.ledger.load_run(run_id)
        if row is None:
            raise ConfigError(f"no checkpoint of run {run_id!r} in this ledger")
        if row.status not in LIVE:
            raise ConfigError(f"run {run_id} has ended ({row.status}); nothing to resume")
        if not self.ledger.claim_run(run_id, self.id, self.services.durable.lease_s, force=force):
            raise ConfigError(
                f"run {run_id} is held by {row.owner} for {row.lease_until - time.time():.0f}s "
                "more; it can be resumed once that lease lapses (or forced, if that process "
                "is gone)"
            )
        cp = RunCheckpoint.model_validate(row.state)
        state = RunState(self.services, run_id, cp.request, cp.metadata, observer)
        state.restore(cp)
        return await self._execute(state, cp.plan)

    def wake(self, run_id: str, wait_id: str) -> None:
        """A person answered ``wait_id`` of ``run_id`` (the answer is in the ledger): if the
        run waits for it here, it goes on now instead of at its next look."""
        answered = self.services.answered.get((run_id, wait_id))
        if answered is not None:
            answered.set()

    async def _execute(self, state: RunState, plan: Plan | None) -> RunResult:
        self._hold(state.run_id)
        try:
            return await _Run(state, self.dispatcher, self.replies).execute(plan)
        finally:
            self.live.discard(state.run_id)

    async def _renew_leases(self) -> None:
        """Renew this orchestrator's hold on its live runs while it has any."""
        lease = self.services.durable.lease_s
        while self.live:
            self.ledger.renew(self.id, sorted(self.live), lease)
            await asyncio.sleep(lease / 3)


class _Run:
    """One run: plan, run the plan's steps as they become ready, synthesise."""

    def __init__(self, state: RunState, dispatcher: Dispatcher, replies: SharedReplies) -> None:
        self.s = state
        self.dispatcher = dispatcher
        self.calls = Calls(state)
        self.replies = replies

    async def execute(self, plan: Plan | None) -> RunResult:
        s = self.s
        s.t0 = time.perf_counter()
        s.record.started_at = s.record.started_at or datetime.now(UTC)
        s.checkpoint.started_at = s.record.started_at
        s.reader = await self.replies.join(s, self.calls)
        try:
            s.emit("run_started", request=s.request)
            if s.resumed:
                done = [k for k, d in s.checkpoint.done.items() if d.record.kind != "input"]
                s.decide("run_resumed", resumes=s.checkpoint.resumes, done=done)
            try:
                async with asyncio.timeout(s.limits.wall_time_s) as s.clock:
                    await self._main(plan)
            except TimeoutError:
                raise RunLimitExceeded("wall_time_s", s.limits.wall_time_s, s.elapsed()) from None
            s.record.status = "ok"
        except RedeError as exc:
            self._failed(exc)
            exc.run = s.record
            raise
        except Exception as exc:  # a bug, not a user's error: still recorded as the run's end
            self._failed(exc)
            raise
        finally:
            await self._close()
        return s.record

    def _failed(self, exc: Exception) -> None:
        s = self.s
        s.record.status = "failed"
        s.record.error = str(exc) or type(exc).__name__
        if not s.taken_over:  # the new holder writes the run's end, not this one
            s.decide("run_failed", error=s.record.error, error_type=type(exc).__name__)

    def _ended(self) -> None:
        """Checkpoint the run's end: it is no longer resumable. A run cancelled by its
        process stopping stays live in the ledger, for another to resume."""
        s, cp = self.s, self.s.checkpoint
        if s.record.status == "running" or s.taken_over:
            return
        cp.status, cp.answer, cp.error = s.record.status, s.record.answer, s.record.error
        cp.waiting.clear()
        s.save()

    async def _close(self) -> None:
        s = self.s
        for helper in list(s.helpers):
            helper.cancel()
        await asyncio.gather(*s.helpers, return_exceptions=True)
        # the last events (the final step's) still go out to the bus's observers
        await asyncio.gather(*s.events, return_exceptions=True)
        await asyncio.shield(self.replies.leave(s))
        s.release_stranded()
        self._ended()
        s.record.wall_time_s = s.elapsed()
        s.record.critical_path, s.record.critical_path_s = critical_path(s.record)
        usage = s.record.usage
        s.emit(
            "run_finished",
            status=s.record.status,
            error=s.record.error,
            partial=s.record.partial,
            wall_time_s=s.record.wall_time_s,
            total_tokens=usage.total_tokens,
            cost_usd=usage.cost_usd,
        )
        await asyncio.gather(*s.events, return_exceptions=True)

    async def _main(self, plan: Plan | None) -> None:
        s = self.s
        capabilities = s.services.router.known_capabilities()
        plan = await self._planned(plan, capabilities)
        failures = Failures(s, s.services.on_step_failure, "plan" in capabilities)
        plan, outputs = await failures.run(plan, self._run_step, self._replan)
        missing = failures.missing(plan, outputs)
        if len(plan.steps) > 1 and "synthesise" in capabilities:
            try:
                s.record.answer = (await self._synthesis(plan, outputs)).output
            except StepFailed as exc:
                raise StepFailed(exc.step_id, exc.reason + failures_before(missing)) from None
        else:
            s.record.answer = answer_without_synthesis(plan, outputs)
        failures.mark_partial(missing)
        s.record.confidence = min(
            (r.confidence for r in s.record.steps if r.kind != "plan" and r.status == "ok"),
            default=0.0,
        )

    async def _planned(self, plan: Plan | None, capabilities: set[str]) -> Plan:
        """The run's plan: given, kept by the checkpoint of a resumed run, or made by the
        planner; approved by a person first when the network asks for that."""
        s = self.s
        if plan is None:
            plan = await self.dispatcher.plan(s.request, capabilities, self._call_planner, s.decide)
        elif not s.resumed:
            validate_plan(plan, capabilities, max_steps=s.limits.max_plan_steps)
        s.record.plan = s.checkpoint.plan = plan
        s.save()
        if s.observed:  # the plan's dump is made only for someone to see it
            s.emit("plan_ready", plan=plan.model_dump())
        if s.services.human.approve_plan:
            shown = "\n".join(f"{st.id} [{st.capability}]: {st.instruction}" for st in plan.steps)
            answer = await ask_person(s, "plan", "plan", "plan", "Approve the plan?", shown)
            if not answer.get("approved", True):
                raise StepFailed("plan", f"a person rejected the plan: {why(answer)}")
        return plan

    async def _synthesis(self, plan: Plan, outputs: dict[str, Result]) -> Result:
        s = self.s
        kept = s.checkpoint.restored("synthesis")
        if kept is not None:
            return kept
        context = [context_item(plan.step(st.id), outputs[st.id]) for st in plan.steps]
        sinks = [st.id for st in plan.sinks()]
        rec = s.new_record(
            "synthesis", "synthesise", "Write the final answer.", sinks, kind="synthesis"
        )
        result = await self.calls.call(rec, Ask("synthesise", rec.instruction, context))
        s.finish(rec, result)
        return result  # type: ignore[no-any-return]

    async def _replan(self, plan: Plan, failures: list[StepFailure]) -> Plan | None:
        return await repaired_plan(self.s, self.dispatcher, self._call_planner, plan, failures)

    async def _call_planner(self, instruction: str, metadata: dict[str, Any]) -> Result:
        s = self.s
        n = sum(1 for r in s.record.steps if r.kind == "plan")
        rec = s.new_record("plan" if n == 0 else f"plan.r{n}", "plan", instruction, [], kind="plan")
        try:
            result = await self.calls.call(rec, Ask("plan", instruction, [], metadata=metadata))
        except StepFailed as exc:
            s.finish(rec, None)
            return Result(status="failed", error=exc.reason)
        s.finish(rec, result)
        return result  # type: ignore[no-any-return]

    async def _run_step(self, step: Step, context: list[ContextItem]) -> Result:
        s = self.s
        rec = s.new_record(step.id, step.capability, step.instruction, step.depends_on)
        agreement = s.services.router.config.agreement.get(step.capability)
        ask = Ask(
            step.capability,
            step.instruction,
            context,
            required_confidence=step.required_confidence,
            acceptance=step.acceptance,
            metadata=step.task_metadata(),
        )
        call = functools.partial(self.calls.call, rec, ask)
        try:
            result = await (call() if agreement is None else self._agree(rec, agreement, call))
            if step.review and "critique" in s.services.registry.capabilities():
                result = await review(s, self.calls, rec, step, context, result)
            if needs_approval(s, step.capability, step.approve):
                result = await approved(s, step.id, step.capability, result)
        except RedeError as exc:
            rec.error = exc.reason if isinstance(exc, StepFailed) else str(exc)
            s.finish(rec, None)
            raise
        s.finish(rec, result)
        return result  # type: ignore[no-any-return]

    async def _agree(
        self, rec: StepRecord, conf: AgreementConfig, call: Callable[..., Awaitable[Any]]
    ) -> Result:
        """The step answered by tiers of agents that vote (see
        :mod:`rede.orchestration.agreement`); ``call(agent=name)`` sends it to one of them."""

        async def ask(agent: str) -> Result:
            return await call(agent=agent)  # type: ignore[no-any-return]

        result, kept = await decide_by_agreement(conf, ask, self.s.decide, rec.id)
        rec.agent, rec.tier = kept.agent, kept.tier
        return result


def _check_run_id(run_id: str) -> None:
    try:
        Topic.reply(run_id)
    except ValueError:
        raise ConfigError(
            f"invalid run_id {run_id!r}: use letters, digits, '_' and '-' only"
        ) from None


__all__ = ["Observer", "Orchestrator"]
