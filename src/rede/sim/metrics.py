"""Metrics of a simulation: per task from a :class:`~rede.run.RunResult` and the workload's
ground truth, then aggregated per system. Pure functions, so they can be checked on
hand-built runs.

Decomposition quality compares the plan a run executed with the workload's ideal plan:

- ``capability_f1``: overlap of the two multisets of step capabilities;
- ``step_f1``: steps matched one to one (an actual step matches an ideal one when its
  instruction contains the ideal step's instruction; same capability preferred);
- ``edge_f1``: dependencies between matched steps that the ideal plan also has (None when
  neither plan has any: there is no structure to compare);
- ``score``: the mean of those three that are defined.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, Field, computed_field

from rede.orchestration.plan import Plan
from rede.orchestration.run import RunResult
from rede.sim.buses import Traffic
from rede.sim.workload import SimTask, grade, normalise

RECOVERY_DECISIONS = ("reroute", "retry")


def _f1(hits: int, actual: int, ideal: int) -> float:
    if actual == 0 and ideal == 0:
        return 1.0
    return 2 * hits / (actual + ideal)


class Decomposition(BaseModel):
    capability_f1: float = 0.0
    step_f1: float = 0.0
    edge_f1: float | None = 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def score(self) -> float:
        parts = [self.capability_f1, self.step_f1]
        if self.edge_f1 is not None:
            parts.append(self.edge_f1)
        return sum(parts) / len(parts)


def match_steps(actual: Plan, ideal: Plan) -> dict[str, str]:
    """``{actual step id: ideal step id}``, one to one, in the ideal plan's order."""
    matched: dict[str, str] = {}
    for want in ideal.steps:
        text = normalise(want.instruction)
        candidates = [
            s for s in actual.steps if s.id not in matched and text in normalise(s.instruction)
        ]
        if candidates:
            best = next((s for s in candidates if s.capability == want.capability), candidates[0])
            matched[best.id] = want.id
    return matched


def decomposition(actual: Plan | None, ideal: Plan) -> Decomposition:
    if actual is None:  # no plan: nothing matched; edges only count where the ideal has some
        return Decomposition(edge_f1=0.0 if any(s.depends_on for s in ideal.steps) else None)
    caps_a = Counter(s.capability for s in actual.steps)
    caps_i = Counter(s.capability for s in ideal.steps)
    cap_hits = sum((caps_a & caps_i).values())
    mapping = match_steps(actual, ideal)
    edges_i = {(d, s.id) for s in ideal.steps for d in s.depends_on}
    edges_a = [(d, s.id) for s in actual.steps for d in s.depends_on]
    mapped = {(mapping[d], mapping[s]) for d, s in edges_a if d in mapping and s in mapping}
    return Decomposition(
        capability_f1=_f1(cap_hits, len(actual.steps), len(ideal.steps)),
        step_f1=_f1(len(mapping), len(actual.steps), len(ideal.steps)),
        edge_f1=_f1(len(mapped & edges_i), len(edges_a), len(edges_i))
        if edges_a or edges_i
        else None,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linearly interpolated between ranks; nan if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def overlaps(start: float, end: float, windows: Iterable[tuple[float, float]]) -> bool:
    """Did the interval [start, end] run while any window was open (touching is not)?"""
    return any(start < b and end > a for a, b in windows)


class TaskOutcome(BaseModel):
    task_id: str
    run_id: str = ""
    status: str = "failed"
    error: str | None = None
    correct: bool = False
    parts_correct: int = 0
    parts: int = 0
    wall_time_s: float = 0.0
    critical_path_s: float = 0.0
    cost_usd: float = 0.0
    tokens: int = 0
    model_calls: int = 0
    messages: int = 0
    """Envelopes this run put on the bus (tasks, results, critiques, bids...), events apart."""
    bytes: int = 0
    events: int = 0
    decomposition: Decomposition = Field(default_factory=Decomposition)
    started_s: float = 0.0
    ended_s: float = 0.0
    exposed: bool = False
    """The run overlapped a fault's window."""
    recoveries: int = 0
    """Re-routes and retries the orchestrator made."""

    @property
    def overhead(self) -> float | None:
        """End-to-end latency over the critical path of model time."""
        return self.wall_time_s / self.critical_path_s if self.critical_path_s > 0 else None


def task_outcome(
    task: SimTask,
    run: RunResult | None,
    *,
    traffic: Traffic | None = None,
    started_s: float = 0.0,
    ended_s: float = 0.0,
    windows: Iterable[tuple[float, float]] = (),
    error: str | None = None,
) -> TaskOutcome:
    """Grade one run against its task. ``run`` is None when no record exists at all."""
    traffic = traffic or Traffic()
    events = traffic.by_kind.get("event", 0)
    base = TaskOutcome(
        task_id=task.id,
        parts=len(task.parts),
        started_s=started_s,
        ended_s=ended_s,
        exposed=overlaps(started_s, ended_s, windows),
        messages=traffic.messages - events,
        bytes=traffic.bytes,
        events=events,
        error=error,
        decomposition=decomposition(None, task.ideal_plan),
    )
    if run is None:
        return base
    graded = grade(task, run.answer) if run.status == "ok" else {}
    right = sum(graded.values())
    return base.model_copy(
        update={
            "run_id": run.run_id,
            "status": run.status,
            "error": run.error or error,
            "correct": run.status == "ok" and right == len(task.parts),
            "parts_correct": right,
            "wall_time_s": run.wall_time_s,
            "critical_path_s": run.critical_path_s,
            "cost_usd": run.usage.cost_usd,
            "tokens": run.usage.total_tokens,
            "model_calls": run.usage.calls,
            "decomposition": decomposition(run.plan, task.ideal_plan),
            "recoveries": sum(1 for d in run.decisions if d.get("name") in RECOVERY_DECISIONS),
        }
    )


class SystemMetrics(BaseModel):
    tasks: int
    accuracy: float
    """Tasks whose every part was answered right (failed runs count as wrong)."""
    part_accuracy: float
    success_rate: float
    """Runs that finished with an answer."""
    latency_p50_s: float | None
    latency_p95_s: float | None
    """Over runs that left a record (None: none did); runs with no record have no latency."""
    cost_per_task_usd: float
    tokens_per_task: float
    messages_per_task: float
    bytes_per_task: float
    overhead_p50: float | None
    """Median over answered runs of end-to-end latency / critical path of model time."""
    exposed_tasks: int
    success_under_faults: float | None
    """Success rate of the runs that overlapped a fault (None: no run did)."""
    recovered_tasks: int
    """Answered runs that needed a re-route or retry."""
    decomposition: float
    capability_f1: float
    step_f1: float
    edge_f1: float | None
    """Mean over runs whose plan or ideal plan has dependencies (None: no run's has)."""
    total_cost_usd: float
    wall_s: float


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def _defined(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def aggregate(outcomes: Sequence[TaskOutcome], *, wall_s: float = 0.0) -> SystemMetrics:
    ok = [o for o in outcomes if o.status == "ok"]
    exposed = [o for o in outcomes if o.exposed]
    overheads = [o.overhead for o in ok if o.overhead is not None]
    latencies = [o.wall_time_s for o in outcomes if o.run_id]  # no record: no latency
    return SystemMetrics(
        tasks=len(outcomes),
        accuracy=_mean([float(o.correct) for o in outcomes]),
        part_accuracy=sum(o.parts_correct for o in outcomes)
        / max(1, sum(o.parts for o in outcomes)),
        success_rate=len(ok) / len(outcomes) if outcomes else 0.0,
        latency_p50_s=percentile(latencies, 50) if latencies else None,
        latency_p95_s=percentile(latencies, 95) if latencies else None,
        cost_per_task_usd=_mean([o.cost_usd for o in outcomes]),
        tokens_per_task=_mean([o.tokens for o in outcomes]),
        messages_per_task=_mean([o.messages for o in outcomes]),
        bytes_per_task=_mean([o.bytes for o in outcomes]),
        overhead_p50=percentile(overheads, 50) if overheads else None,
        exposed_tasks=len(exposed),
        success_under_faults=(
            sum(o.status == "ok" for o in exposed) / len(exposed) if exposed else None
        ),
        recovered_tasks=sum(1 for o in ok if o.recoveries),
        decomposition=_mean([o.decomposition.score for o in outcomes]),
        capability_f1=_mean([o.decomposition.capability_f1 for o in outcomes]),
        step_f1=_mean([o.decomposition.step_f1 for o in outcomes]),
        edge_f1=_mean(edges)
        if (edges := _defined(o.decomposition.edge_f1 for o in outcomes))
        else None,
        total_cost_usd=sum(o.cost_usd for o in outcomes),
        wall_s=wall_s,
    )
