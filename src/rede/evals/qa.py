"""Run a question-answer benchmark (GSM8K, MMLU-Pro) through a model or a network.

Like :func:`rede.evals.run_bbh`: every answered question is appended at once to
``OUT/<benchmark>.jsonl`` (a stopped run resumes with the same ``OUT``), and
``OUT/summary.json`` holds the figures of the questions asked for::

    {"benchmark": "gsm8k", "system": "network:gsm8k-agree-70b", "source": "replay",
     "accuracy": 94.3, "n": 1319, "cost_usd_per_task": 0.00021, "calls_per_task": 2.3,
     "escalated_pct": 17.1, "by_agent": {"gemma9b": {"calls": 1319, ...}, ...}, ...}

Before the first question, the run checks what would otherwise fail 1,319 times: a network
whose agreement compares answers with another extractor than the benchmark scores with, and
a replayed model that holds no recording of a question asked (recordings of another
benchmark, or of a subset).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console

from rede.errors import ConfigError
from rede.evals.datasets import QABenchmark, Question
from rede.evals.harness import ExampleRecord, Job, Store, answer_all, mean
from rede.evals.systems import NetworkSystem, System, source_of
from rede.models.replay import RecordingNotFound, ReplayModel
from rede.protocol.messages import Usage


class AgentFigures(BaseModel):
    calls: int
    calls_per_task: float
    tokens: int
    cost_usd: float
    cost_usd_per_task: float


class QASummary(BaseModel):
    benchmark: str
    system: str
    source: str
    sources: list[str]
    data: str
    limit: int | None
    accuracy: float
    """Percent of the ``n`` questions answered correctly (failed ones count as wrong)."""
    n: int
    correct: int
    errors: int
    cost_usd_per_task: float
    calls_per_task: float
    """Model calls per question (tool calls count too)."""
    tokens_per_task: float
    escalated_pct: float
    """Percent of questions a network escalated past its first tier."""
    messages_per_task: float
    latency_s_per_task: float
    tokens_estimated: bool
    """True when some token counts are estimates (recorded text, or a server without usage)."""
    by_agent: dict[str, AgentFigures]
    created_at: str


def check_system(system: System, bench: QABenchmark) -> None:
    """A network whose agreement extracts answers other than the benchmark scores them."""
    if not isinstance(system, NetworkSystem):
        return
    for capability, agreement in system.config.routing.agreement.items():
        if agreement.answer != bench.answer:
            raise ConfigError(
                f"network {system.config.name!r} compares the answers of {capability!r} with "
                f"{agreement.answer!r}, but {bench.name} is scored with {bench.answer!r}; set "
                f"routing.agreement.{capability}.answer: {bench.answer}"
            )


async def check_recordings(system: System, bench: QABenchmark, questions: list[Question]) -> None:
    """Every replayed model of the system holds a recording of every question asked."""
    for name, model in (await system.models()).items():
        if not isinstance(model, ReplayModel):
            continue
        for q in questions:
            try:
                model.lookup(bench.prompt(q))
            except RecordingNotFound as exc:
                why = f": {exc.detail}" if exc.detail else ""
                hint = "" if exc.ambiguous else "; are its recordings of another benchmark?"
                raise ConfigError(
                    f"model {name!r} ({model.origin}) has no recording of {bench.name} "
                    f"question {q.id} ({' '.join(q.text.split())[:60]!r}...){why}{hint}"
                ) from None


async def run_qa(
    system: System,
    bench: QABenchmark,
    *,
    out: Path,
    limit: int | None = None,
    concurrency: int = 8,
    progress: bool = True,
    console: Console | None = None,
) -> QASummary:
    """Answer the questions not yet recorded in ``out``, then score all asked for."""
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    questions = bench.questions(limit)
    check_system(system, bench)
    store = Store.open(out, system, bench.name, bench.root)
    done = store.read(bench.name)
    todo = [q for q in questions if q.index not in done or done[q.index].error is not None]
    if todo:
        await check_recordings(system, bench, todo)

    def job(q: Question) -> Job:
        metadata: dict[str, Any] = {"benchmark": bench.name, "index": q.index, "id": q.id}
        if system.source in ("simulated", "mixed"):
            metadata["truth"] = q.target  # only simulated models read it

        def scored(text: str) -> tuple[str, bool]:
            found = bench.score(text, q)
            return found.answer or "", found.correct

        return Job(bench.name, q.index, q.target, bench.prompt(q), metadata, scored)

    records = await answer_all(
        system,
        [job(q) for q in todo],
        store,
        concurrency=concurrency,
        description=f"{bench.name} {system.name}",
        progress=progress,
        console=console,
    )
    done.update((rec.index, rec) for rec in records)
    summary = summarise_qa(system, bench, limit, [done[q.index] for q in questions])
    store.write_summary(summary)  # type: ignore[arg-type]
    return summary


def summarise_qa(
    system: System, bench: QABenchmark, limit: int | None, records: Sequence[ExampleRecord]
) -> QASummary:
    """The figures of ``summary.json`` from the records of the questions asked for."""
    n = len(records)
    answered = [r for r in records if r.error is None]
    per_agent: dict[str, Usage] = {}
    for r in answered:
        for agent, usage in r.agents.items():
            per_agent[agent] = per_agent.get(agent, Usage()) + usage
    seen = {s for r in answered for s in r.sources} - {"none"}
    observed = source_of(seen) if seen else system.source

    def per_task(total: float) -> float:
        return total / n if n else 0.0

    return QASummary(
        benchmark=bench.name,
        system=system.name,
        source=system.source if observed == system.source else "mixed",
        sources=sorted(seen),
        data=str(bench.root),
        limit=limit,
        accuracy=100.0 * sum(r.correct for r in records) / n if n else 0.0,
        n=n,
        correct=sum(r.correct for r in records),
        errors=n - len(answered),
        cost_usd_per_task=per_task(sum(r.usage.cost_usd for r in answered)),
        calls_per_task=per_task(sum(r.usage.calls for r in answered)),
        tokens_per_task=per_task(sum(r.usage.total_tokens for r in answered)),
        escalated_pct=100.0 * per_task(sum(r.escalated for r in answered)),
        messages_per_task=per_task(sum(r.messages for r in answered)),
        latency_s_per_task=mean([r.latency_s for r in answered]),
        tokens_estimated=any(r.usage.estimated for r in answered),
        by_agent={
            agent: AgentFigures(
                calls=u.calls,
                calls_per_task=per_task(u.calls),
                tokens=u.total_tokens,
                cost_usd=u.cost_usd,
                cost_usd_per_task=per_task(u.cost_usd),
            )
            for agent, u in sorted(per_agent.items())
        },
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


__all__ = ["AgentFigures", "QASummary", "check_recordings", "check_system", "run_qa"]
