"""What one hop costs in Rede's core, against a LangGraph node, with no model time at all.

Two shapes, each run many times in one process with zero-latency models:

- **chain**: 3 steps, each depending on the one before;
- **fan-out**: 5 independent steps and a join that depends on all of them (6 hops).

Rede runs them as given plans (no planner call) on the in-process bus: every hop is a real
task envelope to a real agent runner, whose scripted model answers at once, and a result
envelope back, with routing, accounting and the run record. LangGraph runs the same shapes
as a ``StateGraph`` whose nodes call an async function that returns at once. The LangGraph
half runs in the peers' virtual environment (``bash benchmarks/peers/setup.sh``), in a
subprocess, in the same run as Rede's; without that environment only Rede is measured.

    python benchmarks/core_overhead.py              # 300 runs of each shape
    python benchmarks/core_overhead.py --runs 1000 --json out.json

Reported per hop: wall microseconds (runs one after another, so wall = the hop's whole
latency) and CPU microseconds (the process's CPU time over the same runs), medians of
``--rounds`` rounds, and Rede/LangGraph ratios; and how much of the CPU went to Python's
garbage collector (``gc.callbacks``): what a run keeps (Rede's in-memory ledger keeps every
envelope and decision, and the scripted model every request) makes later collections longer,
so the GC share varies from round to round and grows with the number of runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from rede import Network
from rede.models import ScriptedModel
from rede.orchestration.plan import Plan, Step

HERE = Path(__file__).resolve().parent
PEERS_PYTHON = HERE / "peers" / ".venv" / "bin" / "python"
SHAPES = {"chain": 3, "fan-out": 6}


def plan(shape: str) -> Plan:
    if shape == "chain":
        steps = [
            Step(id=f"s{i}", capability="work", instruction=f"part {i}", depends_on=deps)
            for i, deps in ((1, []), (2, ["s1"]), (3, ["s2"]))
        ]
    else:
        steps = [Step(id=f"p{i}", capability="work", instruction=f"part {i}") for i in range(5)]
        steps.append(
            Step(id="join", capability="work", instruction="join", depends_on=[s.id for s in steps])
        )
    return Plan(steps=steps)


async def rede(shape: str, runs: int, rounds: int) -> dict[str, float]:
    model = ScriptedModel(lambda request: "ok", name="zero")
    net = Network.from_dict(
        {
            "name": "overhead",
            "models": {"zero": {"spec": "sim:7b"}},
            "agents": [
                {"name": "worker", "capabilities": ["work"], "model": "zero", "concurrency": 64}
            ],
            "limits": {"max_steps": 100},
        },
        models={"zero": model},
        ledger=None,
    )
    the_plan = plan(shape)
    walls: list[float] = []
    cpus: list[float] = []
    gcs: list[float] = []
    async with net:
        for _ in range(20):  # warm up
            await net.ask("go", plan=the_plan)
        for _ in range(rounds):
            with GcClock() as in_gc:
                wall, cpu = time.perf_counter(), time.process_time()
                for _ in range(runs):
                    await net.ask("go", plan=the_plan)
                hops = runs * SHAPES[shape]
                walls.append((time.perf_counter() - wall) / hops * 1e6)
                cpus.append((time.process_time() - cpu) / hops * 1e6)
            gcs.append(in_gc.seconds / hops * 1e6)
    return {
        "wall_us": statistics.median(walls),
        "cpu_us": statistics.median(cpus),
        "gc_us": statistics.median(gcs),
    }


class GcClock:
    """Seconds spent in the garbage collector while in the ``with`` block."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def _tick(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self._tick)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._tick)


LANGGRAPH = textwrap.dedent(
    """
    import asyncio, gc, json, operator, statistics, sys, time
    from typing import Annotated, TypedDict
    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        request: str
        results: Annotated[list, operator.add]

    async def model(prompt):
        return "ok"

    def node(name):
        async def run(state):
            return {"results": [await model(name + state["request"])]}
        return run

    def build(shape):
        g = StateGraph(State)
        if shape == "chain":
            names = ["s1", "s2", "s3"]
            for n in names:
                g.add_node(n, node(n))
            g.add_edge(START, "s1"); g.add_edge("s1", "s2"); g.add_edge("s2", "s3")
            g.add_edge("s3", END)
        else:
            parts = [f"p{i}" for i in range(5)]
            for n in parts + ["join"]:
                g.add_node(n, node(n))
            for n in parts:
                g.add_edge(START, n)
            g.add_edge(parts, "join")
            g.add_edge("join", END)
        return g.compile()

    async def main(shape, runs, rounds, hops):
        graph = build(shape)
        for _ in range(20):
            await graph.ainvoke({"request": "go", "results": []})
        walls, cpus, gcs = [], [], []
        clock = {"start": 0.0, "seconds": 0.0}

        def tick(phase, info):
            if phase == "start":
                clock["start"] = time.perf_counter()
            else:
                clock["seconds"] += time.perf_counter() - clock["start"]

        for _ in range(rounds):
            clock["seconds"] = 0.0
            gc.callbacks.append(tick)
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(runs):
                out = await graph.ainvoke({"request": "go", "results": []})
                assert len(out["results"]) == hops
            walls.append((time.perf_counter() - wall) / (runs * hops) * 1e6)
            cpus.append((time.process_time() - cpu) / (runs * hops) * 1e6)
            gc.callbacks.remove(tick)
            gcs.append(clock["seconds"] / (runs * hops) * 1e6)
        print(json.dumps({
            "wall_us": statistics.median(walls),
            "cpu_us": statistics.median(cpus),
            "gc_us": statistics.median(gcs),
        }))

    shape, runs, rounds, hops = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    asyncio.run(main(shape, runs, rounds, hops))
    """
)


def langgraph(shape: str, runs: int, rounds: int) -> dict[str, float] | None:
    if not PEERS_PYTHON.exists():
        return None
    out = subprocess.run(
        [str(PEERS_PYTHON), "-c", LANGGRAPH, shape, str(runs), str(rounds), str(SHAPES[shape])],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        print(f"LangGraph not measured: {out.stderr.strip().splitlines()[-1]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def langgraph_version() -> str | None:
    if not PEERS_PYTHON.exists():
        return None
    probe = "import importlib.metadata as m; print(m.version('langgraph'))"
    out = subprocess.run([str(PEERS_PYTHON), "-c", probe], capture_output=True, text=True)
    return out.stdout.strip() or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="runs per round and shape")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for shape in SHAPES:
        ours = asyncio.run(rede(shape, args.runs, args.rounds))
        theirs = langgraph(shape, args.runs, args.rounds)
        rows.append({"shape": shape, "hops": SHAPES[shape], "rede": ours, "langgraph": theirs})
    version = langgraph_version()
    print(f"python {sys.version.split()[0]}; langgraph {version or '(peers venv absent)'}")
    print(f"{args.runs} runs x {args.rounds} rounds per shape; microseconds per hop, medians")
    print(
        "| shape | Rede wall | Rede CPU | of which GC | LangGraph wall | LangGraph CPU "
        "| of which GC | Rede / LangGraph (CPU) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ours, theirs = r["rede"], r["langgraph"]
        lg = (
            f"{theirs['wall_us']:.0f} | {theirs['cpu_us']:.0f} | {theirs['gc_us']:.0f}"
            if theirs
            else "- | - | -"
        )
        ratio = f"{ours['cpu_us'] / theirs['cpu_us']:.2f}x" if theirs else "-"
        mine = f"{ours['wall_us']:.0f} | {ours['cpu_us']:.0f} | {ours['gc_us']:.0f}"
        print(f"| {r['shape']} | {mine} | {lg} | {ratio} |")
    if args.json:
        args.json.write_text(json.dumps({"langgraph": version, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
