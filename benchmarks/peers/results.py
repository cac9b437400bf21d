"""The benchmark's data: which frameworks, what one task measured, and the statistics over
tasks (medians with min and max). Shared by ``run.py`` (which measures) and ``report.py``
(which writes ``RESULTS.md`` and the chart)."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from workflow import ROLES

PEERS = ("autogen", "autogen_selector", "langgraph", "crewai")
ALL = ("baseline", "rede", *PEERS)
LABELS = {
    "baseline": "baseline (no framework)",
    "rede": "Rede",
    "autogen": "AutoGen (GraphFlow)",
    "autogen_selector": "AutoGen (SelectorGroupChat)",
    "langgraph": "LangGraph",
    "crewai": "CrewAI",
}
GROUP_CHAT = ("autogen", "autogen_selector")
"""Peers whose agents see the whole conversation (the token goal compares against these)."""
GOAL_OVERHEAD_FACTOR = 20.0
GOAL_LATENCY_RATIO = 1.05
GOAL_TOKEN_SHARE = 0.5


@dataclass
class Outcome:
    """What one framework did in this run, by model latency."""

    name: str
    status: str = "not run"
    error: str | None = None
    detail: str | None = None
    style: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """By latency label ("0ms", "50ms"): one record per measured task."""
    peak_rss_kb: int | None = None
    rss_after_import_kb: int | None = None
    import_s: float | None = None


def task_record(
    run: dict[str, Any], stats: dict[str, int], calls: list[dict[str, Any]], latency_s: float
) -> dict[str, Any]:
    roles = Counter(c["role"] for c in calls)
    research = Counter(c["branch"] for c in calls if c["role"] == "researcher")
    unassigned = research.pop(None, 0)
    branches = [research.get(1, 0), research.get(2, 0)]
    for _ in range(unassigned):  # researcher calls without a sub-question label
        branches[branches.index(min(branches))] += 1
    hops = sum(roles[r] for r in ROLES)
    requests = stats.get("requests", 0)
    critical_calls = roles["planner"] + max(branches) + roles["writer"] + roles["critic"]
    times = sorted(c["at"] for c in calls if c["role"] == "researcher" and c["at"] is not None)
    overlapped = None
    if latency_s > 0 and len(times) >= 2:
        # the server answers latency_s after a request arrives: the second researcher's
        # request was in before the first one's answer when their answers are that close
        overlapped = times[1] - times[0] < latency_s
    wall = float(run["wall_s"])
    return {
        "key": run["key"],
        "wall_s": wall,
        "final_is_revision": run["final_is_revision"],
        "requests": requests,
        "prompt_tokens": stats.get("prompt_tokens", 0),
        "completion_tokens": stats.get("completion_tokens", 0),
        "errors": stats.get("errors", 0),
        "calls": {
            **{r: roles[r] for r in ROLES},
            "other": sum(n for r, n in roles.items() if r not in ROLES),
        },
        "research_branches": branches,
        "hops": hops,
        "overhead_per_hop_s": (wall - latency_s * requests) / hops if hops else None,
        "critical_path_s": latency_s * critical_calls,
        "latency_ratio": wall / (latency_s * critical_calls)
        if latency_s and critical_calls
        else None,
        "researchers_overlapped": overlapped,
    }


def spread(values: list[float | None]) -> tuple[float, float, float] | None:
    """(median, min, max) of the measured values; None when nothing was measured."""
    got = [v for v in values if v is not None]
    if not got:
        return None
    return statistics.median(got), min(got), max(got)


def summarise(out: Outcome, lat_label: str) -> dict[str, Any]:
    zero = out.tasks.get("0ms", [])
    slow = out.tasks.get(lat_label, [])
    both = zero + slow
    first = both[0] if both else None
    overlapped = [
        t["researchers_overlapped"] for t in slow if t["researchers_overlapped"] is not None
    ]
    return {
        "overhead_per_hop_s": spread([t["overhead_per_hop_s"] for t in zero]),
        "wall_0ms_s": spread([t["wall_s"] for t in zero]),
        "e2e_s": spread([t["wall_s"] for t in slow]),
        "critical_path_s": spread([t["critical_path_s"] for t in slow]),
        "latency_ratio": spread([t["latency_ratio"] for t in slow]),
        "prompt_tokens": spread([t["prompt_tokens"] for t in both]),
        "completion_tokens": spread([t["completion_tokens"] for t in both]),
        "requests": spread([t["requests"] for t in both]),
        "hops": spread([t["hops"] for t in both]),
        "calls": first["calls"] if first else None,
        "calls_vary": len({json.dumps(t["calls"]) for t in both}) > 1,
        "researchers_overlapped": (
            None if not overlapped else f"{sum(overlapped)}/{len(overlapped)}"
        ),
        "final_is_revision": f"{sum(t['final_is_revision'] for t in both)}/{len(both)}",
        "tasks": len(both),
    }


def call_floor(summaries: dict[str, dict[str, Any]]) -> float | None:
    """Seconds one model call costs the hand-written baseline with the 0 ms model (its HTTP
    round trip through the ``openai`` SDK), when the baseline ran in this run."""
    base = summaries.get("baseline")
    if not base or base["wall_0ms_s"] is None or not base["requests"]:
        return None
    return float(base["wall_0ms_s"][0] / base["requests"][0])


def call_noise(summaries: dict[str, dict[str, Any]]) -> float | None:
    """How much the baseline's cost per call moved between its tasks in this run (half the
    range of its per-task wall time, per call): nets smaller than this are noise."""
    base = summaries.get("baseline")
    if not base or base["wall_0ms_s"] is None or not base["requests"]:
        return None
    _, low, high = base["wall_0ms_s"]
    return float((high - low) / 2 / base["requests"][0])


def describe_net(summary: dict[str, Any], floor: float | None, noise: float | None) -> str:
    """A net overhead per hop as a person should read it: a figure, or "within noise" when it
    is within the baseline's own spread of zero (a negative net is never reported as such)."""
    net = net_overhead(summary, floor)
    if net is None:
        return "not measured"
    per_hop_noise = (noise or 0.0) * summary["requests"][0] / summary["hops"][0]
    if net <= per_hop_noise:
        return f"within noise (under {max(per_hop_noise, 0.0) * 1000:.2f} ms)"
    return f"{net * 1000:.2f} ms (noise +/- {per_hop_noise * 1000:.2f} ms)"


def net_overhead(summary: dict[str, Any], floor: float | None) -> float | None:
    """Median overhead per hop less the baseline's cost of the calls, per hop."""
    gross = summary["overhead_per_hop_s"]
    if floor is None or gross is None or not summary["hops"] or not summary["requests"]:
        return None
    return float(gross[0] - floor * summary["requests"][0] / summary["hops"][0])
