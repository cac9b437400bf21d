"""A network across processes on Redis: agents served by ``rede agent`` / ``rede up``
processes, runs submitted from another process, a replica killed while it holds a task,
Redis restarted mid-run, process replicas started by the spawner, and the registry's cards
kept in Redis. Every test starts its own ``redis-server`` on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from rede.agents.specialists import SpecialistSpec
from rede.agents.tools import ToolSpecialist, echo_tool
from rede.bus import Backlog, BusOptions
from rede.bus.redis import RedisBus
from rede.config import NetworkConfig
from rede.errors import StepFailed
from rede.models import ScriptedModel
from rede.network import Network
from rede.orchestration.ledger import SQLiteLedger
from rede.orchestration.plan import Plan, Step
from rede.protocol.messages import AgentCard, Envelope, ErrorPayload, Task
from rede.protocol.topics import Topic
from rede.runtime.agent import AgentRunner
from rede.runtime.registry import Registry
from rede.scaling.load import BusLoad
from rede.scaling.spawner import Spawner, templates
from rede.scaling.supervisor import ProcessBackend

KEY_ENV = "REDE_TEST_SIGNING_KEY"
STARTED = "test:started"
"""A stream (outside Rede's keys) where the slow test tool says which process took a task."""
GATE = "test:gate"
"""With ``REDE_TEST_GATED`` set, the slow tool holds every task until this stream has an
entry: the test decides when work may finish."""

SLOW_TOOL = '''
"""A tool for the distributed tests: announce the task, then work for a while."""

import asyncio
import os

import redis.asyncio as aioredis


async def slow(task):
    async with aioredis.Redis.from_url(os.environ["REDE_TEST_REDIS"]) as r:
        await r.xadd("test:started", {"pid": os.getpid(), "instruction": task.instruction})
        if os.environ.get("REDE_TEST_GATED"):
            await r.xread({"test:gate": "0-0"}, block=30_000)
        else:
            await asyncio.sleep(float(os.environ["REDE_TEST_SLOW_S"]))
    return f"done: {task.instruction}"
'''


GATED = {"REDE_TEST_GATED": "1"}


def write_network(tmp_path: Path, url: str, agents: str, **bus: object) -> Path:
    """A network YAML (``agents``: YAML list items, one a line) that can use the slow tool
    module written beside it. Every envelope is signed with the key in ``KEY_ENV``."""
    (tmp_path / "slowtools.py").write_text(SLOW_TOOL)
    bus_conf = {"url": url, "signing_key_env": KEY_ENV, **bus}
    lines = [
        "name: distributed",
        "agents:",
        *(f"  {line.strip()}" for line in agents.strip().splitlines()),
        "heartbeat_s: 0.2",
        "agent_ttl_s: 4",
        "limits: {step_timeout_s: 30, step_retries: 0, wall_time_s: 60}",
        f"bus: {json.dumps(bus_conf)}",
    ]
    path = tmp_path / "network.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Processes:
    """Child processes of one test, with their output in files; all killed at the end."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.dir = tmp_path
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
            "REDE_TEST_REDIS": url,
            "REDE_TEST_SLOW_S": "1.0",
            KEY_ENV: "shared-secret",
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        with open(self.dir / f"proc{n}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "rede", *args],
                env={**self.env, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.dir / f"proc{self.procs.index(proc)}.log").read_text(errors="replace")

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def signing_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, "shared-secret")
    return "shared-secret"


@pytest.fixture
def server(redis_server_factory):  # type: ignore[no-untyped-def]
    return redis_server_factory(appendonly=True)


@pytest.fixture
def procs(tmp_path: Path, server) -> Iterator[Processes]:  # type: ignore[no-untyped-def]
    p = Processes(tmp_path, server.url)
    yield p
    p.cleanup()


async def next_started(admin: aioredis.Redis, after: bytes = b"0-0") -> tuple[bytes, int]:
    """Wait (blocking on Redis, no polling) for the slow tool's next announcement: its
    stream id and the pid of the process that took the task."""
    reply = await admin.xread({STARTED: after}, count=1, block=20_000)
    assert reply, "no agent started a task within 20 s"
    entry_id, fields = reply[0][1][0]
    return entry_id, int(fields[b"pid"])


def child_pids(pid: int) -> set[int]:
    """Live children of a process (Linux /proc)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return children


def command_lines(pids: set[int]) -> dict[int, bytes]:
    """Each process's command line (Linux /proc)."""
    return {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in pids}


def results_by_step(net: Network, run_id: str) -> Counter[str]:
    return Counter(
        env.step_id or ""
        for env in net.ledger.envelopes(run_id)
        if env.kind == "result" and env.sender != net.orchestrator.id  # type: ignore[union-attr]
    )


# --------------------------------------------------------------------------- the tests


async def test_a_replica_killed_while_holding_a_task_loses_nothing(
    tmp_path: Path, server, procs: Processes, signing_key: str
) -> None:
    """Two replica processes of one specialist; the one that takes a task is SIGKILLed
    mid-task. The other claims it after the visibility timeout: the run completes with one
    result per step, and the ledger shows the redelivery."""
    network = write_network(
        tmp_path,
        server.url,
        '- {name: worker, capabilities: [research], tool: "slowtools:slow", concurrency: 1}',
        visibility_timeout_s=1.0,
    )
    replicas = [
        procs.start("agent", str(network), "--bus", server.url, "--only", "worker", **GATED)
        for _ in range(2)
    ]
    plan = Plan(
        steps=[Step(id=f"s{i}", capability="research", instruction=f"topic {i}") for i in range(3)]
    )
    net = Network.from_yaml(network, bus=server.url).serve_only(set())
    async with net, aioredis.Redis.from_url(server.url) as admin:
        await net.registry.wait_for(lambda reg: len(reg.cards("research")) == 2, timeout=20)
        asking = asyncio.create_task(net.ask("research three topics", plan=plan))

        _, pid = await next_started(admin)
        victim = next(p for p in replicas if p.pid == pid)
        pending = await admin.xpending(str(Topic.task("research", "worker")), "worker")
        assert pending["pending"] >= 1  # the victim holds its task, unacknowledged
        victim.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(victim.wait, 10) == -signal.SIGKILL
        await admin.xadd(GATE, {"open": 1})  # the survivor's tasks may finish now

        async with asyncio.timeout(40):
            result = await asyncio.shield(asking)

    assert result.status == "ok", result.error
    assert {s.id: s.status for s in result.steps} == {"s0": "ok", "s1": "ok", "s2": "ok"}
    for step in result.steps:
        assert len(step.calls) == 1, f"{step.id} was answered {len(step.calls)} times"
        assert step.output == f"done: {plan.step(step.id).instruction}"
    # exactly one result per step reached the orchestrator: none lost, none doubled
    assert results_by_step(net, result.run_id) == {"s0": 1, "s1": 1, "s2": 1}
    # the ledger shows the redelivery: the survivor announced it took over the task
    redelivered = net.ledger.decisions(result.run_id, "redelivered")
    assert redelivered, "the ledger does not show the redelivery"
    assert all(d.data["delivery_count"] >= 2 for d in redelivered)
    survivor = next(p for p in replicas if p is not victim)
    assert survivor.poll() is None, procs.log(survivor)
    events = [e for e in net.ledger.entries(result.run_id) if e.name == "received:event"]
    assert any(e.data["payload"]["name"] == "redelivered" for e in events)
    # no orchestrator-level retry or re-route was needed: the bus redelivered the task
    assert not net.ledger.decisions(result.run_id, "reroute")


async def test_a_run_completes_across_a_redis_restart(
    tmp_path: Path, server, procs: Processes, signing_key: str
) -> None:
    """Redis (append-only file on) is stopped and started again on the same port while an
    agent process works on a step; agent and orchestrator reconnect and the run completes."""
    network = write_network(
        tmp_path,
        server.url,
        '- {name: worker, capabilities: [research], tool: "slowtools:slow"}',
        visibility_timeout_s=5.0,
    )
    procs.start("agent", str(network), "--bus", server.url)
    plan = Plan(
        steps=[
            Step(id="first", capability="research", instruction="before the restart"),
            Step(
                id="second",
                capability="research",
                instruction="after the restart",
                depends_on=["first"],
            ),
        ]
    )
    net = Network.from_yaml(network, bus=server.url).serve_only(set())
    async with net:
        await net.registry.wait_for(lambda reg: bool(reg.cards("research")), timeout=20)
        asking = asyncio.create_task(net.ask("two steps", plan=plan))
        async with aioredis.Redis.from_url(server.url) as admin:
            await next_started(admin)  # the agent is working on the first step
        await asyncio.to_thread(server.restart)  # SIGTERM flushes the append-only file
        async with asyncio.timeout(40):
            result = await asyncio.shield(asking)

    assert result.status == "ok", result.error
    assert [(s.id, s.status, len(s.calls)) for s in result.steps] == [
        ("first", "ok", 1),
        ("second", "ok", 1),
    ]
    assert result.answer == "done: after the restart"
    assert results_by_step(net, result.run_id) == {"first": 1, "second": 1}


async def test_a_run_in_flight_outlives_a_redis_outage_longer_than_the_agent_ttl(server) -> None:
    """Redis (append-only file on) is down for three agent TTLs while an agent works on a
    step. No heartbeat could arrive, so the registry keeps the agent's card through the
    outage; once Redis is back the reply arrives, the next step is routed to the same agent,
    and the run completes without a re-route (no retries allowed here)."""
    started = asyncio.Event()
    release = asyncio.Event()

    async def gated(task: Task) -> str:
        started.set()
        await release.wait()
        return f"done: {task.instruction}"

    ttl_s = 1.0
    net = Network.from_dict(
        {
            "agents": [{"name": "worker", "capabilities": ["research"], "tool": "gated"}],
            "heartbeat_s": 0.2,
            "agent_ttl_s": ttl_s,
            "limits": {"step_timeout_s": 30, "step_retries": 0},
            "bus": {"url": server.url, "insecure": True},
        },
        tools=[gated],
    )
    plan = Plan(
        steps=[
            Step(id="during", capability="research", instruction="across the outage"),
            Step(id="after", capability="research", instruction="after", depends_on=["during"]),
        ]
    )
    async with net:
        asking = asyncio.create_task(net.ask("two steps", plan=plan))
        await started.wait()  # the agent holds the first step
        await asyncio.to_thread(server.stop)  # SIGTERM flushes the append-only file
        await asyncio.sleep(3 * ttl_s)  # the outage itself: three TTLs without Redis
        assert [c.name for c in net.registry.cards("research")] == ["worker"]
        await asyncio.to_thread(server.start)  # the same port, the same data
        release.set()
        async with asyncio.timeout(30):
            result = await asyncio.shield(asking)

    assert result.status == "ok", result.error
    assert [(s.id, s.status, s.agent) for s in result.steps] == [
        ("during", "ok", "worker"),
        ("after", "ok", "worker"),
    ]
    assert result.answer == "done: after"
    assert not [d for d in result.decisions if d["name"] in ("reroute", "wait_for_agent")]


async def test_rede_up_and_rede_run_through_processes(
    tmp_path: Path, server, procs: Processes, signing_key: str
) -> None:
    """``rede up`` starts each agent as its own process; ``rede run --bus`` in another
    process answers with them; stopping ``rede up`` stops its agents, which say goodbye."""
    network = write_network(
        tmp_path,
        server.url,
        """\
        - {name: calculator, capabilities: [arithmetic], tool: arithmetic}
        - {name: echoer, capabilities: [write], tool: echo}
        """,
    )
    up = procs.start("up", str(network), "--bus", server.url)
    registry = Registry(ttl_s=4)
    async with RedisBus(server.url, BusOptions(signing_key=signing_key)) as bus:
        following = asyncio.create_task(registry.follow(bus))
        try:
            await registry.wait_for(
                lambda reg: {"arithmetic", "write"} <= reg.capabilities(), timeout=30
            )
            agents = child_pids(up.pid)
            assert len(agents) == 2, procs.log(up)

            run = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "rede",
                "run",
                str(network),
                "2 + 3 * 4",
                "--bus",
                server.url,
                "--json",
                "--ledger",
                "",
                env=procs.env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            async with asyncio.timeout(60):
                out, errs = await run.communicate()
            assert run.returncode == 0, errs.decode()
            record = json.loads(out)
            assert record["status"] == "ok"
            assert record["answer"] == "2 + 3 * 4 = 14"
            senders = {e["sender"] for e in record["envelopes"] if e["payload"]["kind"] == "result"}
            assert len(senders) == 1 and senders.pop().startswith("calculator-")

            up.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(up.wait, 30) == 0, procs.log(up)
            for pid in agents:  # reaped by `rede up`: no such process any more
                with pytest.raises(ProcessLookupError):
                    os.kill(pid, 0)
            # they stopped cleanly: goodbyes reached the registry, stored cards are gone
            await registry.wait_for(lambda reg: not reg.cards(), timeout=10)
            assert await bus.snapshot_cards() == []
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)


async def test_process_backend_starts_a_replica_that_registers_and_stops_it(
    tmp_path: Path, server, procs: Processes, signing_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = write_network(
        tmp_path, server.url, "- {name: echoer, capabilities: [write], tool: echo}"
    )
    monkeypatch.setenv("PYTHONPATH", procs.env["PYTHONPATH"])
    registry = Registry(ttl_s=4)
    async with RedisBus(server.url, BusOptions(signing_key=signing_key)) as bus:
        following = asyncio.create_task(registry.follow(bus))
        backend = ProcessBackend(network, server.url, registry)
        try:
            replica = await backend.start("echoer")
            assert [c.id for c in registry.cards("write")] == [replica]
            assert backend.replicas("echoer") == 1
            ((started,),) = backend._procs.values()
            proc = started.proc

            assert await backend.stop("echoer") == replica
            assert proc.returncode == 0  # SIGTERM: a clean stop
            await registry.wait_for(lambda reg: not reg.cards(), timeout=10)
            assert backend.replicas("echoer") == 0
            assert await backend.stop("echoer") is None
        finally:
            await backend.aclose()
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)


async def test_a_slow_live_replica_keeps_its_task(redis_server) -> None:
    """A task that runs for five visibility timeouts is not taken over by the idle replica:
    its holder touches the delivery while it works."""
    model = ScriptedModel(lambda request: "slow but sure", delay_s=1.0)
    options = BusOptions(visibility_timeout_s=0.2)
    bus = RedisBus(redis_server.url, options, namespace=redis_server.namespace())
    net = Network.from_dict(
        {
            "models": {"small": {"spec": "sim:7b"}},
            "agents": [{"name": "writer", "capabilities": ["write"], "model": "small"}],
            "heartbeat_s": 0.2,
        },
        models={"small": model},
        bus=bus,
    )
    async with bus, net:
        assert len(net.runners) == 1
        net.start_runner(net.runners[0].spec)  # a second, idle replica that could claim it
        result = await net.ask("write something")
    assert result.status == "ok", result.error
    assert len(model.requests) == 1
    assert bus.stats.redelivered == 0
    assert not net.ledger.decisions(result.run_id, "redelivered")
    assert results_by_step(net, result.run_id) == {"answer": 1}


async def test_a_task_whose_holders_keep_dying_fails_its_step_with_the_reason(
    redis_server,
) -> None:
    """Every replica that takes the task dies (here: the test takes it and never acknowledges).
    After ``max_deliveries`` the bus dead-letters it and answers the run, whose step fails
    with that reason at once rather than after ``step_timeout_s``."""
    options = BusOptions(visibility_timeout_s=0.2, max_deliveries=2)
    bus = RedisBus(redis_server.url, options, namespace=redis_server.namespace())
    net = Network.from_dict(
        {
            "agents": [{"name": "writer", "capabilities": ["write"], "tool": "echo"}],
            "limits": {"step_timeout_s": 60, "step_retries": 0},
        },
        bus=bus,
    ).serve_only(set())
    async with bus, net:
        card = AgentCard(id="writer-1", name="writer", capabilities=["write"], kind="tool")
        await bus.store_card(card, 30)  # a live agent, as far as the registry can tell
        await net.registry.wait_for(lambda reg: bool(reg.cards("write")), timeout=5)
        dead = await bus.subscribe(Topic.dead())
        crashing = await bus.subscribe(Topic.task("write", "writer"), group="writer")
        asking = asyncio.create_task(net.ask("hello"))
        first = await crashing.receive(timeout=10)  # taken, never acknowledged: a crash
        second = await crashing.receive(timeout=10)  # taken over after the timeout, crashes
        assert (first.delivery_count, second.delivery_count) == (1, 2)
        with pytest.raises(TimeoutError):  # the next claim dead-letters it instead
            await crashing.receive(timeout=1)
        with pytest.raises(StepFailed, match="not acknowledged after 2 deliveries") as info:
            async with asyncio.timeout(10):
                await asking
        letter = (await dead.receive(timeout=5)).envelope
    assert isinstance(letter.payload, ErrorPayload)
    assert letter.payload.code == "max_deliveries"
    run = info.value.run
    assert run is not None and run.status == "failed"
    assert [d["name"] for d in run.decisions if d["name"] == "dead_lettered"] == ["dead_lettered"]
    assert run.step("answer").status == "failed"


# --------------------------------------------------------------------------- registry in Redis


def echo_spec(name: str = "echoer") -> SpecialistSpec:
    return SpecialistSpec(
        name=name, capabilities=["write"], specialist=ToolSpecialist("echo", echo_tool)
    )


async def test_a_registry_that_starts_later_sees_live_agents_at_once(redis_server) -> None:
    """Cards are stored in Redis with a TTL: a registry started after the agents knows them
    before their next heartbeat (an hour away here), and a clean stop deletes them."""
    ns = redis_server.namespace()
    async with RedisBus(redis_server.url, namespace=ns) as agents_bus:
        runner = AgentRunner(agents_bus, echo_spec(), heartbeat_s=3600, card_ttl_s=30)
        serving = asyncio.create_task(runner.run())
        await runner.ready.wait()

        async with RedisBus(redis_server.url, namespace=ns) as late_bus:
            late = Registry(ttl_s=30)
            following = asyncio.create_task(late.follow(late_bus))
            try:
                await late.wait_for(lambda reg: bool(reg.cards()), timeout=5)
                (card,) = late.cards("write")
                assert card.id == runner.id
                (stored,) = await late_bus.snapshot_cards()
                assert 0 < stored.expires_in_s <= 30

                serving.cancel()  # a clean stop: the key goes, the goodbye arrives
                await asyncio.gather(serving, return_exceptions=True)
                await late.wait_for(lambda reg: not reg.cards(), timeout=5)
                assert await late_bus.snapshot_cards() == []
            finally:
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)


async def test_a_crashed_agents_card_expires_in_redis(redis_server) -> None:
    ns = redis_server.namespace()
    async with (
        RedisBus(redis_server.url, namespace=ns) as bus,
        aioredis.Redis.from_url(redis_server.url) as admin,
    ):
        runner = AgentRunner(bus, echo_spec(), heartbeat_s=3600, card_ttl_s=5)
        serving = asyncio.create_task(runner.run())
        await runner.ready.wait()
        runner.kill()  # no goodbye: the card stays until its TTL runs out
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        ttl_ms = await admin.pttl(bus.card_key(runner.id))
        assert 0 < ttl_ms <= 5000
        # a registry reading it keeps it only for the time it has left in Redis
        now = [1000.0]
        registry = Registry(ttl_s=5, clock=lambda: now[0])
        (stored,) = await bus.snapshot_cards()
        registry.observe(stored.card, expires_in_s=stored.expires_in_s)
        assert [c.id for c in registry.cards()] == [runner.id]
        now[0] += stored.expires_in_s + 0.01
        assert registry.cards() == []


async def test_forged_stored_card_is_rejected_and_dead_lettered(redis_server) -> None:
    ns = redis_server.namespace()
    opts = BusOptions(signing_key="s3cret")
    async with (
        RedisBus(redis_server.url, opts, namespace=ns) as bus,
        RedisBus(redis_server.url, BusOptions(signing_key="wrong"), namespace=ns) as forger,
    ):
        dead = await bus.subscribe(Topic.dead())
        real = AgentRunner(bus, echo_spec("real"), card_ttl_s=30).card()
        await bus.store_card(real, 30)
        await forger.store_card(AgentRunner(forger, echo_spec("fake")).card(), 30)
        stored = await bus.snapshot_cards()
        assert [s.card.name for s in stored] == ["real"]
        assert bus.stats.rejected["signature"] == 1
        letter = (await dead.receive(timeout=5)).envelope
        assert letter.payload.code == "signature"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- spawning processes

SPAWN = (
    "spawn: {templates: {worker: {min_replicas: 1, max_replicas: 3}}, "
    "backlog_per_replica: 1, idle_s: %s, interval_s: 0.1}"
)


def spawn_network(tmp_path: Path, url: str, agents: str, idle_s: float) -> Path:
    network = write_network(tmp_path, url, agents)
    network.write_text(network.read_text() + SPAWN % idle_s + "\n")
    return network


def research_task(n: int, reply_to: Topic) -> Envelope:
    return Envelope(
        run_id="burst",
        step_id=f"s{n}",
        sender="test",
        reply_to=str(reply_to),
        payload=Task(capability="research", instruction=f"topic {n}"),
    )


async def test_bus_backlog_scales_process_replicas_up_and_back_down(
    tmp_path: Path, server, procs: Processes, signing_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spawner reading the bus's backlog (not its own calls) starts ``rede agent`` replica
    processes when a burst of tasks waits on Redis, within max_replicas; after the burst
    and ``idle_s`` it stops the surplus (the processes exit cleanly); a replica that dies
    below min_replicas is replaced, and each decision says why."""
    network = spawn_network(
        tmp_path,
        server.url,
        '- {name: worker, capabilities: [research], tool: "slowtools:slow", concurrency: 1}',
        idle_s=0.5,
    )
    for name, value in {**procs.env, **GATED}.items():
        monkeypatch.setenv(name, value)
    conf = NetworkConfig.from_yaml(network)
    assert conf.spawn is not None
    registry = Registry(ttl_s=4)
    async with (
        RedisBus(server.url, BusOptions(signing_key=signing_key)) as bus,
        aioredis.Redis.from_url(server.url) as admin,
    ):
        following = asyncio.create_task(registry.follow(bus))
        backend = ProcessBackend(network, server.url, registry)
        load = BusLoad(bus, {"worker": ["research"]})
        spawner = Spawner(backend, load, registry, conf.spawn, templates(conf))
        spawning = asyncio.create_task(spawner.run())
        try:
            await spawner.wait_for(lambda s: s.replicas("worker") == 1, timeout=20)
            assert spawner.decisions[0]["reason"] == "0 replica(s) running, below min_replicas=1"

            replies = Topic.reply("burst")
            answers = await bus.subscribe(replies)
            for i in range(6):
                await bus.publish(Topic.task("research", "worker"), research_task(i, replies))
            await spawner.wait_for(lambda s: s.replicas("worker") == 3, timeout=30)
            await registry.wait_for(lambda reg: len(reg.cards("research")) == 3, timeout=10)
            seen, pids = b"0-0", set()
            while len(pids) < 3:  # every replica took a task: the new ones serve the backlog
                seen, pid = await next_started(admin, seen)
                pids.add(pid)
            peak = [r.proc for r in backend._procs["worker"]]
            spawns = [d for d in spawner.decisions if d["name"] == "spawn"]
            assert "task(s) waiting beyond 1 replica(s)" in spawns[1]["reason"], spawns
            assert spawns[1]["in_flight"] >= 2 and spawns[-1]["replicas"] == 3

            await admin.xadd(GATE, {"open": 1})  # the burst may finish
            done = set()
            async with asyncio.timeout(30):
                while len(done) < 6:
                    done.add((await answers.receive()).envelope.step_id)

            await spawner.wait_for(lambda s: s.replicas("worker") == 1, timeout=20)
            assert await bus.backlog(Topic.task("research", "worker"), "worker") == Backlog()
            despawns = [d for d in spawner.decisions if d["name"] == "despawn"]
            assert despawns and "call(s) in flight need 1 replica(s)" in despawns[0]["reason"]
            codes = Counter(p.returncode for p in peak)
            assert codes == {None: 1, 0: 2}, "two stopped cleanly (SIGTERM), one serves on"
            await registry.wait_for(lambda reg: len(reg.cards("research")) == 1, timeout=10)

            # the last replica dies: it is reported and replaced (min_replicas)
            (survivor,) = [p for p in peak if p.returncode is None]
            survivor.kill()
            await spawner.wait_for(
                lambda s: s.decisions[-1]["name"] == "spawn" and s.replicas("worker") == 1,
                timeout=20,
            )
            exited = next(d for d in spawner.decisions if d["name"] == "replica_exited")
            assert exited["code"] == -signal.SIGKILL
            assert "below min_replicas=1" in spawner.decisions[-1]["reason"]
        finally:
            spawning.cancel()
            await asyncio.gather(spawning, return_exceptions=True)
            await backend.aclose()
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)


async def test_rede_up_scales_templated_agents_from_the_bus_and_stops_them_all(
    tmp_path: Path, server, procs: Processes, signing_key: str
) -> None:
    """``rede up`` with a ``spawn:`` section: the templated agent starts at min_replicas and
    is scaled by the backlog of runs submitted from another process; the other agent is
    supervised as one process; every decision is printed and recorded in the ledger; SIGTERM
    stops ``rede up`` and every process it started."""
    network = spawn_network(
        tmp_path,
        server.url,
        """\
        - {name: worker, capabilities: [research], tool: "slowtools:slow", concurrency: 1}
        - {name: echoer, capabilities: [write], tool: echo}
        """,
        idle_s=60,
    )
    ledger = tmp_path / "up.db"
    up = procs.start("up", str(network), "--bus", server.url, "--ledger", str(ledger), **GATED)
    plan = Plan(
        steps=[Step(id=f"s{i}", capability="research", instruction=f"topic {i}") for i in range(6)]
    )
    net = Network.from_yaml(network, bus=server.url).serve_only(set())
    async with net, aioredis.Redis.from_url(server.url) as admin:
        await net.registry.wait_for(
            lambda reg: {"research", "write"} <= reg.capabilities(), timeout=30
        )
        assert [v.replicas for v in net.registry.agents("research")] == [1]
        asking = asyncio.create_task(net.ask("six topics", plan=plan))
        await net.registry.wait_for(lambda reg: len(reg.cards("research")) == 3, timeout=30)
        children = child_pids(up.pid)
        assert len(children) == 4, procs.log(up)  # echoer + 3 worker replicas
        await admin.xadd(GATE, {"open": 1})
        async with asyncio.timeout(40):
            result = await asyncio.shield(asking)
        assert result.status == "ok", result.error
        assert {s.id: s.status for s in result.steps} == {f"s{i}": "ok" for i in range(6)}

        up.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(up.wait, 30) == 0, procs.log(up)
        for pid in children:  # reaped by `rede up`: no such process any more
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        await net.registry.wait_for(lambda reg: not reg.cards(), timeout=10)

    log = procs.log(up)
    assert "spawn worker -> 1 replica(s): initial replicas: 1" in log, log
    assert "task(s) waiting beyond" in log, log
    recorded = SQLiteLedger(ledger).decisions("distributed.spawner")
    spawns = [e.data for e in recorded if e.name == "spawn"]
    assert spawns[-1]["replicas"] == 3 and "waiting beyond" in spawns[-1]["reason"]


async def test_rede_up_without_a_bus_runs_its_agents_on_an_embedded_valkey(
    tmp_path: Path, signing_key: str
) -> None:
    """``rede up`` on a network with no Redis bus starts an embedded Valkey on a free
    loopback port, prints its URL, runs the agents on it (``rede run --bus URL`` answers with
    them), and stops it with the agents on SIGTERM."""
    network = write_network(
        tmp_path, "memory://", "- {name: calculator, capabilities: [arithmetic], tool: arithmetic}"
    )
    env = Processes(tmp_path, "").env
    up = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "rede", "up", str(network), "--ledger", ""),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert up.stderr is not None
    lines: list[str] = []
    found: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def read() -> None:  # drain rede up's output (its agents write there too)
        assert up.stderr is not None
        async for raw in up.stderr:
            lines.append(line := raw.decode(errors="replace"))
            if (match := re.search(r"embedded Valkey on (redis://\S+)", line)) and not found.done():
                found.set_result(match[1])

    reading = asyncio.create_task(read())
    try:
        async with asyncio.timeout(30):
            await asyncio.wait({found, reading}, return_when=asyncio.FIRST_COMPLETED)
        assert found.done(), "".join(lines)
        url = found.result()
        assert url.startswith("redis://127.0.0.1:")
        registry = Registry(ttl_s=4)
        async with RedisBus(url, BusOptions(signing_key=signing_key)) as bus:
            following = asyncio.create_task(registry.follow(bus))
            try:
                await registry.wait_for(lambda reg: "arithmetic" in reg.capabilities(), timeout=30)
            finally:
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)
        children = child_pids(up.pid)
        commands = command_lines(children)
        servers = [pid for pid, cmd in commands.items() if b"valkey-server" in cmd]
        assert len(children) == 2 and len(servers) == 1, commands  # the server, the agent

        run = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "rede", "run", str(network), "2 + 3 * 4", "--bus", url),
            *("--json", "--ledger", ""),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            out, errs = await run.communicate()
        assert run.returncode == 0, errs.decode()
        assert json.loads(out)["answer"] == "2 + 3 * 4 = 14"

        up.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await up.wait() == 0, "".join(lines)
        for pid in children:  # the agent and the server: reaped by `rede up`
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        with pytest.raises(redis.ConnectionError):
            await aioredis.Redis.from_url(url).ping()
    finally:
        if up.returncode is None:
            for pid in child_pids(up.pid):
                os.kill(pid, signal.SIGKILL)
            up.kill()
            await up.wait()
        await reading


async def gone(pid: int) -> None:
    """Wait until a process that is not our child has exited (a pidfd turns readable then;
    Linux), however long it takes: the caller bounds the wait."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    exited = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, exited.set)
    try:
        await exited.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
async def test_rede_up_killed_with_sigkill_leaves_no_agent_behind(
    tmp_path: Path, server, procs: Processes, signing_key: str
) -> None:
    """A ``rede up`` killed outright cannot stop its agents itself: they get SIGTERM from
    the kernel when it dies, stop, and say goodbye to the registry."""
    network = write_network(
        tmp_path,
        server.url,
        """\
        - {name: calculator, capabilities: [arithmetic], tool: arithmetic}
        - {name: echoer, capabilities: [write], tool: echo, replicas: 2}
        """,
    )
    up = procs.start("up", str(network), "--bus", server.url)
    registry = Registry(ttl_s=30)  # longer than the test: only goodbyes empty it
    agents: set[int] = set()
    async with RedisBus(server.url, BusOptions(signing_key=signing_key)) as bus:
        following = asyncio.create_task(registry.follow(bus))
        try:
            await registry.wait_for(lambda reg: len(reg.cards()) == 3, timeout=30)
            agents = child_pids(up.pid)
            assert len(agents) == 2, procs.log(up)  # a process per agent
            waits = [asyncio.create_task(gone(pid)) for pid in agents]
            up.send_signal(signal.SIGKILL)
            up.wait()
            async with asyncio.timeout(30):
                await asyncio.gather(*waits)
            await registry.wait_for(lambda reg: not reg.cards(), timeout=10)  # clean stops
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
            for pid in agents:  # none is left when the test passes
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
