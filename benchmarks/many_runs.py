"""Many runs at once in one process: do they all complete, how fast, and what does a run cost
in memory?

N runs start together (``asyncio.gather`` of ``net.ask``) on one network whose agents'
models answer at once (scripted, zero latency), so the figure is Rede's own cost under load:
the orchestrator, the bus, the registry and the agent runners on one event loop. Each run
gets its own request and the model echoes it, so a run that came back with another run's
answer would be caught, not only a run that was lost.

    python benchmarks/many_runs.py                          # 1,000 runs, 3-step chains
    python benchmarks/many_runs.py --runs 1000 --shape fan-out
    python benchmarks/many_runs.py --bus redis://127.0.0.1:6379/0

Reported: runs completed / lost / wrong, wall time, runs/s and hops/s, and memory per run:
the growth of the process's peak resident memory over the burst, divided by the runs (all
run records are kept until the end, as a caller holding the results would).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from pathlib import Path
from typing import Any

from rede import Network
from rede.models import ModelRequest, ScriptedModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_overhead import SHAPES, plan


def echo(request: ModelRequest) -> str:
    return f"answer to {request.metadata.get('request', '')}"


def rss_kib(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process, in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def network(bus: str, concurrency: int) -> Network:
    return Network.from_dict(
        {
            "name": "many-runs",
            "bus": {"url": bus},
            "models": {"zero": {"spec": "sim:7b"}},
            "agents": [
                {
                    "name": "worker",
                    "capabilities": ["work"],
                    "model": "zero",
                    "concurrency": concurrency,
                }
            ],
            "limits": {"max_steps": 100},
        },
        models={"zero": ScriptedModel(echo, name="zero")},
        ledger=None,
    )


async def burst(runs: int, shape: str, bus: str, concurrency: int) -> dict[str, Any]:
    net = network(bus, concurrency)
    the_plan = plan(shape)
    async with net:
        for i in range(10):  # warm up
            await net.ask(f"warm {i}", plan=the_plan)
        rss0 = rss_kib("VmRSS")
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(net.ask(f"q{i}", plan=the_plan) for i in range(runs)), return_exceptions=True
        )
        wall = time.perf_counter() - t0
        peak = rss_kib("VmHWM")
    errors: collections.Counter[str] = collections.Counter()
    ok = wrong = 0
    for i, r in enumerate(results):
        if isinstance(r, BaseException):
            errors[f"{type(r).__name__}: {str(r)[:120]}"] += 1
        elif r.status != "ok":
            errors[f"status {r.status}: {r.error}"] += 1
        elif not r.answer.endswith(f"answer to q{i}"):
            wrong += 1
        else:
            ok += 1
    return {
        "runs": runs,
        "shape": shape,
        "bus": bus,
        "concurrency": concurrency,
        "ok": ok,
        "lost": runs - ok - wrong,
        "wrong_answer": wrong,
        "errors": dict(errors.most_common(5)),
        "wall_s": round(wall, 3),
        "runs_per_s": round(runs / wall, 1),
        "hops_per_s": round(runs * SHAPES[shape] / wall, 1),
        "peak_rss_growth_kib_per_run": round(max(0, peak - rss0) / runs, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="chain")
    parser.add_argument("--bus", default="memory://")
    parser.add_argument("--concurrency", type=int, default=64, help="tasks per agent at once")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    out = asyncio.run(burst(args.runs, args.shape, args.bus, args.concurrency))
    print(f"python {sys.version.split()[0]}")
    for key, value in out.items():
        print(f"{key}: {value}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
