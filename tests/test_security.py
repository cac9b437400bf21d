"""The attacker's suite: someone with write access to the bus tries to get in where they do
not belong. Each test asserts what a user relies on: no run's output replaced, no task leaked
to an impostor, no agent stalled. On the unsigned bus (in-process, or Redis with
``insecure: true``) and on the secure one (Redis with per-agent keys)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from rede.bus import Bus
from rede.models import ModelRequest, ScriptedModel
from rede.network import Network
from rede.protocol.messages import Envelope, Result, Task
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
