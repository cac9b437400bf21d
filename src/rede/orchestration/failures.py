"""What a run does when a plan step fails: the step-failure policy.

A step that failed on every agent that could take it (:class:`~rede.errors.StepFailed`) has a
policy: ``fail`` if the step is required (its ``required: true``, or its capability listed in
``on_step_failure.required``), else the step's ``on_failure``, its capability's entry in
``on_step_failure.per_capability``, or the network's ``on_step_failure.policy`` (``replan``
unless set).

- ``replan``: the steps in flight finish, then the planner is told what failed and why and
  writes the plan again; the steps it keeps (same id and capability as a finished step) keep
  their results (not run, not billed again), the others run under fresh ids.
  At most ``max_replans`` per run, and only where the network has a planner; past that, or
  when no valid plan comes back, the failure is handled as ``continue``.
- ``continue``: the failed result is the step's output; dependants and the synthesis get
  the failure as context, and the answer is marked partial (``RunResult.partial``,
  ``missing``, a note at its end).
- ``fail``: the run fails with the step's error. So does a step a person rejected (or did
  not approve in time under ``human.on_timeout: fail``): a person's no is not bypassed.

Every failure is a typed ``step_failed`` decision (:class:`~rede.orchestration.run.StepFailure`)
and a ``step_failed`` event; a repaired plan is a ``replan`` decision and a ``plan_ready``
event; a partial answer a ``run_partial`` decision. A failed-and-continued step is
checkpointed with its failed result, so a resumed run does not run it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rede.config import StepFailureConfig, StepPolicy
from rede.errors import StepFailed, StepsFailed
from rede.orchestration.dispatcher import Dispatcher
from rede.orchestration.durable import DoneStep
from rede.orchestration.plan import Plan, Step, kept_and_renamed
from rede.orchestration.run import MissingStep, StepFailure, StepRecord
from rede.orchestration.state import RunState
from rede.orchestration.steps import Replan, RunStep, run_steps
from rede.protocol.messages import Result

Replanner = Callable[[Plan, list[StepFailure]], Awaitable[Plan | None]]
"""Asks the planner for a repaired plan: the plan that ran and its failures; None: none came."""


def policy_for(
    step: Step, conf: StepFailureConfig, *, by_person: bool = False
) -> tuple[StepPolicy, str]:
    """The step's policy, and where it comes from (a person's rejection: ``fail``)."""
    if by_person:
        return "fail", "person"
    if step.required or step.capability in conf.required:
        return "fail", "required"
    if step.on_failure is not None:
        return step.on_failure, "step"
    if step.capability in conf.per_capability:
        return conf.per_capability[step.capability], "capability"
    return conf.policy, "network"


class Failures:
    """One run's failed steps, and what the run does about each."""

    def __init__(self, state: RunState, conf: StepFailureConfig, can_replan: bool) -> None:
        self.s = state
        self.conf = conf
        self.can_replan = can_replan
        """Whether the network has a planner to ask for a repaired plan."""
        self.pending: dict[str, StepFailure] = {}
        """Failures waiting for a repaired plan."""

    async def run(
        self, plan: Plan, run_step: RunStep, replan: Replanner
    ) -> tuple[Plan, dict[str, Result]]:
        """Run ``plan``'s steps under the policy: the plan that ran last and its outputs."""
        s = self.s
        while True:
            try:
                return plan, await run_steps(plan, s.checkpoint.restored, run_step, self.failed)
            except Replan as wanted:
                failures = [self.pending.pop(step_id) for step_id in wanted.failed]
            s.checkpoint.replans += 1
            repaired = await replan(plan, failures)
            for failure in failures:  # a repaired plan or not, they are over: checkpointed
                self._keep_failed(failure)
            if repaired is None:
                s.decide("replan_failed", steps=[f.step for f in failures], then="continue")
            else:
                plan = s.record.plan = s.checkpoint.plan = repaired
            s.save()
            if repaired is not None and s.observed:
                s.emit("plan_ready", plan=repaired.model_dump(), replan=s.checkpoint.replans)

    def failed(self, step: Step, exc: StepFailed) -> StepPolicy:
        """What the plan loop does with a step that failed; recorded as a decision."""
        policy, source = policy_for(step, self.conf, by_person=exc.by_person)
        action, reason = policy, ""
        if policy == "replan" and not self.can_replan:
            action, reason = "continue", "the network has no planner"
        elif policy == "replan" and self.s.checkpoint.replans >= self.conf.max_replans:
            action, reason = "continue", f"max_replans ({self.conf.max_replans}) reached"
        failure = StepFailure(
            step=step.id,
            capability=step.capability,
            error=exc.reason,
            policy=policy,
            source=source,
            action=action,
            reason=reason,
        )
        self.s.decide("step_failed", **failure.model_dump())
        self.s.emit("step_failed", **failure.model_dump())
        if action == "continue":
            self._keep_failed(failure)
            self.s.save()
        elif action == "replan":
            self.pending[step.id] = failure
        return action

    def _keep_failed(self, failure: StepFailure) -> None:
        """Checkpoint a failed step with its failed result: a resumed run does not run it."""
        rec = self._record(failure.step)
        if rec is not None:
            result = Result(status="failed", error=failure.error)
            self.s.checkpoint.done[rec.id] = DoneStep(record=rec, result=result)

    def _record(self, step_id: str) -> StepRecord | None:
        return next((r for r in reversed(self.s.record.steps) if r.id == step_id), None)

    def missing(self, plan: Plan, outputs: dict[str, Result]) -> list[MissingStep]:
        """The steps of ``plan`` that failed; :class:`StepsFailed` if every one did."""
        missing = [
            MissingStep(step=st.id, capability=st.capability, error=outputs[st.id].error or "")
            for st in plan.steps
            if outputs[st.id].status == "failed"
        ]
        if len(missing) == len(plan.steps):
            raise StepsFailed({m.step: m.error for m in missing})
        return missing

    def mark_partial(self, missing: list[MissingStep]) -> None:
        """Mark the answer partial: what it lacks, in the record, the ledger and its text."""
        if not missing:
            return
        s = self.s
        s.record.partial, s.record.missing = True, missing
        s.record.answer = f"{s.record.answer}\n\n{partial_note(missing)}".lstrip()
        s.decide("run_partial", missing=[m.model_dump() for m in missing])


def partial_note(missing: list[MissingStep]) -> str:
    """The line a partial answer ends with: which steps it lacks, and why."""
    lacks = "; ".join(
        f"step {m.step} ({m.capability}) failed: {once_each(m.error)}" for m in missing
    )
    return f"[partial answer: {lacks}]"


def once_each(error: str) -> str:
    """A step's error with the same failure of each retry said once: ``why (x3)``."""
    counts: dict[str, int] = {}
    for part in error.split("; "):
        counts[part] = counts.get(part, 0) + 1
    return "; ".join(f"{p} (x{n})" if n > 1 else p for p, n in counts.items())


def answer_without_synthesis(plan: Plan, outputs: dict[str, Result]) -> str:
    """The answer when no synthesis writes one: the sinks' outputs; where every sink failed,
    the outputs of the finished steps that no finished step builds on."""
    ok = {st.id for st in plan.steps if outputs[st.id].status == "ok"}
    ends = [st.id for st in plan.sinks() if st.id in ok]
    if not ends:
        used = {d for st in plan.steps if st.id in ok for d in st.depends_on}
        ends = [st.id for st in plan.steps if st.id in ok and st.id not in used]
    return "\n\n".join(outputs[i].output for i in ends)


def failures_before(missing: list[MissingStep]) -> str:
    """For the error of a synthesis that failed: the steps that had failed before it."""
    if not missing:
        return ""
    return f" (steps that had failed before it: {', '.join(m.step for m in missing)})"


REPLAN = """Steps of the plan failed. Write the plan again so that it still answers the \
request. Keep the finished steps ({finished}) at the same id and capability: they keep their \
results and are not run again. Replace each failed step with steps that can succeed (a \
clearer instruction, another capability), or leave it out.
The plan was: {shape}.
Failed: {failed}.
Reply with the repaired JSON plan only."""
"""The replanner's instruction: short, for a small model's context window (the whole plan
is in the task's metadata, ``replan_of``)."""


async def repaired_plan(
    s: RunState,
    dispatcher: Dispatcher,
    call_planner: Callable[..., Awaitable[Result]],
    plan: Plan,
    failures: list[StepFailure],
) -> Plan | None:
    """Ask the planner to repair ``plan`` around ``failures``: the new plan fitted to the run
    (finished steps kept, other ids fresh) and recorded as a ``replan`` decision."""
    finished = {
        st.id: st
        for st in plan.steps
        if (kept := s.checkpoint.restored(st.id)) is not None and kept.status == "ok"
    }
    failed = "; ".join(
        f"{f.step} [{f.capability}] {plan.step(f.step).instruction[:160]!r}: "
        f"{once_each(f.error)[:300]}"
        for f in failures
    )
    shape = ", ".join(
        f"{st.id} [{st.capability}]"
        + (f" after {'+'.join(st.depends_on)}" if st.depends_on else "")
        for st in plan.steps
    )
    why = REPLAN.format(finished=", ".join(finished) or "none", shape=shape, failed=failed)
    facts = {"replan_of": plan.model_dump(), "failed": [f.model_dump() for f in failures]}
    capabilities = s.services.router.known_capabilities()
    new = await dispatcher.replan(s.request, capabilities, call_planner, s.decide, why, facts)
    if new is None:
        return None
    used = {r.id for r in s.record.steps}  # a step that never started keeps its id
    fitted = kept_and_renamed(new, finished, used, f"r{s.checkpoint.replans}")
    s.decide(
        "replan",
        source="replanner",
        failed=[f.step for f in failures],
        kept=[st.id for st in fitted.steps if st.id in finished],
        plan=fitted.model_dump(),
    )
    return fitted


__all__ = [
    "Failures",
    "Replanner",
    "answer_without_synthesis",
    "failures_before",
    "once_each",
    "partial_note",
    "policy_for",
    "repaired_plan",
]
