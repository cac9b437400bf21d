"""Throughput as agents spread over 1, 2, 4 and 8 processes on Redis, as a share of linear.

Each agent process is ``rede agent NETWORK --bus URL`` serving one replica of ``worker``,
whose model is simulated and I/O-bound (it sleeps its latency, ``sim:7b`` at
``--time-scale``); an orchestrator in this process sends ``--runs`` one-step runs at once
and measures runs/s once every agent has registered. With K processes of ``concurrency``
tasks each, ideal throughput is K times that of one process; the share of linear is
``(runs/s with K) / (K x runs/s with 1)``.

    redis-server --port 6399 --save "" &
    python benchmarks/agent_scaling.py --bus redis://127.0.0.1:6399/0
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from rede import Network
from rede.orchestration.plan import Plan, Step

REDE = Path(sys.executable).with_name("rede")


def config(bus: str, concurrency: int, time_scale: float) -> dict[str, object]:
    return {
        "name": "scaling",
        "bus": {"url": bus},
        "models": {"slow": {"spec": "sim:7b", "time_scale": time_scale}},
        "agents": [
            {
                "name": "worker",
                "capabilities": ["work"],
                "model": "slow",
                "concurrency": concurrency,
                "replicas": 1,
            }
        ],
        "limits": {"max_steps": 100, "step_timeout_s": 120, "wall_time_s": 600},
    }


async def measure(path: Path, bus: str, procs: int, runs: int) -> float:
    net = Network.from_yaml(path, bus=bus).serve_only([])
    async with net:
        await net.registry.wait_for(lambda r: len(r.cards("work")) >= procs, timeout=60)
        plan = Plan(steps=[Step(id="s", capability="work", instruction="do it")])
        for i in range(procs * 2):  # warm up every process
            await net.ask(f"warm {i}", plan=plan)
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(net.ask(f"q{i}", plan=plan) for i in range(runs)), return_exceptions=True
        )
        wall = time.perf_counter() - t0
    lost = sum(1 for r in results if isinstance(r, BaseException) or r.status != "ok")
    if lost:
        print(f"  {lost} of {runs} runs failed", file=sys.stderr)
    return (runs - lost) / wall


def start_agents(path: Path, bus: str, procs: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [str(REDE), "agent", str(path), "--bus", bus],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(procs)
    ]


def stop_agents(agents: list[subprocess.Popen[bytes]]) -> None:
    for p in agents:
        os.killpg(p.pid, signal.SIGTERM)
    for p in agents:
        p.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bus", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--procs", default="1,2,4,8")
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4, help="tasks per agent process")
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scaling.yaml"
        path.write_text(yaml.safe_dump(config(args.bus, args.concurrency, args.time_scale)))
        rates: dict[int, float] = {}
        for k in (int(p) for p in args.procs.split(",")):
            agents = start_agents(path, args.bus, k)
            try:
                rates[k] = asyncio.run(measure(path, args.bus, k, args.runs))
            finally:
                stop_agents(agents)
            base = rates[min(rates)] / min(rates)
            share = rates[k] / (k * base)
            print(f"{k} process(es): {rates[k]:.1f} runs/s, {share:.0%} of linear", flush=True)


if __name__ == "__main__":
    main()
