"""Chaos soak: many runs over Redis while agents, Redis and orchestrators are killed; nothing
may be lost and no run may be answered twice.

    python benchmarks/chaos.py                      # 1,000 runs, the default faults
    python benchmarks/chaos.py --runs 50 --agents 4 --kill-every 5 --redis-restarts 1 \\
        --outage-s 2 --orchestrator-kills 1 --out /tmp/chaos

It starts an embedded Valkey (append-only file, fsync every second, a data dir of its own),
``--agents`` ``rede agent --only NAME`` processes (replicas of four tool agents), and two
``rede serve`` processes on one SQLite ledger. A client submits ``--runs`` runs to either
server (round-robin; the other on a connection error) at ``--concurrency``, and polls each
one on any live server until it ends. Meanwhile: a random agent process is SIGKILLed every
``--kill-every`` s (a replacement is started); Redis is SIGKILLed and restarted on the same
port and dir ``--redis-restarts`` times (the first outage lasts ``--outage-s``, the others
2 s); an orchestrator is SIGKILLed and restarted ``--orchestrator-kills`` times (its runs are
adopted by the other, or by itself once back). Faults are spread over the soak by progress.

The agents are Python tools (``benchmarks/chaos_tools.py``) that stand in for models: no
model is called. Each logs every call it starts, so a call paid twice is counted. The report
(a table, and ``summary.json`` in ``--out``): runs ok, failed, lost, answered twice, steps
re-executed, model calls paid twice (and how many of those the faults explain), latency
submit -> done, the faults injected, wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
AGENTS = ("planner", "researcher", "analyst", "writer")
DONE = ("ok", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def network_yaml(url: str, lease_s: float, visibility_s: float) -> str:
    tool = "chaos_tools:{}"
    agents = [
        ("planner", "plan", tool.format("plan")),
        ("researcher", "research", tool.format("work")),
        ("analyst", "analyse", tool.format("work")),
        ("writer", "synthesise", tool.format("synthesise")),
    ]
    lines = ["name: chaos", "agents:"]
    lines += [
        f'  - {{name: {n}, capabilities: [{c}], tool: "{t}", concurrency: 32}}'
        for n, c, t in agents
    ]
    lines += [
        "heartbeat_s: 0.5",
        "agent_ttl_s: 5",
        "limits: {step_timeout_s: 30, step_retries: 3, wall_time_s: 900}",
        f"durable: {{lease_s: {lease_s}}}",
        "bus: " + json.dumps(
            {
                "url": url,
                "visibility_timeout_s": visibility_s,
                "reconnect_timeout_s": 300,
                "keys": "keys",  # per-agent identities, as on any shared bus
            }
        ),
    ]
    return "\n".join(lines) + "\n"


def make_keys(out: Path) -> None:
    """An identity per agent and one for the orchestrators (``rede keys init``)."""
    from rede.protocol.identity import new_key

    shutil.rmtree(out / "keys", ignore_errors=True)  # an earlier soak's
    new_key(out / "keys", "orchestrator", "orchestrator")
    for name in ("planner", "researcher", "analyst", "writer"):
        new_key(out / "keys", name, "agent")


class Valkey:
    """The embedded Valkey with an append-only file in a dir of its own, killed and
    restarted on the same port and dir."""

    def __init__(self, root: Path) -> None:
        from rede.bus.embedded import valkey_binary

        self.binary = str(valkey_binary())
        self.dir = root / "valkey"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        from rede.bus.embedded import wait_until_serving

        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                "yes", "--appendfsync", "everysec", "--dir", str(self.dir)]  # fmt: skip
        for _ in range(50):  # the port may linger a moment after a kill
            with open(self.dir / "server.log", "ab") as log:
                self.proc = subprocess.Popen(
                    [self.binary, *args], stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            if wait_until_serving(self.proc, self.port, 20.0):
                return
            self.kill()
            time.sleep(0.2)
        raise RuntimeError(f"valkey did not start on port {self.port}; see {self.dir}/server.log")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@dataclass
class Proc:
    role: str  # an agent's name, or "server"
    popen: subprocess.Popen[bytes]
    port: int = 0


@dataclass
class Chaos:
    """The processes of the soak and the faults injected into them."""

    out: Path
    network: Path
    valkey: Valkey
    ledger: Path
    env: dict[str, str]
    agents: list[Proc] = field(default_factory=list)
    servers: list[Proc] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    killed_pids: dict[int, float] = field(default_factory=dict)
    n_started = 0

    def _spawn(self, args: list[str]) -> subprocess.Popen[bytes]:
        self.n_started += 1
        log = open(self.out / "logs" / f"{args[0]}-{self.n_started}.log", "wb")
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "rede", *args], env=self.env, stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        finally:
            log.close()

    def start_agent(self, name: str) -> Proc:
        args = ["agent", str(self.network), "--bus", self.valkey.url, "--only", name]
        proc = Proc(name, self._spawn(args))
        self.agents.append(proc)
        return proc

    def start_server(self, port: int) -> Proc:
        args = ["serve", str(self.network), "--bus", self.valkey.url, "--ledger",
                str(self.ledger), "--port", str(port), "--no-access-log",
                "--log-level", "warning", "--shutdown-timeout", "5"]  # fmt: skip
        proc = Proc("server", self._spawn(args), port)
        self.servers.append(proc)
        return proc

    def kill(self, proc: Proc) -> None:
        self.killed_pids[proc.popen.pid] = time.time()
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait()

    def live_servers(self) -> list[Proc]:
        return [s for s in self.servers if s.popen.poll() is None]

    def respawn_dead_agents(self) -> None:
        """Keep capacity: an agent process that exited (killed, or it could not reach Redis
        at start) is replaced by a new one of the same agent."""
        for proc in list(self.agents):
            if proc.popen.poll() is not None:
                self.agents.remove(proc)
                self.start_agent(proc.role)

    def stop_all(self) -> None:
        for proc in [*self.agents, *self.servers]:
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGKILL)
                proc.popen.wait()
        self.valkey.kill()


async def wait_ready(chaos: Chaos, timeout_s: float = 120) -> None:
    """Until both servers answer and see a card of every agent."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=5) as http:
        for server in chaos.servers:
            while True:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server on port {server.port} is not ready; see logs")
                try:
                    r = await http.get(f"http://127.0.0.1:{server.port}/v1/networks/chaos")
                    if r.status_code == 200 and all(a["healthy"] for a in r.json()["agents"]):
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.3)


# --------------------------------------------------------------------------- the client


@dataclass
class RunOutcome:
    index: int
    run_id: str | None = None
    status: str = "lost"
    submitted_at: float = 0.0
    done_at: float | None = None
    server: int = 0


class Client:
    def __init__(self, chaos: Chaos, ports: list[int], deadline: float) -> None:
        self.chaos = chaos
        self.ports = ports
        self.deadline = deadline
        self.turn = 0
        self.done = 0
        self.progress = asyncio.Event()

    def _next_ports(self) -> list[int]:
        self.turn += 1
        k = self.turn % len(self.ports)
        return self.ports[k:] + self.ports[:k]

    async def one(self, http: httpx.AsyncClient, outcome: RunOutcome) -> None:
        outcome.submitted_at = time.time()
        while outcome.run_id is None:  # submit to either server until one accepts
            if time.monotonic() > self.deadline:
                return
            for port in self._next_ports():
                try:
                    r = await http.post(
                        f"http://127.0.0.1:{port}/v1/runs", json={"input": f"chaos {outcome.index}"}
                    )
                except httpx.HTTPError:
                    continue
                if r.status_code == 202:
                    outcome.run_id, outcome.server = r.json()["id"], port
                    break
            else:
                await asyncio.sleep(0.5)
        while time.monotonic() < self.deadline:  # poll any live server until it ends
            for port in self._next_ports():
                try:
                    r = await http.get(f"http://127.0.0.1:{port}/v1/runs/{outcome.run_id}")
                except httpx.HTTPError:
                    continue
                if r.status_code == 200 and r.json()["status"] in DONE:
                    outcome.status, outcome.done_at = r.json()["status"], time.time()
                    self.done += 1
                    self.progress.set()
                    return
                break
            await asyncio.sleep(0.25)

    async def run_all(self, n: int, concurrency: int) -> list[RunOutcome]:
        outcomes = [RunOutcome(i) for i in range(n)]
        gate = asyncio.Semaphore(concurrency)

        async def bounded(o: RunOutcome) -> None:
            async with gate:
                await self.one(http, o)

        limits = httpx.Limits(max_connections=concurrency * 2)
        async with httpx.AsyncClient(timeout=10, limits=limits) as http:
            async with asyncio.TaskGroup() as tg:
                for o in outcomes:
                    tg.create_task(bounded(o))
        return outcomes


# --------------------------------------------------------------------------- the faults


async def kill_agents(
    chaos: Chaos, every_s: float, rng: random.Random, stop: asyncio.Event
) -> None:
    """SIGKILL a random agent process every ``every_s`` and keep capacity with a new one."""
    next_kill = time.monotonic() + every_s
    while not stop.is_set():
        chaos.respawn_dead_agents()
        if every_s > 0 and time.monotonic() >= next_kill:
            live = [p for p in chaos.agents if p.popen.poll() is None]
            if live:
                victim = rng.choice(live)
                chaos.kill(victim)
                chaos.faults.append({"fault": "agent_kill", "at": time.time(), "agent": victim.role,
                                     "pid": victim.popen.pid})  # fmt: skip
            next_kill += every_s
        try:
            await asyncio.wait_for(stop.wait(), 0.25)
        except TimeoutError:
            pass


async def big_faults(
    chaos: Chaos, client: Client, runs: int, redis: list[float], orch: int, rng: random.Random,
    stop: asyncio.Event,
) -> None:  # fmt: skip
    """Redis restarts and orchestrator kills, one at a time, spread over the soak by the
    number of runs finished."""
    plan = [("redis", s) for s in redis] + [("orchestrator", 0.0)] * orch
    rng.shuffle(plan)
    for i, (kind, outage) in enumerate(plan):
        at = runs * (i + 1) / (len(plan) + 1)
        while client.done < at and not stop.is_set():
            client.progress.clear()
            try:
                await asyncio.wait_for(client.progress.wait(), 1)
            except TimeoutError:
                pass
        if stop.is_set():
            return
        t0 = time.time()
        if kind == "redis":
            chaos.valkey.kill()
            await asyncio.sleep(outage)
            await asyncio.to_thread(chaos.valkey.start)
            chaos.faults.append({"fault": "redis_restart", "at": t0, "outage_s": time.time() - t0})
        else:
            victim = rng.choice(chaos.live_servers())
            chaos.kill(victim)
            chaos.servers.remove(victim)
            await asyncio.sleep(2)
            chaos.start_server(victim.port)
            chaos.faults.append({"fault": "orchestrator_kill", "at": t0, "port": victim.port,
                                 "pid": victim.popen.pid, "down_s": time.time() - t0})  # fmt: skip


# --------------------------------------------------------------------------- the report


def read_calls(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Every tool call by idempotency key, in time order."""
    calls: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in out.glob("calls-*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a SIGKILL
            calls[rec["key"]].append(rec)
    for recs in calls.values():
        recs.sort(key=lambda r: r["t"])
    return calls


def explained(prev: dict[str, Any], again: dict[str, Any], faults: list[dict[str, Any]]) -> bool:
    """Whether a call made again is explained by a fault between the two calls: the first
    caller SIGKILLed (before its tool ended, or after but before its answer was kept and
    acknowledged), Redis restarted (a kept answer or an ack may be lost), or an orchestrator
    killed (its in-flight step is sent again)."""
    for f in faults:
        if not prev["t"] - 1 <= f["at"] <= again["t"]:
            continue
        if f["fault"] == "agent_kill" and f["pid"] == prev["pid"]:
            return True
        if f["fault"] in ("redis_restart", "orchestrator_kill"):
            return True
    return False


def analyse(chaos: Chaos, outcomes: list[RunOutcome], wall_s: float) -> dict[str, Any]:
    calls = read_calls(chaos.out)
    starts = {k: [r for r in recs if r["phase"] == "start"] for k, recs in calls.items()}
    paid_twice = sum(len(v) - 1 for v in starts.values() if len(v) > 1)
    paid_explained = sum(
        explained(v[i - 1], v[i], chaos.faults)
        for v in starts.values()
        for i in range(1, len(v))
    )
    by_step: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for key, recs in starts.items():
        run, step, *_ = key.split("/")
        by_step[(run, step)].extend(recs)
    re_exec = {k: sorted(v, key=lambda r: r["t"]) for k, v in by_step.items() if len(v) > 1}
    re_explained = sum(
        any(explained(v[i - 1], v[i], chaos.faults) or _any_fault(v[0], v[i], chaos.faults)
            for i in range(1, len(v)))
        for v in re_exec.values()
    )  # fmt: skip

    db = sqlite3.connect(chaos.ledger)
    served = Counter(
        run_id
        for run_id, data in db.execute("SELECT run_id, data FROM ledger WHERE name = 'served'")
        if json.loads(data).get("status") == "ok"
    )
    answered_twice = sorted(r for r, n in served.items() if n > 1)
    resumed = db.execute("SELECT COUNT(DISTINCT run_id) FROM ledger WHERE name = 'run_resumed'")
    n_resumed = resumed.fetchone()[0]
    db.close()

    status = Counter(o.status for o in outcomes)
    lat = sorted(o.done_at - o.submitted_at for o in outcomes if o.done_at is not None)
    kinds = Counter(f["fault"] for f in chaos.faults)
    return {
        "label": "tool agents stand in for models; no model is called",
        "runs_submitted": sum(o.run_id is not None for o in outcomes),
        "runs_requested": len(outcomes),
        "ok": status["ok"],
        "failed": status["failed"] + status["cancelled"],
        "lost": status["lost"],
        "lost_ids": [o.run_id for o in outcomes if o.status == "lost"][:20],
        "answered_twice": len(answered_twice),
        "answered_twice_ids": answered_twice[:20],
        "runs_resumed": n_resumed,
        "steps_re_executed": len(re_exec),
        "steps_re_executed_explained": re_explained,
        "model_calls": sum(len(v) for v in starts.values()),
        "model_calls_paid_twice": paid_twice,
        "model_calls_paid_twice_explained": paid_explained,
        "latency_p50_s": _pct(lat, 50),
        "latency_p99_s": _pct(lat, 99),
        "faults": {
            "agent_kills": kinds["agent_kill"],
            "redis_restarts": kinds["redis_restart"],
            "redis_outages_s": [
                round(f["outage_s"], 1) for f in chaos.faults if f["fault"] == "redis_restart"
            ],
            "orchestrator_kills": kinds["orchestrator_kill"],
        },
        "wall_time_s": round(wall_s, 1),
    }


def _any_fault(first: dict[str, Any], again: dict[str, Any], faults: list[dict[str, Any]]) -> bool:
    """A step run again under a new attempt: some fault happened between the two calls."""
    return any(first["t"] - 1 <= f["at"] <= again["t"] for f in faults)


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(len(values) * p / 100))], 3)


def table(s: dict[str, Any]) -> str:
    f = s["faults"]
    rows = [
        ("runs submitted", f"{s['runs_submitted']} of {s['runs_requested']}"),
        ("completed ok", s["ok"]),
        ("failed", s["failed"]),
        ("lost (not finished by the deadline)", s["lost"]),
        ("answered twice", s["answered_twice"]),
        ("runs resumed by an orchestrator", s["runs_resumed"]),
        ("steps re-executed (explained by faults)",
         f"{s['steps_re_executed']} ({s['steps_re_executed_explained']})"),
        ("model calls (tool calls)", s["model_calls"]),
        ("model calls paid twice (explained by faults)",
         f"{s['model_calls_paid_twice']} ({s['model_calls_paid_twice_explained']})"),
        ("latency submit -> done p50 / p99", f"{s['latency_p50_s']} s / {s['latency_p99_s']} s"),
        ("agent processes SIGKILLed", f["agent_kills"]),
        ("Redis restarts (outage s)", f"{f['redis_restarts']} ({f['redis_outages_s']})"),
        ("orchestrators SIGKILLed", f["orchestrator_kills"]),
        ("wall time", f"{s['wall_time_s']} s"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    head = "Chaos soak (" + s["label"] + ")"
    return "\n".join([head, *(f"  {k:<{width}}  {v}" for k, v in rows)])


# --------------------------------------------------------------------------- main


def prepare(out_arg: str | None) -> Path:
    """The out dir, emptied of an earlier soak's call logs and ledger."""
    out = Path(out_arg or tempfile.mkdtemp(prefix="rede-chaos-")).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("calls-*.jsonl"), *out.glob("ledger.db*")]:
        old.unlink()
    return out


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    out = prepare(args.out)
    valkey = Valkey(out)
    valkey.start()
    network = out / "network.yaml"
    network.write_text(network_yaml(valkey.url, args.lease_s, args.visibility_s))
    make_keys(out)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), str(SRC), os.environ.get("PYTHONPATH", "")]),
        "REDE_CHAOS_OUT": str(out),
        "REDE_CHAOS_WORK_S": args.work_s,
    }
    chaos = Chaos(out, network, valkey, out / "ledger.db", env)
    try:
        for i in range(args.agents):
            chaos.start_agent(AGENTS[i % len(AGENTS)])
        ports = [free_port() for _ in range(args.orchestrators)]
        for port in ports:
            chaos.start_server(port)
        await wait_ready(chaos)
        t0 = time.monotonic()
        client = Client(chaos, ports, t0 + args.deadline_s)
        stop = asyncio.Event()
        outages = [args.outage_s] + [2.0] * max(0, args.redis_restarts - 1)
        outages = outages[: args.redis_restarts]
        async with asyncio.TaskGroup() as tg:
            killer = tg.create_task(kill_agents(chaos, args.kill_every, rng, stop))
            faults = tg.create_task(
                big_faults(chaos, client, args.runs, outages, args.orchestrator_kills, rng, stop)
            )
            outcomes = await client.run_all(args.runs, args.concurrency)
            stop.set()
            await killer
            await faults
        wall = time.monotonic() - t0
        await asyncio.sleep(0.5)  # the last tool lines reach their files
    finally:
        chaos.stop_all()
    summary = analyse(chaos, outcomes, wall)
    summary["command"] = " ".join(sys.argv)
    summary["out"] = str(out)
    summary["settings"] = {k: v for k, v in vars(args).items() if k != "out"}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "faults.json").write_text(json.dumps(chaos.faults, indent=2) + "\n")
    return summary


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--agents", type=int, default=8, help="agent processes (replicas of 4 agents)")
    p.add_argument("--orchestrators", type=int, default=2, help="rede serve processes")
    p.add_argument("--kill-every", type=float, default=2.0, help="s between agent kills; 0: none")
    p.add_argument("--redis-restarts", type=int, default=2)
    p.add_argument("--outage-s", type=float, default=30.0, help="the first Redis outage")
    p.add_argument("--orchestrator-kills", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=32, help="runs in flight from the client")
    p.add_argument("--deadline-s", type=float, default=1800, help="for the whole soak")
    p.add_argument("--lease-s", type=float, default=3.0, help="durable.lease_s")
    p.add_argument("--visibility-s", type=float, default=4.0, help="bus visibility_timeout_s")
    p.add_argument("--work-s", default="0.05,0.2", help="a tool call's sleep: low,high")
    p.add_argument("--out", default=None, help="a directory (default: a new temporary one)")
    p.add_argument("--seed", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    sys.path[:0] = [str(HERE), str(SRC)]
    summary = asyncio.run(soak(args))
    print(table(summary))
    print(f"\nsummary: {Path(summary['out']) / 'summary.json'}")
    return 0 if summary["lost"] == 0 and summary["answered_twice"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
