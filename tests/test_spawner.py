"""Dynamic spawning: scale up under a burst and back down; spawn a capability on demand."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rede.bus import MemoryBus
from rede.config import NetworkConfig
from rede.errors import ConfigError, UnknownCapability
from rede.models import ModelRequest, ScriptedModel
from rede.network import Network
from rede.orchestration.plan import Plan, Step
from rede.protocol.messages import Envelope, Task
from rede.protocol.topics import Topic
from rede.runtime.registry import Registry
from rede.scaling.load import BusLoad
from rede.scaling.spawner import Exited, Spawner, initial_replicas, templates


def network(agents: list[dict[str, Any]], models: dict[str, ScriptedModel], **conf: Any) -> Network:
    data: dict[str, Any] = {
        "models": {name: {"spec": "sim:7b"} for name in models},
        "agents": agents,
        "heartbeat_s": 0.1,
        "agent_ttl_s": 5,
        **conf,
    }
    data.setdefault("limits", {}).setdefault("step_timeout_s", 10)
    return Network.from_dict(data, models=dict(models))


class Gate:
    """A scripted model's handler that holds every call until opened, and lets a test wait
    until a number of calls are held at once."""

    def __init__(self, reply: str = "done") -> None:
        self.reply = reply
        self.open = asyncio.Event()
        self.held = 0
        self._changed = asyncio.Event()

    async def __call__(self, request: ModelRequest) -> str:
        self.held += 1
        self._changed.set()
        try:
            await self.open.wait()
        finally:
            self.held -= 1
        return self.reply

    async def wait_held(self, n: int) -> None:
        async with asyncio.timeout(5):
            while self.held < n:
                self._changed.clear()
                await self._changed.wait()


async def test_spawner_scales_up_under_a_burst_and_back_down() -> None:
    gate = Gate("done\nCONFIDENCE: 0.9")
    model = ScriptedModel(gate, name="w")
    net = network(
        [{"name": "worker", "capabilities": ["answer"], "model": "w", "concurrency": 1}],
        {"w": model},
        spawn={
            "templates": {"worker": {"min_replicas": 1, "max_replicas": 4}},
            "backlog_per_replica": 1,
            "idle_s": 0,
            "interval_s": 0.01,
        },
    )
    async with net:
        spawner = net.spawner
        assert spawner is not None and spawner.replicas("worker") == 1
        runs = [asyncio.create_task(net.ask(f"job {i}")) for i in range(8)]
        await spawner.wait_for(lambda s: s.replicas("worker") == 4, timeout=5)
        await gate.wait_held(4)  # the new replicas took work
        gate.open.set()
        results = await asyncio.gather(*runs)
        await spawner.wait_for(lambda s: s.replicas("worker") == 1, timeout=5)
        live = net.registry.agents("answer")
    assert [r.status for r in results] == ["ok"] * 8
    assert model.max_in_flight == 4, "never more than max_replicas x concurrency"
    spawns = [d for d in spawner.decisions if d["name"] == "spawn"]
    assert spawns and "waiting beyond" in spawns[0]["reason"]
    assert max(d["replicas"] for d in spawns) == 4
    despawns = [d for d in spawner.decisions if d["name"] == "despawn"]
    assert despawns and despawns[-1]["replicas"] == 1
    assert [v.replicas for v in live] == [1], "stopped replicas said goodbye to the registry"
    ledger = net.ledger.decisions("network.spawner")
    assert [e.name for e in ledger] == [d["name"] for d in spawner.decisions]


async def test_spawner_does_not_exceed_max_replicas_or_start_without_a_backlog() -> None:
    gate = Gate()
    model = ScriptedModel(gate, name="w")
    net = network(
        [{"name": "worker", "capabilities": ["answer"], "model": "w", "concurrency": 2}],
        {"w": model},
        spawn={
            "templates": {"worker": {"min_replicas": 1, "max_replicas": 2}},
            "idle_s": 60,
            "interval_s": 0.01,
        },
    )
    async with net:
        spawner = net.spawner
        assert spawner is not None
        first = [asyncio.create_task(net.ask(f"job {i}")) for i in range(2)]
        await gate.wait_held(2)
        await spawner.step()
        assert spawner.replicas("worker") == 1, "two calls fit one replica's concurrency"
        more = [asyncio.create_task(net.ask(f"more {i}")) for i in range(10)]
        await spawner.wait_for(lambda s: s.replicas("worker") == 2, timeout=5)
        await spawner.step()
        assert spawner.replicas("worker") == 2
        gate.open.set()
        await asyncio.gather(*first, *more)
        await spawner.step()
        assert spawner.replicas("worker") == 2, "idle_s has not passed"


async def test_a_dormant_template_is_spawned_when_a_step_needs_its_capability() -> None:
    net = network(
        [
            {"name": "writer", "capabilities": ["write"], "model": "w"},
            {"name": "translator", "capabilities": ["translate"], "model": "t"},
        ],
        {
            "w": ScriptedModel(lambda r: "text", name="w"),
            "t": ScriptedModel(lambda r: "hola", name="t"),
        },
        spawn={"templates": {"translator": {"min_replicas": 0, "max_replicas": 2, "initial": 0}}},
    )
    plan = Plan(steps=[Step(id="t", capability="translate", instruction="say hello")])
    async with net:
        assert net.spawner is not None and net.spawner.replicas("translator") == 0
        assert "translate" not in net.registry.capabilities()
        result = await net.ask("translate this", plan=plan)
        assert net.spawner.replicas("translator") == 1
    assert result.answer == "hola"
    (spawn,) = [d for d in result.decisions if d["name"] == "spawn"]
    assert spawn["agent"] == "translator" and "no live agent served 'translate'" in spawn["reason"]


async def test_a_capability_no_template_can_serve_fails_naming_it() -> None:
    net = network(
        [
            {"name": "writer", "capabilities": ["write"], "model": "w"},
            {"name": "translator", "capabilities": ["translate"], "model": "t"},
        ],
        {
            "w": ScriptedModel(lambda r: "text", name="w"),
            "t": ScriptedModel(lambda r: "hola", name="t"),
        },
        spawn={
            "templates": {"translator": {"min_replicas": 0, "initial": 0}},
            "on_missing": "error",
        },
        agent_ttl_s=0.3,
    )
    plan = Plan(steps=[Step(id="t", capability="translate", instruction="say hello")])
    async with net:
        with pytest.raises(UnknownCapability, match=r"'translate' in step 't'; known: write"):
            await net.ask("translate this", plan=plan)


def test_initial_replicas_follow_the_template_bounds() -> None:
    conf = NetworkConfig.from_dict(
        {
            "models": {"m": {"spec": "sim:1b"}},
            "agents": [
                {"name": "a", "capabilities": ["x"], "model": "m", "replicas": 8},
                {"name": "b", "capabilities": ["x"], "model": "m", "replicas": 1},
                {"name": "c", "capabilities": ["x"], "model": "m", "replicas": 3},
                {"name": "d", "capabilities": ["x"], "model": "m", "replicas": 3},
            ],
            "spawn": {
                "templates": {
                    "a": {"max_replicas": 4},
                    "b": {"min_replicas": 2, "max_replicas": 4},
                    "c": {"min_replicas": 0, "initial": 0},
                }
            },
        }
    )
    assert [initial_replicas(conf, a) for a in conf.agents] == [4, 2, 0, 3]


def test_spawn_config_is_validated() -> None:
    base: dict[str, Any] = {
        "models": {"m": {"spec": "sim:1b"}},
        "agents": [{"name": "a", "capabilities": ["x"], "model": "m"}],
    }
    with pytest.raises(ConfigError, match=r"spawn\.templates names unknown agent\(s\) ghost"):
        NetworkConfig.from_dict({**base, "spawn": {"templates": {"ghost": {}}}})
    with pytest.raises(ConfigError, match="min_replicas 5 is above max_replicas 2"):
        NetworkConfig.from_dict(
            {**base, "spawn": {"templates": {"a": {"min_replicas": 5, "max_replicas": 2}}}}
        )


class CountingBackend:
    """A backend that only counts replicas; ``died`` are reported by the next ``reap``."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self.died: list[Exited] = []
        self._n = 0

    def replicas(self, agent: str) -> int:
        return self.count.get(agent, 0)

    async def start(self, agent: str) -> str:
        self._n += 1
        self.count[agent] = self.count.get(agent, 0) + 1
        return f"{agent}-{self._n}"

    async def stop(self, agent: str) -> str | None:
        self.count[agent] -= 1
        return f"{agent}-stopped"

    def reap(self) -> list[Exited]:
        died, self.died = self.died, []
        for gone in died:
            self.count[gone.agent] -= 1
        return died


async def test_a_spawner_reading_the_bus_backlog_follows_tasks_from_anywhere() -> None:
    """The bus's view of load: tasks published to the template's task topics by anyone
    (here, straight onto the bus) scale it up; once the group has taken and acknowledged
    them and ``idle_s`` passed, it scales down; a replica that dies is replaced."""
    conf = NetworkConfig.from_dict(
        {
            "models": {"m": {"spec": "sim:1b"}},
            "agents": [{"name": "w", "capabilities": ["a", "b"], "model": "m", "concurrency": 1}],
            "spawn": {
                "templates": {"w": {"min_replicas": 1, "max_replicas": 3}},
                "idle_s": 5,
            },
        }
    )
    assert conf.spawn is not None
    now = [0.0]
    backend = CountingBackend()
    async with MemoryBus() as bus:
        load = BusLoad(bus, {"w": ["a", "b"]})
        spawner = Spawner(
            backend, load, Registry(), conf.spawn, templates(conf), clock=lambda: now[0]
        )
        await spawner.step()
        assert backend.replicas("w") == 1
        assert spawner.decisions[-1]["reason"] == "0 replica(s) running, below min_replicas=1"

        subs = {cap: await bus.subscribe(Topic.task(cap, "w"), group="w") for cap in "ab"}
        for i in range(3):  # tasks on both of the agent's topics count
            for cap in "ab":
                await bus.publish(
                    Topic.task(cap, "w"),
                    Envelope(sender="x", payload=Task(capability=cap, instruction=f"{cap}{i}")),
                )
        taken = await subs["a"].receive(timeout=1)
        await spawner.step()
        assert load.in_flight("w") == 6 and load.backlog("w").pending == 1
        assert backend.replicas("w") == 3, "5 waiting beyond 1 replica: up to max_replicas"
        assert spawner.decisions[-1]["reason"].startswith("5 task(s) waiting beyond 1 replica")

        await taken.ack()
        for sub in subs.values():
            while True:
                try:
                    delivery = await sub.receive(timeout=0.01)
                except TimeoutError:
                    break
                await delivery.ack()
        await spawner.step()  # calm from now
        assert backend.replicas("w") == 3 and load.in_flight("w") == 0
        now[0] += 5
        await spawner.step()
        assert backend.replicas("w") == 1
        assert spawner.decisions[-1]["name"] == "despawn"

        backend.died.append(Exited("w", "w-1", -9))
        await spawner.step()
        assert [d["name"] for d in spawner.decisions[-2:]] == ["replica_exited", "spawn"]
        assert backend.replicas("w") == 1
