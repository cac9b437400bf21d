"""The figures of a mixed-workload run (``OUT/summary.json`` of :func:`rede.evals.run_mix`).

Per system and per domain: accuracy, cost per 1,000 questions, model calls per question
(tool calls, such as a dispatcher's classifier, are not model calls), escalated %, and for a
routed network the misrouted %: questions whose specialists were not of their domain. A
question *wrong with confidence* is one a network answered without escalating (its first
tier agreed) and got wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import BaseModel

from rede.evals.harness import ExampleRecord
from rede.evals.systems import System, source_of
from rede.protocol.messages import Usage


class DomainFigures(BaseModel):
    n: int
    correct: int
    accuracy: float
    cost_usd_per_1k: float
    model_calls_per_task: float
    escalated_pct: float
    wrong_unescalated: int
    """Answered at the first tier (not escalated) and wrong: wrong with confidence."""
    misrouted: int | None
    errors: int
    failed_misrouted: int = 0
    """Failed questions that were misrouted: sent to a specialist whose replayed model has
    no recording of that dataset (counted wrong, and misrouted)."""


class MixSummary(BaseModel):
    benchmark: str = "mix"
    system: str
    source: str
    split: str
    limit: int | None
    n: int
    correct: int
    accuracy: float
    cost_usd_per_1k: float
    model_calls_per_task: float
    escalated_pct: float
    misrouted_pct: float | None
    """Routed networks only: percent of questions sent to another domain's specialists."""
    errors: int
    failed_misrouted: int
    tokens_estimated: bool
    by_domain: dict[str, DomainFigures]
    by_agent: dict[str, float]
    """Model calls per question, by agent."""
    created_at: str


def routed_to(rec: ExampleRecord, routes: dict[str, set[str]]) -> set[str]:
    """The domains whose specialists answered a question."""
    return {d for d, names in routes.items() if names & set(rec.agents)}


def failed_elsewhere(rec: ExampleRecord, routes: dict[str, set[str]]) -> bool:
    """A failed question whose error names only agents of other domains than its own."""
    if rec.error is None:
        return False
    named = {d for d, names in routes.items() for a in names if f"{a}:" in rec.error}
    return bool(named) and rec.task not in named


def model_calls(rec: ExampleRecord) -> int:
    return sum(u.calls for u in rec.agents.values() if u.source != "tool")


def _figures(recs: Sequence[ExampleRecord], routes: dict[str, set[str]] | None) -> DomainFigures:
    n = len(recs)
    ok = [r for r in recs if r.error is None]
    correct = sum(r.correct for r in recs)
    failed_misrouted = sum(failed_elsewhere(r, routes) for r in recs) if routes else 0
    misrouted = (
        sum(routed_to(r, routes) != {r.task} for r in ok) + failed_misrouted
        if routes is not None
        else None
    )
    return DomainFigures(
        n=n,
        correct=correct,
        accuracy=100.0 * correct / n if n else 0.0,
        cost_usd_per_1k=1000.0 * sum(r.usage.cost_usd for r in ok) / n if n else 0.0,
        model_calls_per_task=sum(model_calls(r) for r in ok) / n if n else 0.0,
        escalated_pct=100.0 * sum(r.escalated for r in ok) / n if n else 0.0,
        wrong_unescalated=sum(not r.escalated and not r.correct for r in ok),
        misrouted=misrouted,
        errors=n - len(ok),
        failed_misrouted=failed_misrouted,
    )


def summarise_mix(
    system: System,
    split: str,
    limit: int | None,
    records: Sequence[ExampleRecord],
    routes: dict[str, set[str]] | None,
) -> MixSummary:
    """The figures of ``summary.json`` from the records of the questions asked."""
    every = _figures(records, routes)
    domains = sorted({r.task for r in records})
    per_agent: dict[str, Usage] = {}
    for r in records:
        for agent, usage in r.agents.items():
            per_agent[agent] = per_agent.get(agent, Usage()) + usage
    seen = {s for r in records if r.error is None for s in r.sources} - {"none"}
    n = len(records)
    return MixSummary(
        system=system.name,
        source=source_of(seen) if seen else system.source,
        split=split,
        limit=limit,
        n=n,
        correct=every.correct,
        accuracy=every.accuracy,
        cost_usd_per_1k=every.cost_usd_per_1k,
        model_calls_per_task=every.model_calls_per_task,
        escalated_pct=every.escalated_pct,
        misrouted_pct=100.0 * every.misrouted / n if every.misrouted is not None and n else None,
        errors=every.errors,
        failed_misrouted=every.failed_misrouted,
        tokens_estimated=any(r.usage.estimated for r in records),
        by_domain={d: _figures([r for r in records if r.task == d], routes) for d in domains},
        by_agent={
            agent: u.calls / n if n else 0.0
            for agent, u in sorted(per_agent.items())
            if u.source != "tool"
        },
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


__all__ = ["DomainFigures", "MixSummary", "model_calls", "routed_to", "summarise_mix"]
