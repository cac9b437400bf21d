"""The critique loop: a step marked ``review`` is critiqued and refined until accepted.

Each round sends the draft to the ``critique`` capability. An accepted critique ends the
loop; otherwise the step is redone with the previous draft and the critique as context,
until ``max_refine_rounds``, after which ``on_round_limit`` accepts the last draft or fails
the run. Critic scores feed the router's view of the agent that wrote the draft.
"""

from __future__ import annotations

from rede.errors import RunLimitExceeded, StepFailed
from rede.orchestration.call import Ask, Calls
from rede.orchestration.plan import Step
from rede.orchestration.run import StepRecord
from rede.orchestration.state import RunState
from rede.protocol.messages import ContextItem, Critique, Result


async def review(
    s: RunState,
    calls: Calls,
    rec: StepRecord,
    step: Step,
    context: list[ContextItem],
    result: Result,
) -> Result:
    """The accepted (or last allowed) draft of ``step``, starting from ``result``."""
    rounds = 0
    while True:
        critique = await _critique(s, calls, rec, step, result, rounds)
        if critique is None:  # no critic could give a readable review: the draft stands
            return result
        if critique.accepted:
            s.decide("accepted", step=step.id, round=rounds, score=critique.score)
            return result
        if rounds >= s.limits.max_refine_rounds:
            return _round_limit(s, step, result, critique, rounds)
        rounds += 1
        rec.rounds = rounds
        s.decide("refine", step=step.id, round=rounds, score=critique.score, issues=critique.issues)
        refined = await calls.call(
            rec,
            Ask(
                step.capability,
                step.instruction,
                [*context, *_revision_context(step, result, critique)],
                acceptance=step.acceptance,
                metadata=step.task_metadata(),
            ),
        )
        assert isinstance(refined, Result)
        result = refined


async def _critique(
    s: RunState, calls: Calls, rec: StepRecord, step: Step, result: Result, rounds: int
) -> Critique | None:
    """The critic's review of the draft. A review that cannot be read (not JSON, a score out
    of range, nothing at all) is asked for again with the error, up to ``plan_repairs``
    times; after that None: the run goes on with the draft unreviewed, and says so."""
    draft = ContextItem(step_id=step.id, capability=step.capability, content=result.output)
    instruction = f"Review the output of step {step.id!r}."
    for repair in range(s.limits.plan_repairs + 1):
        try:
            critique = await calls.call(
                rec, Ask("critique", instruction, [draft], acceptance=step.acceptance)
            )
        except StepFailed as exc:
            if repair == s.limits.plan_repairs:
                s.decide(
                    "critique_failed",
                    step=step.id,
                    round=rounds,
                    error=exc.reason,
                    action="kept the draft unreviewed",
                )
                return None
            s.decide("critique_invalid", step=step.id, round=rounds, error=exc.reason)
            instruction = (
                f"Review the output of step {step.id!r}. Your last review could not be read "
                f"({exc.reason[:300]}); answer with exactly the JSON object asked for."
            )
            continue
        assert isinstance(critique, Critique)
        rec.critiques.append(critique.model_dump(exclude={"usage"}))
        if rec.agent:
            s.services.router.observe_score(rec.agent, step.capability, critique.score)
        s.emit(
            "critique", step=step.id, score=critique.score, accepted=critique.accepted, round=rounds
        )
        return critique
    return None


def _round_limit(
    s: RunState, step: Step, result: Result, critique: Critique, rounds: int
) -> Result:
    limits = s.limits
    s.decide(
        "round_limit",
        step=step.id,
        rounds=rounds,
        score=critique.score,
        action=limits.on_round_limit,
    )
    if limits.on_round_limit == "fail":
        raise RunLimitExceeded(
            "max_refine_rounds",
            limits.max_refine_rounds,
            rounds,
            f"step {step.id!r} not accepted (last score {critique.score:.2f})",
        )
    return result


def _revision_context(step: Step, result: Result, critique: Critique) -> list[ContextItem]:
    """The previous draft and what the critic said of it, as context for the next draft."""
    previous = ContextItem(
        step_id=f"{step.id}.draft",
        capability=step.capability,
        content=f"Previous draft:\n{result.output}",
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
    return [previous, feedback]


__all__ = ["review"]
