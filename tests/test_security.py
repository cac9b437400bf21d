"""The attacker's suite: someone with write access to the bus tries to get in where they do
not belong. Each test asserts what a user relies on: no run's output replaced, no task leaked
to an impostor, no agent stalled. On the unsigned bus (in-process, or Redis with
``insecure: true``) and on the secure one (Redis with per-agent keys)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from conftest import RedisServer
from rede.bus import Bus, BusOptions
from rede.bus.redis import RedisBus
from rede.models import ModelRequest, ScriptedModel
from rede.network import Network
from rede.protocol.codec import Codec
from rede.protocol.messages import AgentCard, Envelope, Heartbeat, Result, Task
from rede.protocol.topics import Topic

Handler = Callable[[ModelRequest], Any]


def network(handlers: dict[str, Handler], bus: Bus | str | None = None, **conf: Any) -> Network:
    """One research agent per handler (model name = agent name), scripted."""
    models = {name: ScriptedModel(fn, name=name) for name, fn in handlers.items()}
    data: dict[str, Any] = {
        "models": {name: {"spec": "sim:7b"} for name in handlers},
        "agents": [
            {"name": name, "capabilities": ["research"], "model": name} for name in handlers
        ],
        "heartbeat_s": 0.1,
        "agent_ttl_s": 2.0,
        "limits": {"step_timeout_s": 10},
        **conf,
    }
    return Network.from_dict(data, models=models, bus=bus)


async def spy_task(bus: Bus, topic: Topic) -> Envelope:
    """What an attacker with read access sees: the next task on ``topic`` (fan-out)."""
    sub = await bus.subscribe(topic)
    async with sub:
        return (await sub.receive(timeout=10)).envelope


def forged_result(task: Envelope, sender: str, text: str = "FORGED") -> Envelope:
    return task.reply(Result(output=text, confidence=1.0), sender=sender)


# --------------------------------------------------------------------------- forged results


async def test_a_forged_result_never_replaces_the_routed_agents_output() -> None:
    release = asyncio.Event()

    async def real(request: ModelRequest) -> str:
        await release.wait()
        return "the real answer"

    net = network({"researcher": real})
    async with net:
        assert net.bus is not None
        spy = asyncio.create_task(spy_task(net.bus, Topic.task("research", "researcher")))
        await asyncio.sleep(0)  # let the spy subscribe before the run publishes
        run = asyncio.create_task(net.ask("look it up"))
        task = await spy
        assert isinstance(task.payload, Task) and task.reply_to
        # a result for the live (step, attempt) from an agent it was not routed to, and one
        # claiming to be the agent's name rather than a live replica of it
        for sender in ("mallory", "researcher", "researcher-0000000000000000"):
            await net.bus.publish(Topic.from_str(task.reply_to), forged_result(task, sender))
        release.set()
        result = await run
    assert result.status == "ok" and result.answer == "the real answer"
    rejected = [d for d in result.decisions if d["name"] == "reply_rejected"]
    assert sorted(d["sender"] for d in rejected) == [
        "mallory",
        "researcher",
        "researcher-0000000000000000",
    ]
    assert all(d["routed_to"] == "researcher" for d in rejected)
    assert "FORGED" not in str(result.steps)


async def test_a_result_from_another_real_agent_is_not_an_answer_to_this_attempt() -> None:
    release = asyncio.Event()

    async def slow(request: ModelRequest) -> str:
        await release.wait()
        return "the routed agent's answer"

    net = network({"first": slow, "second": slow})
    async with net:
        assert net.bus is not None
        spies = {
            asyncio.create_task(spy_task(net.bus, Topic.task("research", n))): n
            for n in ("first", "second")
        }
        await asyncio.sleep(0)
        run = asyncio.create_task(net.ask("look it up"))
        done, pending = await asyncio.wait(spies, return_when=asyncio.FIRST_COMPLETED)
        for spy in pending:
            spy.cancel()
        caught = done.pop()
        task = caught.result()
        # a real, live agent of the network, but not the one this attempt went to
        other = next(r for r in net.runners if r.spec.name != spies[caught])
        assert task.reply_to
        await net.bus.publish(
            Topic.from_str(task.reply_to), forged_result(task, other.id, "not routed")
        )
        release.set()
        result = await run
    assert result.answer == "the routed agent's answer"
    (rejected,) = [d for d in result.decisions if d["name"] == "reply_rejected"]
    assert rejected["sender"] == other.id and rejected["routed_to"] == spies[caught]


# --------------------------------------------------------------------------- dead letters


def _heartbeat(agent: str) -> Envelope:
    card = AgentCard(id=agent, name=agent.split("-")[0], capabilities=["research"])
    return Envelope(sender=agent, payload=Heartbeat(card=card))


async def test_a_forged_entry_read_by_many_processes_is_dead_lettered_once(
    redis_server: RedisServer,
) -> None:
    namespace = redis_server.namespace()
    signed = BusOptions(signing_key="the-networks-key")
    readers = [RedisBus(redis_server.url, signed, namespace=namespace) for _ in range(3)]
    try:
        subs = [await bus.subscribe(Topic.registry()) for bus in readers]
        forger = Codec(signing_key="a-guess")
        for n in range(20):  # forged heartbeats, as an attacker with write access sends them
            await readers[0].publish_raw(Topic.registry(), forger.encode(_heartbeat(f"m{n}-x")))
        await readers[0].publish(Topic.registry(), _heartbeat("real-agent"))
        for sub in subs:  # every process reads past the 20 forged ones to the real one
            assert (await sub.receive(timeout=10)).envelope.sender == "real-agent"
        r = aioredis.Redis.from_url(redis_server.url)
        assert await r.xlen(namespace + str(Topic.dead())) == 20, "once each, not once per reader"
        await r.aclose()
        assert [bus.stats.rejected["signature"] for bus in readers] == [20, 20, 20]
        assert sum(bus.stats.dead_lettered for bus in readers) == 20
    finally:
        for bus in readers:
            await bus.aclose()


async def test_the_dead_letter_stream_is_capped(redis_server: RedisServer) -> None:
    namespace = redis_server.namespace()
    bus = RedisBus(redis_server.url, BusOptions(dead_maxlen=10), namespace=namespace)
    try:
        sub = await bus.subscribe(Topic.registry())
        for n in range(500):
            await bus.publish_raw(Topic.registry(), b'{"not": "an envelope %d"}' % n)
        await bus.publish(Topic.registry(), _heartbeat("real-agent"))
        assert (await sub.receive(timeout=10)).envelope.sender == "real-agent"
        r = aioredis.Redis.from_url(redis_server.url)
        kept = await r.xlen(namespace + str(Topic.dead()))
        await r.aclose()
        # MAXLEN ~ trims whole stream nodes (100 entries each by default): near the cap
        assert kept < 200 and bus.stats.rejected["malformed"] == 500
    finally:
        await bus.aclose()
