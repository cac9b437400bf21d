"""Routing benchmark (SIMULATED models): cost/accuracy frontier, confidence calibration, and
queue wait under a burst with and without spawning.

    python benchmarks/routing.py                 # the tables in benchmarks/README.md
    python benchmarks/routing.py --tasks 100     # quicker
    python benchmarks/routing.py --json out.json

Every model here is a ``sim`` model, calibrated from 19 real models' recorded GSM8K answers
(``benchmarks/calibrate_sim.py``, see ``rede.models.sim``): it answers a question with known
truth correctly with its size's measured accuracy, misses the same hard questions other
models miss (a per-question difficulty shared by all models, at the measured joint-error
rate), and states a confidence that tells right from wrong only as well as agreement between
two real models does. Prices are the sim profiles' (USD per 1k tokens); token counts are
estimates. The numbers show how the routing strategies trade cost for accuracy on such a
workload, not how any real model performs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from rede.agents.confidence import answer_key, llm_specialist
from rede.agents.specialists import NO_CONTEXT
from rede.config import ConfidenceConfig
from rede.models.sim import PROFILES, SimModel
from rede.network import Network
from rede.protocol.messages import Result, Task

SIZES = ["1b", "3b", "7b", "13b", "70b"]
OPTIONS = ["A", "B", "C", "D"]


def workload(n: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """``n`` questions with known answers (the truth rotates through four options)."""
    tasks = []
    for i in range(n):
        truth = OPTIONS[(i * 7 + seed) % 4]
        question = f"Q{seed}-{i}: which option is right for item {i}?"
        tasks.append((question, {"truth": truth, "wrong": [o for o in OPTIONS if o != truth]}))
    return tasks


def correct(answer: str, metadata: dict[str, Any]) -> bool:
    return answer_key(answer) == str(metadata["truth"]).lower()


# --------------------------------------------------------------------------- frontier


@dataclass
class Setup:
    label: str
    sizes: list[str]
    routing: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)
    """Declared quality per size (default: the sim profile's, i.e. honest cards)."""
    manager: str | None = None
    feedback: bool = True
    """Tell the router each answer's verification outcome (what it learns quality from)."""


@dataclass
class Row:
    label: str
    strategy: str
    accuracy: float
    cost_per_1k_tasks_usd: float
    calls_per_task: float
    answered_by: dict[str, int]
    frontier: bool = False


def network_for(setup: Setup, seed: int, sim: dict[str, Any] | None = None) -> Network:
    tiers = {s: i for i, s in enumerate(SIZES)}
    agents = []
    for size in setup.sizes:
        agent: dict[str, Any] = {
            "name": f"m{size}",
            "capabilities": ["answer"],
            "model": size,
            "tier": tiers[size],
            "concurrency": 16,
        }
        if size in setup.quality:
            agent["quality"] = setup.quality[size]
        agents.append(agent)
    routing = dict(setup.routing)
    if setup.manager:
        routing["manager"] = f"m{setup.manager}"
    return Network.from_dict(
        {
            "name": "routing-bench",
            "models": {
                s: {"spec": f"sim:{s}", "seed": seed, "time_scale": 0, "sim": sim or {}}
                for s in setup.sizes
            },
            "agents": agents,
            "routing": routing,
            "limits": {"max_steps": 20, "step_retries": 1},
            "heartbeat_s": 1,
        }
    )


async def run_setup(
    setup: Setup,
    tasks: list[tuple[str, dict[str, Any]]],
    seed: int,
    sim: dict[str, Any] | None = None,
) -> Row:
    net = network_for(setup, seed, sim)
    right = 0
    calls = 0
    answered_by: dict[str, int] = {}
    async with net:
        for question, metadata in tasks:
            result = await net.ask(question, metadata=metadata)
            step = result.step("answer")
            ok = correct(result.answer, metadata)
            right += ok
            calls += len(step.calls)
            if step.agent:
                answered_by[step.agent] = answered_by.get(step.agent, 0) + 1
                if setup.feedback:  # a verification outcome for the agent that answered
                    net.router.observe_outcome(step.agent, "answer", ok)
        spent = net.orchestrator.budget.spent_usd if net.orchestrator else 0.0
    n = len(tasks)
    return Row(
        setup.label,
        setup.routing.get("strategy", "single"),
        right / n,
        spent / n * 1000,
        calls / n,
        dict(sorted(answered_by.items(), key=lambda kv: SIZES.index(kv[0][1:]))),
    )


def setups() -> list[Setup]:
    out = [Setup(f"single {s}", [s], {"strategy": "cheapest"}) for s in SIZES]
    out[-1].label = "single 70b (strong model)"
    for s in out:
        s.routing = {"strategy": "cheapest"}
    for need in (0.6, 0.7, 0.8):
        out.append(
            Setup(
                f"cheapest q>={need}", SIZES, {"strategy": "cheapest", "required_confidence": need}
            )
        )
    for feedback in (False, True):
        out.append(
            Setup(
                "cheapest q>=0.75, cards overstate (all 0.9), "
                + ("with outcome feedback" if feedback else "no feedback"),
                SIZES,
                {"strategy": "cheapest", "required_confidence": 0.75},
                quality={s: 0.9 for s in SIZES},
                feedback=feedback,
            )
        )
    for chain, thr in (
        (["3b", "70b"], 0.6),
        (["1b", "7b", "70b"], 0.6),
        (["1b", "3b", "7b", "13b", "70b"], 0.6),
        (["3b", "70b"], 0.8),
        (["7b", "70b"], 0.7),
    ):
        out.append(
            Setup(
                f"cascade {'>'.join(chain)} below {thr}",
                chain,
                {"strategy": "cascade", "escalate_below": thr},
            )
        )
    out.append(
        Setup(
            "cascade swarm 1b,3b + manager 70b below 0.6",
            ["1b", "3b", "70b"],
            {"strategy": "cascade", "escalate_below": 0.6},
            manager="70b",
        )
    )
    for need in (0.6, 0.7, 0.8):
        out.append(
            Setup(
                f"auction q>={need}",
                SIZES,
                {"strategy": "auction", "required_confidence": need, "bid_timeout_s": 0.5},
            )
        )
    return out


def mark_frontier(rows: list[Row]) -> None:
    for r in rows:
        r.frontier = not any(
            o is not r
            and o.accuracy >= r.accuracy
            and o.cost_per_1k_tasks_usd <= r.cost_per_1k_tasks_usd
            and (o.accuracy > r.accuracy or o.cost_per_1k_tasks_usd < r.cost_per_1k_tasks_usd)
            for o in rows
        )


# --------------------------------------------------------------------------- calibration


@dataclass
class Calibration:
    model: str
    method: str
    accuracy: float
    ece: float
    brier: float
    confident_share: float
    confident_accuracy: float
    calls_per_task: float


def calibration(points: list[tuple[float, bool]], bins: int = 10) -> tuple[float, float]:
    """Expected calibration error (equal-width bins) and Brier score."""
    ece = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        in_bin = [(c, ok) for c, ok in points if lo <= c < hi or (b == bins - 1 and c == 1.0)]
        if in_bin:
            conf = statistics.fmean(c for c, _ in in_bin)
            acc = statistics.fmean(ok for _, ok in in_bin)
            ece += len(in_bin) / len(points) * abs(conf - acc)
    brier = statistics.fmean((c - ok) ** 2 for c, ok in points)
    return ece, brier


async def calibrate(
    size: str, method: str, tasks: list[tuple[str, dict[str, Any]]], seed: int, k: int
) -> Calibration:
    model = SimModel.from_profile(size, seed=seed, time_scale=0, name=size)
    # built as the network YAML's ``confidence:`` of an agent builds it
    declared = ConfidenceConfig(method="agreement", k=k) if method.startswith("agreement") else None
    specialist = llm_specialist(model, None, declared)
    points = []
    calls = 0
    for question, metadata in tasks:
        task = Task(capability="answer", instruction=question, request=question, metadata=metadata)
        result = await specialist.handle(task, NO_CONTEXT)
        assert isinstance(result, Result)
        calls += result.usage.calls
        points.append((result.confidence, correct(result.output, metadata)))
    ece, brier = calibration(points)
    confident = [ok for c, ok in points if c >= 0.8]
    return Calibration(
        size,
        method,
        statistics.fmean(ok for _, ok in points),
        ece,
        brier,
        len(confident) / len(points),
        statistics.fmean(confident) if confident else float("nan"),
        calls / len(points),
    )


# --------------------------------------------------------------------------- burst


@dataclass
class Burst:
    label: str
    runs: int
    ok: int
    wait_p50_s: float
    wait_p95_s: float
    wait_max_s: float
    makespan_s: float
    peak_replicas: int
    spawn_decisions: int


async def burst(n: int, spawning: bool, time_scale: float) -> Burst:
    conf: dict[str, Any] = {
        "name": "burst",
        "models": {"w": {"spec": "sim:7b", "seed": 1, "time_scale": time_scale}},
        "agents": [{"name": "worker", "capabilities": ["answer"], "model": "w", "concurrency": 4}],
        "limits": {"step_timeout_s": 120, "wall_time_s": 300},
        "heartbeat_s": 0.5,
    }
    if spawning:
        conf["spawn"] = {
            "templates": {"worker": {"min_replicas": 1, "max_replicas": 16}},
            "backlog_per_replica": 1,
            "idle_s": 1,
            "interval_s": 0.05,
        }
    net = Network.from_dict(conf)
    tasks = workload(n, seed=9)
    async with net:
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(net.ask(q, metadata=m) for q, m in tasks), return_exceptions=True
        )
        makespan = time.perf_counter() - t0
        spawner = net.spawner
        peak = (
            max((d["replicas"] for d in spawner.decisions if d["name"] == "spawn"), default=1)
            if spawner
            else 1
        )
        decisions = len(spawner.decisions) if spawner else 0
    waits = []
    ok = 0
    for r in results:
        if isinstance(r, BaseException):
            continue
        ok += r.status == "ok"
        step = r.step("answer")
        if step.started_at is not None and step.ended_at is not None:
            waits.append(max(0.0, step.ended_at - step.started_at - step.usage.latency_s))
    waits.sort()
    return Burst(
        "with spawning (1..16 replicas)" if spawning else "fixed, 1 replica",
        n,
        ok,
        statistics.median(waits),
        waits[int(0.95 * (len(waits) - 1))],
        waits[-1],
        makespan,
        peak,
        decisions,
    )


@dataclass
class UnderLoad:
    strategy: str
    accuracy: float
    cost_per_1k_tasks_usd: float
    wait_p95_s: float
    makespan_s: float
    answered_by: dict[str, int]


async def under_load(strategy: str, n: int, time_scale: float) -> UnderLoad:
    """``n`` runs at once on two agents (sim 7b and the slower, dearer 13b), q>=0.6."""
    net = Network.from_dict(
        {
            "name": "under-load",
            "models": {
                s: {"spec": f"sim:{s}", "seed": 2, "time_scale": time_scale} for s in ("7b", "13b")
            },
            "agents": [
                {"name": f"m{s}", "capabilities": ["answer"], "model": s, "concurrency": 4}
                for s in ("7b", "13b")
            ],
            "routing": {"strategy": strategy, "required_confidence": 0.6},
            "limits": {"step_timeout_s": 120, "wall_time_s": 300},
        }
    )
    async with net:
        for q, m in workload(4, seed=3):  # warm-up: service times observed
            await net.ask(q, metadata=m)
        spent = net.orchestrator.budget.spent_usd if net.orchestrator else 0.0
        tasks = workload(n, seed=5)
        t0 = time.perf_counter()
        results = await asyncio.gather(*(net.ask(q, metadata=m) for q, m in tasks))
        makespan = time.perf_counter() - t0
        spent = (net.orchestrator.budget.spent_usd if net.orchestrator else 0.0) - spent
    by: dict[str, int] = {}
    waits = []
    right = 0
    for r, (_, m) in zip(results, tasks, strict=True):
        step = r.step("answer")
        by[step.agent or "?"] = by.get(step.agent or "?", 0) + 1
        right += correct(r.answer, m)
        if step.started_at is not None and step.ended_at is not None:
            waits.append(max(0.0, step.ended_at - step.started_at - step.usage.latency_s))
    waits.sort()
    return UnderLoad(
        strategy,
        right / n,
        spent / n * 1000,
        waits[int(0.95 * (len(waits) - 1))],
        makespan,
        dict(sorted(by.items())),
    )


# --------------------------------------------------------------------------- main


def fmt_rows(rows: list[Row], strong: Row) -> str:
    head = (
        "| setup | accuracy | USD per 1k tasks | accuracy vs 70b | cost vs 70b | calls/task | "
        "answered by |\n|---|---:|---:|---:|---:|---:|---|"
    )
    lines = [head]
    for r in rows:
        star = " *" if r.frontier else ""
        by = ", ".join(f"{k}:{v}" for k, v in r.answered_by.items())
        acc = r.accuracy / strong.accuracy
        cost = r.cost_per_1k_tasks_usd / strong.cost_per_1k_tasks_usd
        lines.append(
            f"| {r.label}{star} | {r.accuracy:.3f} | {r.cost_per_1k_tasks_usd:.4f} | {acc:.0%} | "
            f"{cost:.0%} | {r.calls_per_task:.2f} | {by} |"
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tasks = workload(args.tasks, args.seed)
    out: dict[str, Any] = {"simulated": True, "args": vars(args)}

    print(
        f"# Routing benchmark: SIMULATED models (calibrated from recorded GSM8K outputs), "
        f"{args.tasks} questions, seed {args.seed}\n"
    )
    sim = {} if args.shared_difficulty is None else {"shared_difficulty": args.shared_difficulty}
    if sim:
        print(f"(ablation: every sim model's shared_difficulty = {args.shared_difficulty})\n")
    rows = [await run_setup(s, tasks, args.seed, sim) for s in setups()]
    mark_frontier(rows)
    strong = next(r for r in rows if r.label.startswith("single 70b"))
    print("## Cost/accuracy (* = on the frontier: nothing else is both cheaper and better)\n")
    print(fmt_rows(rows, strong))
    out["frontier"] = [asdict(r) for r in rows]

    print("\n## Confidence calibration against the sim's truth\n")
    cal = []
    for size in SIZES:
        for method in ("self_reported", f"agreement_{args.k}"):
            cal.append(
                await calibrate(size, method, tasks[: min(200, len(tasks))], args.seed, args.k)
            )
    print(
        "| model | method | accuracy | ECE | Brier | share conf>=0.8 | accuracy when conf>=0.8 | "
        "calls/task |\n|---|---|---:|---:|---:|---:|---:|---:|"
    )
    for c in cal:
        print(
            f"| sim {c.model} | {c.method} | {c.accuracy:.3f} | {c.ece:.3f} | {c.brier:.3f} | "
            f"{c.confident_share:.0%} | {c.confident_accuracy:.3f} | {c.calls_per_task:.0f} |"
        )
    print(
        "\nlogprobs (`confidence: logprobs`, exp(mean token log-probability)) is not measured "
        "here: the sim backend returns no log-probabilities; it needs a real server."
    )
    out["calibration"] = [asdict(c) for c in cal]

    print(f"\n## Burst of {args.burst} runs at once (sim 7b, latency x{args.time_scale:g})\n")
    bursts = [
        await burst(args.burst, False, args.time_scale),
        await burst(args.burst, True, args.time_scale),
    ]
    print(
        "| agent | runs ok | queue wait p50 (s) | p95 (s) | max (s) | makespan (s) | "
        "peak replicas | spawn decisions |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for b in bursts:
        print(
            f"| {b.label} | {b.ok}/{b.runs} | {b.wait_p50_s:.3f} | {b.wait_p95_s:.3f} | "
            f"{b.wait_max_s:.3f} | {b.makespan_s:.2f} | {b.peak_replicas} | {b.spawn_decisions} |"
        )
    out["burst"] = [asdict(b) for b in bursts]

    print(
        f"\n## Auction under load: {args.burst} runs at once on sim 7b and sim 13b "
        f"(1 replica each, concurrency 4, q>=0.6, latency x{args.time_scale:g})\n"
    )
    print(
        "| strategy | accuracy | USD per 1k tasks | queue wait p95 (s) | makespan (s) | "
        "answered by |\n|---|---:|---:|---:|---:|---|"
    )
    loads = [
        await under_load(st, args.burst, args.time_scale) for st in ("cheapest", "load", "auction")
    ]
    for u in loads:
        by = ", ".join(f"{k}:{v}" for k, v in u.answered_by.items())
        print(
            f"| {u.strategy} | {u.accuracy:.3f} | {u.cost_per_1k_tasks_usd:.4f} | "
            f"{u.wait_p95_s:.3f} | {u.makespan_s:.2f} | {by} |"
        )
    out["under_load"] = [asdict(u) for u in loads]
    print(
        "\nQueue wait = a call's duration as the orchestrator saw it minus the model's own "
        "(simulated) latency. Wall-clock on this machine; the sim's latency is real sleep."
    )
    out["profiles"] = {s: PROFILES[s].model_dump(mode="json") for s in SIZES}
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--tasks", type=int, default=400, help="questions per setup")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--burst", type=int, default=200, help="runs in the burst")
    ap.add_argument("--time-scale", type=float, default=0.1, help="sim latency scale in the burst")
    ap.add_argument("--k", type=int, default=5, help="samples for agreement confidence")
    ap.add_argument("--json", help="write every number here")
    ap.add_argument(
        "--shared-difficulty",
        type=float,
        help="override the calibrated rho in the frontier (0: independent errors, an ablation)",
    )
    cli_args = ap.parse_args()
    results = asyncio.run(main(cli_args))
    if cli_args.json:
        with open(cli_args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"\nwrote {cli_args.json}", file=sys.stderr)
