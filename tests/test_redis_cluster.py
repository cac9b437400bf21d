"""The Redis bus on a Redis Cluster of real servers (3 masters, a replica each, on loopback):
the bus contract runs there too (tests/test_bus_contract.py, ``redis-cluster``); here, a
network's runs across it, a failover of the master that holds a run's streams mid-run, and
the errors a user meets with a wrong URL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from rede import Network
from rede.bus.redis import RedisBus
from rede.errors import BusError
from rede.models import ModelRequest
from rede.models.scripted import ScriptedModel
from rede.orchestration.plan import Plan, Step
from rede.protocol.topics import Topic
from redis_cluster import Cluster

PLAN = Plan(
    steps=[
        Step(id="look", capability="research", instruction="look it up"),
        Step(id="say", capability="write", instruction="write it", depends_on=["look"]),
    ]
)


def network(cluster: Cluster, namespace: str, models: dict[str, ScriptedModel]) -> Network:
    return Network.from_dict(
        {
            "models": {name: {"spec": "sim:7b"} for name in models},
            "agents": [
                {"name": "researcher", "capabilities": ["research"], "model": "r"},
                {"name": "writer", "capabilities": ["write"], "model": "w"},
            ],
            "heartbeat_s": 0.2,
            "limits": {"step_timeout_s": 10, "wall_time_s": 20},
        },
        models=models,
        bus=RedisBus(cluster.url, namespace=namespace),
        ledger=None,
    )


def test_each_topic_is_one_hash_slot_on_a_cluster(redis_cluster: Cluster) -> None:
    bus = RedisBus(redis_cluster.url, namespace="team-a:")
    key = bus.key(Topic.task("research", "researcher"))
    assert key == "team-a:{" + str(Topic.task("research", "researcher")) + "}"
    plain = RedisBus("redis://127.0.0.1:6379/0", namespace="team-a:")
    assert plain.key(Topic.registry()) == "team-a:" + str(Topic.registry())  # unchanged


async def test_runs_go_across_a_cluster(redis_cluster: Cluster) -> None:
    models = {
        "r": ScriptedModel(lambda r: "Redis Cluster splits keys into 16384 slots", name="r"),
        "w": ScriptedModel(lambda r: "It shards by slot.", name="w"),
    }
    net = network(redis_cluster, redis_cluster.namespace(), models)
    async with net:
        results = await asyncio.gather(*(net.ask(f"question {i}", plan=PLAN) for i in range(8)))
    assert [r.status for r in results] == ["ok"] * 8
    assert {r.answer for r in results} == {"It shards by slot."}


async def test_a_run_survives_a_failover_of_the_master_holding_its_streams(
    redis_cluster: Cluster,
) -> None:
    researching, go_on = asyncio.Event(), asyncio.Event()

    async def research(request: ModelRequest) -> str:
        researching.set()
        await go_on.wait()
        return "found"

    models = {
        "r": ScriptedModel(research, name="r"),
        "w": ScriptedModel(lambda r: "done", name="w"),
    }
    net = network(redis_cluster, redis_cluster.namespace(), models)
    async with net:
        assert net.bus is not None and isinstance(net.bus, RedisBus)
        run = asyncio.create_task(net.ask("one question", plan=PLAN))
        await researching.wait()
        in_flight = net.bus.key(Topic.task("research", "researcher"))  # the step being done
        held_by = redis_cluster.master_of(in_flight)
        await asyncio.to_thread(redis_cluster.fail_over_every_master)  # whichever holds a key
        assert redis_cluster.master_of(in_flight) is not held_by
        go_on.set()
        result = await asyncio.wait_for(run, 60)
    assert result.status == "ok", result.error
    assert result.answer == "done"


async def test_a_plain_url_to_a_cluster_node_names_the_cluster_scheme(
    redis_cluster: Cluster,
) -> None:
    node = redis_cluster.masters[1]
    bus = RedisBus(f"redis://127.0.0.1:{node.port}/0", namespace=redis_cluster.namespace())
    try:
        with pytest.raises(BusError, match=r"is a node of a Redis Cluster .* use redis\+cluster://"):
            for i in range(64):  # some topic's slot is on another node
                await bus.publish(Topic.task(f"cap{i}", "agent"), _any_envelope())
    finally:
        await bus.aclose()


async def test_an_unreachable_cluster_is_a_one_line_error_within_seconds() -> None:
    from conftest import free_port

    url = f"redis+cluster://127.0.0.1:{free_port()}"
    started = time.monotonic()
    bus = RedisBus(url)
    try:
        with pytest.raises(BusError) as caught:
            await bus.publish(Topic.registry(), _any_envelope())
    finally:
        await bus.aclose()
    assert time.monotonic() - started < 30  # a bound on the test, not a timing claim
    message = str(caught.value)
    assert "127.0.0.1" in message and "\n" not in message


def _any_envelope() -> Any:
    from rede.protocol.messages import Envelope, Event

    return Envelope(sender="test", payload=Event(name="ping"))
