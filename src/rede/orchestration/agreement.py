"""Cross-agent agreement: a step answered by tiers of distinct agents that vote.

The orchestrator hands :func:`decide_by_agreement` a way to ask one named agent and a way to
record decisions; this module owns the voting. For each tier (``routing.agreement`` in the
network YAML, :class:`~rede.config.AgreementConfig`):

1. ask its agents, all at once (``parallel``) or one by one, stopping as soon as the outcome
   is settled (``sequential``);
2. extract each reply's answer with the configured extractor (:mod:`rede.answers`); a failed
   call or a reply without an answer is a vote for nothing;
3. accept the answer that at least ``min_agree`` of the tier gave; otherwise escalate to the
   next tier, or (``on_disagreement: majority``, or at the last tier) take the answer with
   the most votes over every tier asked, a tie going to the higher tier's answer.

Every vote and every tier's outcome is recorded (``vote`` and ``agreement`` decisions), so
``rede trace`` shows who answered what and why the step was accepted or escalated. The
step's result is the reply of the first agent of the deciding tier (for a plurality: of the
highest tier) that gave the winning answer, with confidence set to the share of the deciding
votes that agree with it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rede.answers import extractor
from rede.config import AgreementConfig, AgreementTier
from rede.errors import StepFailed
from rede.protocol.messages import Result

Ask = Callable[[str], Awaitable[Result]]
"""Send the step to the named agent; its result, or :class:`StepFailed`."""
Decide = Callable[..., None]
"""Record a decision: ``decide(name, **facts)``."""


@dataclass(frozen=True, slots=True)
class Vote:
    agent: str
    tier: int
    result: Result | None
    answer: str | None
    error: str | None = None


async def decide_by_agreement(
    conf: AgreementConfig, ask: Ask, decide: Decide, step_id: str
) -> tuple[Result, Vote]:
    """The accepted result and the vote it came from; StepFailed when no agent answered."""
    extract = extractor(conf.answer)
    votes: list[Vote] = []

    async def vote(agent: str, tier: int) -> Vote:
        try:
            result = await ask(agent)
        except StepFailed as exc:
            cast = Vote(agent, tier, None, None, exc.reason)
        else:
            cast = Vote(agent, tier, result, extract(result.output))
        decide(
            "vote",
            step=step_id,
            agent=agent,
            tier=tier,
            answer=cast.answer,
            error=cast.error,
            confidence=cast.result.confidence if cast.result else None,
        )
        return cast

    last = len(conf.tiers) - 1
    for level, tier in enumerate(conf.tiers):
        cast = await _ask_tier(tier, level, vote)
        votes.extend(cast)
        answer, agree = _top(cast)
        facts: dict[str, Any] = {
            "step": step_id,
            "tier": level,
            "votes": {v.agent: v.answer for v in cast},
            "min_agree": tier.needed,
        }
        if answer is not None and agree >= tier.needed:
            decide("agreement", outcome="accepted", answer=answer, agree=agree, **facts)
            return _answer(cast, answer, agree, len(cast))
        if level == last or conf.on_disagreement == "majority":
            break
        decide(
            "agreement",
            outcome="escalated",
            answer=answer,
            agree=agree,
            to_tier=level + 1,
            reason=f"{agree} of {len(cast)} agreed; {tier.needed} needed",
            **facts,
        )
    return _settle(conf, votes, decide, step_id)


def _settle(
    conf: AgreementConfig, votes: list[Vote], decide: Decide, step_id: str
) -> tuple[Result, Vote]:
    """No tier agreed: the most votes over every tier asked, or (no answer anywhere) the
    last reply there was, with confidence 0."""
    answer, agree = _plurality(votes)
    if answer is None:
        answered = [v for v in votes if v.result is not None]
        if not answered:
            raise StepFailed(
                step_id, "; ".join(f"{v.agent}: {v.error}" for v in votes) or "no agent answered"
            )
        kept = answered[-1]
        decide(
            "agreement",
            step=step_id,
            outcome="no_answer",
            agent=kept.agent,
            reason=f"no reply held an answer the {conf.answer!r} extractor could read",
        )
        return kept.result.model_copy(update={"confidence": 0.0}), kept  # type: ignore[union-attr]
    counted = sum(1 for v in votes if v.answer is not None)
    decide(
        "agreement",
        step=step_id,
        outcome="plurality",
        answer=answer,
        agree=agree,
        votes={v.agent: v.answer for v in votes},
        reason=f"most votes over every tier asked: {agree} of {counted}",
    )
    return _answer(sorted(votes, key=lambda v: -v.tier), answer, agree, counted)


async def _ask_tier(tier: AgreementTier, level: int, vote: Callable[..., Any]) -> list[Vote]:
    if tier.mode == "parallel":
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(vote(agent, level)) for agent in tier.agents]
        return [t.result() for t in tasks]
    cast: list[Vote] = []
    for i, agent in enumerate(tier.agents):
        cast.append(await vote(agent, level))
        _, agree = _top(cast)
        left = len(tier.agents) - i - 1
        if agree >= tier.needed or agree + left < tier.needed:
            break  # settled: agreed, or too few agents left to agree
    return cast


def _top(votes: list[Vote]) -> tuple[str | None, int]:
    """The most common answer (the first given on a tie) and its count."""
    counts = Counter(v.answer for v in votes if v.answer is not None)
    if not counts:
        return None, 0
    best = max(counts.values())
    first = next(v.answer for v in votes if v.answer is not None and counts[v.answer] == best)
    return first, best


def _plurality(votes: list[Vote]) -> tuple[str | None, int]:
    """The most common answer over every vote; a tie goes to the highest tier's answer."""
    counts = Counter(v.answer for v in votes if v.answer is not None)
    if not counts:
        return None, 0
    best = max(counts.values())
    ordered = sorted(votes, key=lambda v: -v.tier)  # stable: a tier keeps its agents' order
    first = next(v.answer for v in ordered if v.answer is not None and counts[v.answer] == best)
    return first, best


def _answer(votes: list[Vote], answer: str, agree: int, of: int) -> tuple[Result, Vote]:
    """The reply of the first of ``votes`` (in order of preference) to give ``answer``."""
    kept = next(v for v in votes if v.answer == answer)
    assert kept.result is not None
    return kept.result.model_copy(update={"confidence": agree / of if of else 0.0}), kept


__all__ = ["Vote", "decide_by_agreement"]
