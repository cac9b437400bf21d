"""The critique loop: a step marked ``review`` is critiqued and refined until accepted.

Each round sends the draft to the ``critique`` capability. An accepted critique ends the
loop; otherwise the step is redone with the previous draft and the critique as context,
until ``max_refine_rounds``, after which ``on_round_limit`` accepts the last draft or fails
the run. Critic scores feed the router's view of the agent that wrote the draft.
"""

from __future__ import annotations

from rede.errors import RunLimitExceeded
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
) -> Critique:
    draft = ContextItem(step_id=step.id, capability=step.capability, content=result.output)
    critique = await calls.call(
        rec,
        Ask(
            "critique",
            f"Review the output of step {step.id!r}.",
            [draft],
            acceptance=step.acceptance,
        ),
    )
    assert isinstance(critique, Critique)
    rec.critiques.append(critique.model_dump(exclude={"usage"}))
    if rec.agent:
        s.services.router.observe_score(rec.agent, step.capability, critique.score)
    s.emit("critique", step=step.id, score=critique.score, accepted=critique.accepted, round=rounds)
    return critique


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
