"""Fault trials of issue 23: load, Redis outages, agent kills, an orchestrator SIGKILL.

    python benchmarks/faults.py                          # every trial, the issue's sizes
    python benchmarks/faults.py --trials load-500,outage-aof --outage-s 5
    python benchmarks/faults.py --scale 0.1              # every count scaled down

Loopback only, bounded: each trial starts its own ``redis-server`` (Debian's, on a free
loopback port, in a temporary directory) and stops by itself, at the latest after
``--deadline-s``. Agents run in this process on their own Redis buses (one bus per "host",
as `rede up` processes would have), the orchestrator on another; their models are scripted
stand-ins that sleep (``--work-s``), so **no model is called and the latencies are those of
the stand-ins**. Every model call is logged by (run request, step instruction): one seen
twice is a call paid twice.

- ``load-500`` / ``load-2000``: that many runs at once from one orchestrator against one
  researcher replica (``concurrency`` 4) and one writer; ``load-2000-admit`` the same with
  ``limits.max_runs: 1000`` (the runs over it refused up front with ``Busy``).
- ``outage-aof`` / ``outage-empty``: 20 runs in flight when Redis is stopped for
  ``--outage-s`` (30 s) and started again, with its append-only file, or empty (no AOF).
- ``kills``: 150 runs in 3 waves of 50 over two agent hosts while an agent replica is
  crashed (no goodbye, its tasks left unacknowledged) twice a second and started again
  0.5 s later, as a supervisor would.
- ``orchestrator-kill``: ``benchmarks/chaos.py`` with `rede serve` processes, one of them
  SIGKILLed mid-run and its runs adopted by the other (no agent kills, no Redis restarts).

The table (and ``--json``): runs, ok, failed and how, refused (Busy), answers computed and
thrown away (``duplicate_ignored``), answered twice, calls paid twice, p50/p99 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, os.environ.get("REDE_SRC", str(HERE.parent / "src")))  # REDE_SRC: a baseline

from rede.bus import BusOptions  # noqa: E402
from rede.bus.redis import RedisBus  # noqa: E402
from rede.models import ModelRequest, ScriptedModel  # noqa: E402
from rede.network import Network  # noqa: E402
from rede.orchestration.plan import Plan, Step  # noqa: E402

try:
    from rede.errors import Busy
except ImportError:  # a checkout before admission (to measure the baseline)

    class Busy(Exception):  # type: ignore[no-redef]
        pass


PLAN = Plan(
    steps=[
        Step(id="research", capability="research", instruction="find the facts"),
        Step(id="write", capability="write", instruction="write it up", depends_on=["research"]),
    ]
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Redis:
    """A redis-server of its own on one loopback port; stop and start it again there."""

    def __init__(self, appendonly: bool) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="rede-faults-"))
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "yes" if self.appendonly else "no", "--dir", str(self.dir)]
        self.proc = subprocess.Popen(["/usr/bin/redis-server", *args], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # a process start, not state inside Rede
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Calls:
    """Every stand-in model call, by (request, instruction): a key seen twice was paid twice."""

    work_s: float
    seen: Counter[tuple[str, str]] = field(default_factory=Counter)

    async def __call__(self, request: ModelRequest) -> str:
        text = request.messages[-1].content if request.messages else ""
        self.seen[(str(request.metadata.get("request", "")), str(text)[:200])] += 1
        await asyncio.sleep(self.work_s)
        return f"answer to {request.metadata.get('request', '')}\nCONFIDENCE: 0.9"

    @property
    def paid_twice(self) -> int:
        return sum(n - 1 for n in self.seen.values() if n > 1)


def config(concurrency: int, limits: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "faults",
        "models": {"m": {"spec": "sim:7b"}},
        "agents": [
            {
                "name": "researcher",
                "capabilities": ["research"],
                "model": "m",
                "concurrency": concurrency,
            },
            {"name": "writer", "capabilities": ["write"], "model": "m", "concurrency": 16},
        ],
        "heartbeat_s": 0.5,
        "agent_ttl_s": 5,
        "limits": {"step_timeout_s": 20, "wall_time_s": 600, "max_steps": 20, **limits},
    }


def network(url: str, calls: Calls, serve: list[str] | None, **kw: Any) -> Network:
    data = config(kw.pop("concurrency", 4), kw.pop("limits", {}))
    net = Network.from_dict(
        data, bus=RedisBus(url, BusOptions(**kw)), models={"m": ScriptedModel(calls, name="m")}
    )
    return net.serve_only(serve)


@dataclass
class Trial:
    name: str
    runs: int = 0
    ok: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    thrown_away: int = 0
    retried: int = 0
    republished: int = 0
    redelivered: int = 0
    answered_twice: int = 0
    paid_twice: int = 0
    latencies: list[float] = field(default_factory=list)
    notes: str = ""
    wall_s: float = 0.0

    def take(self, results: list[Any], latencies: list[float]) -> None:
        for r, lat in zip(results, latencies, strict=True):
            self.runs += 1
            if isinstance(r, Busy):
                self.refused += 1
            elif isinstance(r, BaseException):
                self.failed[f"{type(r).__name__}: {_plain(str(r))}"] += 1
            elif r.status != "ok":
                self.failed[f"status {r.status}: {_plain(str(r.error))}"] += 1
            else:
                self.ok += 1
                self.latencies.append(lat)
            if not isinstance(r, BaseException):
                names = Counter(d["name"] for d in r.decisions)
                self.thrown_away += names["duplicate_ignored"]
                self.retried += names["reroute"] + names["retry"]
                self.republished += names["republished"]
                self.redelivered += names["redelivered"]

    def pct(self, p: float) -> float | None:
        lat = sorted(self.latencies)
        return round(lat[min(len(lat) - 1, int(len(lat) * p / 100))], 2) if lat else None

    def row(self) -> dict[str, Any]:
        return {
            "trial": self.name,
            "runs": self.runs,
            "ok": self.ok,
            "failed": sum(self.failed.values()),
            "how": dict(self.failed.most_common(3)),
            "refused": self.refused,
            "thrown_away": self.thrown_away,
            "retried": self.retried,
            "republished": self.republished,
            "redelivered": self.redelivered,
            "answered_twice": self.answered_twice,
            "paid_twice": self.paid_twice,
            "p50_s": self.pct(50),
            "p99_s": self.pct(99),
            "wall_s": round(self.wall_s, 1),
            "notes": self.notes,
        }


def _plain(text: str) -> str:
    """An error without its run id or port, so that one kind of failure counts as one."""
    return re.sub(r"run-[0-9a-f]+|127\.0\.0\.1:\d+", "…", text)[:110]


async def timed(net: Network, request: str) -> tuple[Any, float]:
    t0 = time.perf_counter()
    try:
        result: Any = await net.ask(request, plan=PLAN)
    except Exception as exc:  # counted, by kind, in the table
        result = exc
    return result, time.perf_counter() - t0


async def ask_many(net: Network, trial: Trial, n: int, prefix: str) -> None:
    pairs = await asyncio.gather(*(timed(net, f"{prefix}{i}") for i in range(n)))
    trial.take([p[0] for p in pairs], [p[1] for p in pairs])


async def load(name: str, runs: int, work_s: float, max_runs: int | None) -> Trial:
    trial = Trial(name, notes=f"one researcher replica, concurrency 4, {work_s:g} s a call")
    redis = Redis(appendonly=False)
    redis.start()
    calls = Calls(work_s)
    try:
        limits = {"max_runs": max_runs} if max_runs else {}
        async with (
            network(redis.url, calls, [], limits=limits) as orch,
            network(redis.url, calls, None) as _agents,
        ):
            await orch.wait_for_agents({"research", "write"})
            t0 = time.perf_counter()
            await ask_many(orch, trial, runs, "q")
            trial.wall_s = time.perf_counter() - t0
    finally:
        redis.cleanup()
    trial.paid_twice = calls.paid_twice
    return trial


async def outage(name: str, runs: int, outage_s: float, appendonly: bool) -> Trial:
    how = "AOF on" if appendonly else "no AOF: its streams lost"
    trial = Trial(name, notes=f"Redis down {outage_s:g} s mid-run, {how}; 3 s a call")
    redis = Redis(appendonly=appendonly)
    redis.start()
    calls = Calls(3.0)
    try:
        async with (
            network(redis.url, calls, [], concurrency=8) as orch,
            network(redis.url, calls, None, concurrency=8) as _agents,
        ):
            await orch.wait_for_agents({"research", "write"})
            t0 = time.perf_counter()
            asking = asyncio.create_task(ask_many(orch, trial, runs, "q"))
            await asyncio.sleep(1.0)  # the runs' first steps are in the agents' hands
            await asyncio.to_thread(redis.stop)
            await asyncio.sleep(outage_s)  # the outage itself: its length is the trial
            await asyncio.to_thread(redis.start)
            await asking
            trial.wall_s = time.perf_counter() - t0
    finally:
        redis.cleanup()
    trial.paid_twice = calls.paid_twice
    return trial


async def kills(name: str, waves: int, per_wave: int, seed: int) -> Trial:
    trial = Trial(
        name,
        notes="2 hosts x 1 replica of each agent; a replica crashed every "
        "0.5 s, started again 0.5 s later; 0.1 s a call",
    )
    redis = Redis(appendonly=True)
    redis.start()
    calls = Calls(0.1)
    rng = random.Random(seed)
    stop = asyncio.Event()
    killed = in_hand = 0
    opts = {"visibility_timeout_s": 2.0, "concurrency": 8}

    async def restart(host: Network, spec: Any) -> None:
        await asyncio.sleep(0.5)  # the supervisor's restart_s
        host.start_runner(spec)

    async def killer(hosts: list[Network]) -> None:
        nonlocal killed, in_hand
        async with asyncio.TaskGroup() as tg:
            while not stop.is_set():
                await asyncio.sleep(0.5)
                host = rng.choice(hosts)
                name = rng.choice(["researcher", "writer"])
                specs = [r.spec for r in host.runners if r.spec.name == name]
                if specs:  # else it is restarting now
                    in_hand += sum(r.in_flight for r in host.runners if r.spec.name == name)
                    await host.kill(name)
                    killed += 1
                    tg.create_task(restart(host, specs[0]))

    try:
        async with (
            network(redis.url, calls, [], **opts) as orch,
            network(redis.url, calls, None, **opts) as a,
            network(redis.url, calls, None, **opts) as b,
        ):
            await orch.wait_for_agents({"research", "write"})
            t0 = time.perf_counter()
            task = asyncio.create_task(killer([a, b]))
            for w in range(waves):
                await ask_many(orch, trial, per_wave, f"w{w}-")
            stop.set()
            await task
            trial.wall_s = time.perf_counter() - t0
    finally:
        redis.cleanup()
    trial.paid_twice = calls.paid_twice
    trial.notes += (
        f"; {killed} crashes with {in_hand} tasks in hand (each redone elsewhere: paid twice "
        "at most that many times)"
    )
    return trial


def orchestrator_kill(runs: int) -> Trial:
    trial = Trial("orchestrator-kill", notes="benchmarks/chaos.py: 2 rede serve, one SIGKILLed")
    out = Path(tempfile.mkdtemp(prefix="rede-faults-chaos-"))
    cmd = [
        sys.executable,
        str(HERE / "chaos.py"),
        "--runs",
        str(runs),
        "--kill-every",
        "0",
        "--redis-restarts",
        "0",
        "--orchestrator-kills",
        "1",
        "--agents",
        "4",
        "--deadline-s",
        "300",
        "--out",
        str(out),
    ]
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, timeout=400)
    s = json.loads((out / "summary.json").read_text())
    trial.runs, trial.ok = s["runs_requested"], s["ok"]
    if s["failed"]:
        trial.failed["failed"] = s["failed"]
    if s["lost"]:
        trial.failed["lost"] = s["lost"]
    trial.answered_twice = s["answered_twice"]
    trial.paid_twice = s["model_calls_paid_twice"]
    trial.latencies = []
    trial.wall_s = s["wall_time_s"]
    trial.notes += (
        f"; {s['runs_resumed']} runs resumed, paid twice explained by the kill: "
        f"{s['model_calls_paid_twice_explained']}; p50/p99 "
        f"{s['latency_p50_s']}/{s['latency_p99_s']} s (submit->done, polled)"
    )
    return trial


ALL = [
    "load-500",
    "load-2000",
    "load-2000-admit",
    "outage-aof",
    "outage-empty",
    "kills",
    "orchestrator-kill",
]


async def one(name: str, args: argparse.Namespace) -> Trial:
    n = lambda k: max(1, round(k * args.scale))  # noqa: E731
    if name == "load-500":
        return await load(name, n(500), args.work_s, None)
    if name == "load-2000":
        return await load(name, n(2000), args.work_s, None)
    if name == "load-2000-admit":
        return await load(name, n(2000), args.work_s, n(1000))
    if name in ("outage-aof", "outage-empty"):
        return await outage(name, n(20), args.outage_s, name == "outage-aof")
    if name == "kills":
        return await kills(name, 3, n(50), args.seed)
    if name == "orchestrator-kill":
        return await asyncio.to_thread(orchestrator_kill, n(60))
    raise SystemExit(f"unknown trial {name!r}; known: {', '.join(ALL)}")


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| trial | runs | ok | failed (how) | refused | thrown away | retried | re-sent "
        "| answered twice | paid twice | p50 / p99 s | wall s |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        how = "; ".join(f"{k} (x{v})" for k, v in r["how"].items()) or "-"
        lat = f"{r['p50_s']} / {r['p99_s']}" if r["p50_s"] is not None else "see notes"
        lines.append(
            f"| {r['trial']} | {r['runs']} | {r['ok']} | {r['failed']}: {how} | "
            f"{r['refused']} | {r['thrown_away']} | {r['retried']} | {r['republished']} | "
            f"{r['answered_twice']} | "
            f"{r['paid_twice']} | {lat} | {r['wall_s']} |"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for name in args.trials.split(","):
        async with asyncio.timeout(args.deadline_s):
            trial = await one(name.strip(), args)
        rows.append(trial.row())
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", default=",".join(ALL))
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every run count")
    p.add_argument("--outage-s", type=float, default=30.0)
    p.add_argument("--work-s", type=float, default=0.2, help="a load trial's call")
    p.add_argument("--deadline-s", type=float, default=600, help="per trial")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    rows = asyncio.run(main_async(args))
    print(f"\nscale {args.scale:g}; stand-in models (no model called)\n")
    print(table(rows))
    for r in rows:
        if r["notes"]:
            print(f"- {r['trial']}: {r['notes']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
