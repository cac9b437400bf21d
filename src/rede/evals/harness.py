"""Run BIG-Bench Hard through a :class:`~rede.evals.systems.System` and score it.

Every answered example is appended at once to ``OUT/<task>.jsonl``, so a run that stops can
be started again with the same ``OUT``: examples already recorded are skipped (failed ones
are tried again), and a larger ``limit`` runs only the new examples. ``OUT/summary.json``
holds the scores of the examples asked for::

    {"benchmark": "bbh", "system": ..., "source": "replay", "mode": "cot",
     "tasks": {"date_understanding": {"accuracy": 87.2, "n": 250, ...}, ...},
     "average": ..., "paper_average": ..., "mean_latency_s": ..., "mean_tokens": ...,
     "mean_cost_usd": ..., "mean_messages": ..., ...}

``average`` is the mean over the task files run; ``paper_average`` is the paper's: the three
sizes of logical deduction and of tracking shuffled objects averaged first (23 tasks).
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rede.errors import ConfigError, RedeError
from rede.evals.bbh import BBH, MODES, Example, Mode, paper_averages, wrong_answers
from rede.evals.scoring import score
from rede.evals.systems import System, source_of
from rede.protocol.messages import Usage

SUMMARY = "summary.json"
RUN_FILE = "run.json"


class ExampleRecord(BaseModel):
    """One line of ``OUT/<task>.jsonl``."""

    model_config = ConfigDict(extra="ignore")
    task: str
    index: int = Field(ge=0)
    target: str
    completion: str = ""
    answer: str = ""
    correct: bool = False
    error: str | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    messages: int = 0
    sources: list[str] = Field(default_factory=list)
    """Where the answer came from: the usage source of each kind of call made."""
    agents: dict[str, Usage] = Field(default_factory=dict)
    """What each agent (or the one model) used for this example."""
    escalated: bool = False
    """A network escalated this example past its first tier."""


class TaskScore(BaseModel):
    accuracy: float
    """Percent of the ``n`` examples answered correctly (failed examples count as wrong).
    The ``mean_*`` figures are over the examples answered (failed ones recorded none)."""
    n: int
    correct: int
    errors: int
    mean_latency_s: float
    mean_tokens: float
    mean_cost_usd: float
    mean_messages: float
    tokens: int
    cost_usd: float
    messages: int


class BenchSummary(BaseModel):
    benchmark: str = "bbh"
    system: str
    source: str
    sources: list[str]
    """The usage sources seen on the calls (``tool`` for tool agents of a network)."""
    mode: Mode
    data: str
    limit: int | None
    tasks: dict[str, TaskScore]
    average: float
    paper_average: float | None = None
    algorithmic_average: float | None = None
    nlp_average: float | None = None
    n: int
    errors: int
    mean_latency_s: float
    mean_tokens: float
    mean_prompt_tokens: float
    mean_completion_tokens: float
    mean_cost_usd: float
    mean_messages: float
    tokens_estimated: bool
    """True when some token counts are estimates (the backend reported none)."""
    created_at: str


class Store:
    """The per-task JSONL files of one output folder."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._files: dict[str, IO[str]] = {}

    @classmethod
    def open(cls, out: Path, system: System, mode: str, root: Path) -> Store:
        """The folder ``out``, made if need be, after checking it holds this system's run
        (``mode``: BIG-Bench Hard's, or the benchmark's name) on the data at ``root``."""
        out.mkdir(parents=True, exist_ok=True)
        _check_run_file(out, system, mode, root)
        return cls(out)

    def write_summary(self, summary: BenchSummary) -> None:
        text = summary.model_dump_json(indent=2) + "\n"
        (self.out / SUMMARY).write_text(text, encoding="utf-8")

    def read(self, task: str) -> dict[int, ExampleRecord]:
        path = self.out / f"{task}.jsonl"
        found: dict[int, ExampleRecord] = {}
        if not path.exists():
            return found
        # split at b"\n" only: splitlines() would also split at U+2028, U+0085 and the like,
        # which JSON leaves unescaped inside a completion
        lines = path.read_bytes().split(b"\n")
        last = max((n for n, line in enumerate(lines, 1) if line.strip()), default=0)
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = ExampleRecord.model_validate_json(line)
            except ValidationError:
                if n == last:
                    # a last line cut short by a crash: that example runs again; cut the
                    # line off, so that the next record appended starts a line of its own
                    with path.open("r+b") as f:
                        f.truncate(sum(len(before) + 1 for before in lines[: n - 1]))
                    continue
                raise ConfigError(
                    f"{path}:{n} is not a result record; remove that line or the file"
                ) from None
            found[rec.index] = rec  # the last record of an example wins
        return found

    def append(self, rec: ExampleRecord) -> None:
        f = self._files.get(rec.task)
        if f is None:
            f = self._files[rec.task] = (self.out / f"{rec.task}.jsonl").open("a", encoding="utf-8")
        f.write(rec.model_dump_json() + "\n")
        f.flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


def _check_run_file(out: Path, system: System, mode: str, root: Path) -> None:
    meta = {"system": system.name, "source": system.source, "mode": mode}
    path = out / RUN_FILE
    if path.exists():
        try:
            before = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            before = {}
        for key in ("system", "mode"):
            if before.get(key, meta[key]) != meta[key]:
                raise ConfigError(
                    f"{out} holds results of {key} {before[key]!r}, not {meta[key]!r}; "
                    "use another --out folder (or remove that one) to start a new run"
                )
    path.write_text(json.dumps({**meta, "data": str(root)}, indent=2) + "\n")


async def run_bbh(
    system: System,
    data: BBH,
    *,
    out: Path,
    tasks: Sequence[str] | str | None = None,
    limit: int | None = None,
    mode: Mode = "cot",
    concurrency: int = 8,
    progress: bool = True,
    console: Console | None = None,
) -> BenchSummary:
    """Answer the examples not yet recorded in ``out``, then score all asked for."""
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    names = data.resolve(tasks)
    store = Store.open(out, system, mode, data.root)
    examples = {t: data.examples(t, limit) for t in names}
    prompts = {t: data.prompt(t) for t in names}  # a bad prompt file fails here, clearly
    done = {t: store.read(t) for t in names}
    todo = [
        ex
        for t in names
        for ex in examples[t]
        if ex.index not in done[t] or done[t][ex.index].error is not None
    ]
    share_truth = system.source in ("simulated", "mixed")

    def job(ex: Example) -> Job:
        metadata: dict[str, Any] = {"benchmark": "bbh", "task": ex.task, "index": ex.index}
        metadata["mode"] = mode
        if share_truth:  # only simulated models read these, to answer with calibrated quality
            metadata["truth"] = ex.target
            metadata["wrong"] = wrong_answers(ex)

        def scored(text: str) -> tuple[str, bool]:
            found = score(text, ex.target, ex.task, mode)
            return found.answer, found.correct

        prompt = prompts[ex.task].build(ex.input, mode)
        return Job(ex.task, ex.index, ex.target, prompt, metadata, scored)

    records = await answer_all(
        system,
        [job(ex) for ex in todo],
        store,
        concurrency=concurrency,
        description=f"bbh {mode} {system.name}",
        progress=progress,
        console=console,
    )
    for rec in records:
        done[rec.task][rec.index] = rec

    summary = summarise(
        system, data, mode, limit, {t: [done[t][e.index] for e in examples[t]] for t in names}
    )
    store.write_summary(summary)
    return summary


@dataclass(frozen=True, slots=True)
class Job:
    """One example to answer: its prompt, and how to score a reply to it."""

    task: str
    index: int
    target: str
    prompt: str
    metadata: dict[str, Any]
    score: Callable[[str], tuple[str, bool]]
    """The reply -> (the answer found in it, whether it is right)."""


async def answer_all(
    system: System,
    jobs: Sequence[Job],
    store: Store,
    *,
    concurrency: int,
    description: str,
    progress: bool,
    console: Console | None,
) -> list[ExampleRecord]:
    """Answer every job, ``concurrency`` at a time, each record appended to ``store`` as it
    comes (a failed example is recorded with its error); closes the store's files."""
    semaphore = asyncio.Semaphore(concurrency)
    records: list[ExampleRecord] = []
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not progress,
        transient=False,
    )

    async def one(job: Job, bar_id: Any) -> None:
        async with semaphore:
            try:
                ans = await system.answer(job.prompt, metadata=job.metadata)
            except RedeError as exc:
                rec = ExampleRecord(
                    task=job.task,
                    index=job.index,
                    target=job.target,
                    error=f"{type(exc).__name__}: {exc}",
                )
            else:
                answer, correct = job.score(ans.text)
                rec = ExampleRecord(
                    task=job.task,
                    index=job.index,
                    target=job.target,
                    completion=ans.text,
                    answer=answer,
                    correct=correct,
                    usage=ans.usage,
                    latency_s=ans.latency_s,
                    messages=ans.messages,
                    sources=sorted(ans.sources or {ans.usage.source}),
                    agents=dict(ans.agents),
                    escalated=ans.escalated,
                )
        store.append(rec)
        records.append(rec)
        bar.advance(bar_id)

    try:
        with bar:
            bar_id = bar.add_task(description, total=len(jobs))
            async with asyncio.TaskGroup() as group:
                for job in jobs:
                    group.create_task(one(job, bar_id))
    finally:
        store.close()
    return records


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def summarise(
    system: System,
    data: BBH,
    mode: Mode,
    limit: int | None,
    records: dict[str, list[ExampleRecord]],
) -> BenchSummary:
    """Scores per task and overall from the records of the examples asked for."""
    per_task: dict[str, TaskScore] = {}
    for task, recs in records.items():
        n = len(recs)
        correct = sum(r.correct for r in recs)
        ok = [r for r in recs if r.error is None]  # failed examples have no latency, cost...
        per_task[task] = TaskScore(
            accuracy=100.0 * correct / n if n else 0.0,
            n=n,
            correct=correct,
            errors=n - len(ok),
            mean_latency_s=mean([r.latency_s for r in ok]),
            mean_tokens=mean([r.usage.total_tokens for r in ok]),
            mean_cost_usd=mean([r.usage.cost_usd for r in ok]),
            mean_messages=mean([r.messages for r in ok]),
            tokens=sum(r.usage.total_tokens for r in recs),
            cost_usd=sum(r.usage.cost_usd for r in recs),
            messages=sum(r.messages for r in recs),
        )
    every = [r for recs in records.values() for r in recs]
    answered = [r for r in every if r.error is None]
    seen = {s for r in answered for s in r.sources} - {"none"}
    observed = source_of(seen) if seen else system.source
    paper = paper_averages({t: s.accuracy for t, s in per_task.items()})
    return BenchSummary(
        system=system.name,
        source=system.source if observed == system.source else "mixed",
        sources=sorted(seen),
        mode=mode,
        data=str(data.root),
        limit=limit,
        tasks=per_task,
        average=mean([s.accuracy for s in per_task.values()]),
        paper_average=paper.get("all"),
        algorithmic_average=paper.get("algorithmic"),
        nlp_average=paper.get("nlp"),
        n=len(every),
        errors=sum(r.error is not None for r in every),
        mean_latency_s=mean([r.latency_s for r in answered]),
        mean_tokens=mean([r.usage.total_tokens for r in answered]),
        mean_prompt_tokens=mean([r.usage.prompt_tokens for r in answered]),
        mean_completion_tokens=mean([r.usage.completion_tokens for r in answered]),
        mean_cost_usd=mean([r.usage.cost_usd for r in answered]),
        mean_messages=mean([r.messages for r in answered]),
        tokens_estimated=any(r.usage.estimated for r in answered),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def load_summary(out: Path) -> BenchSummary:
    return BenchSummary.model_validate_json((out / SUMMARY).read_text(encoding="utf-8"))


__all__ = [
    "BenchSummary",
    "ExampleRecord",
    "Job",
    "Store",
    "TaskScore",
    "answer_all",
    "load_summary",
    "mean",
    "run_bbh",
    "summarise",
]
