"""An agent outlasts a Redis outage longer than its bus's reconnect window: it keeps the
task it was working on, answers it once Redis is back, and serves the next one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from rede.agents.specialists import Specialist, SpecialistSpec
from rede.bus import BusOptions
from rede.bus.redis import RedisBus
from rede.protocol.messages import Envelope, Result, Task
from rede.protocol.topics import Topic
from rede.runtime.agent import AgentRunner
from rede.runtime.registry import Registry


class Gated(Specialist):
    """Answers ``wait`` once ``go`` is set, anything else at once."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.go = asyncio.Event()

    async def handle(self, task: Task, ctx: Any) -> Result:
        if task.instruction == "wait":
            self.started.set()
            await self.go.wait()
        return Result(status="ok", output=f"done {task.instruction}")


class Heard(logging.Handler):
    """Sets an event when a warning containing a phrase is logged."""

    def __init__(self, *phrases: str) -> None:
        super().__init__(logging.WARNING)
        self.events = {phrase: asyncio.Event() for phrase in phrases}

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        for phrase, event in self.events.items():
            if phrase in text:
                event.set()

    async def wait(self, phrase: str) -> None:
        async with asyncio.timeout(20):
            await self.events[phrase].wait()


@pytest.fixture
def heard() -> Iterator[Heard]:
    handler = Heard("lost the bus", "publishing to rede.reply.r1 failed")
    logger = logging.getLogger("rede.runtime")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def task(instruction: str) -> Envelope:
    return Envelope(
        sender="test",
        reply_to=str(Topic.reply("r1")),
        payload=Task(capability="research", instruction=instruction),
    )


async def test_an_agent_outlasts_an_outage_longer_than_the_reconnect_window(
    redis_server_factory, heard: Heard
) -> None:
    server = redis_server_factory(appendonly=True)  # the stream and its pending entry survive
    gated = Gated()
    short = BusOptions(reconnect_timeout_s=0.2, first_connect_timeout_s=0.2)
    async with RedisBus(server.url, short) as agent_bus, RedisBus(server.url) as client:
        runner = AgentRunner(
            agent_bus, SpecialistSpec("gated", ["research"], gated, concurrency=1), heartbeat_s=0.1
        )
        registry = Registry(ttl_s=5)  # as `rede agent` follows the registry
        serving = asyncio.create_task(runner.run())
        following = asyncio.create_task(registry.follow(agent_bus))
        try:
            await runner.ready.wait()
            replies = await client.subscribe(Topic.reply("r1"), group="orchestrator")
            await client.publish(Topic.task("research", "gated"), task("wait"))
            await gated.started.wait()

            await asyncio.to_thread(server.stop)
            await heard.wait("lost the bus")  # its reads gave up on the bus...
            gated.go.set()
            await heard.wait("publishing to rede.reply.r1 failed")  # ...and so did its reply
            assert not serving.done(), "the agent is still serving"
            assert not following.done(), "and still following the registry"
            await asyncio.to_thread(server.start)

            first = await replies.receive(timeout=30)
            assert isinstance(first.envelope.payload, Result)
            assert first.envelope.payload.output == "done wait"
            await first.ack()
            await client.publish(Topic.task("research", "gated"), task("next"))
            second = await replies.receive(timeout=30)
            assert isinstance(second.envelope.payload, Result)
            assert second.envelope.payload.output == "done next", "it reads its stream again"
            await second.ack()
            backlog = await client.backlog(Topic.task("research", "gated"), "gated")
            assert backlog.unfinished == 0, "both tasks were acknowledged once answered"
            registry.remove(runner.id)
            await registry.wait_for(lambda reg: reg.cards() != [], timeout=20)
            assert [card.id for card in registry.cards()] == [runner.id]
        finally:
            serving.cancel()
            following.cancel()
            await asyncio.gather(serving, following, return_exceptions=True)
