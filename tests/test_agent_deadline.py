"""A task's deadline holds while it runs: the agent stops the work, says so, and serves on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from rede.agents.specialists import Specialist, SpecialistSpec
from rede.bus import BusOptions, MemoryBus
from rede.protocol.messages import Envelope, Result, Task
from rede.protocol.topics import Topic
from rede.runtime.agent import AgentRunner


class Slow(Specialist):
    """Hangs on any instruction starting with ``hang`` (until cancelled, or for ever when
    ``stubborn``: it swallows the first cancellation); answers anything else at once."""

    def __init__(self, stubborn: bool = False) -> None:
        self.stubborn = stubborn
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, task: Task, ctx: Any) -> Result:
        if not task.instruction.startswith("hang"):
            return Result(status="ok", output=f"done {task.instruction}")
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            if not self.stubborn:
                raise
            await self.release.wait()
        return Result(status="ok", output="too late")


def envelope(instruction: str, deadline_s: float | None = None) -> Envelope:
    deadline = None if deadline_s is None else datetime.now(UTC) + timedelta(seconds=deadline_s)
    return Envelope(
        sender="test",
        reply_to=str(Topic.reply("r1")),
        deadline=deadline,
        payload=Task(capability="research", instruction=instruction),
    )


@contextlib.asynccontextmanager
async def serving(*runners: AgentRunner) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:
        for runner in runners:
            await runner.ready.wait()
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_task_past_its_deadline_is_stopped_and_its_slot_serves_the_next() -> None:
    """A user's agent of concurrency 1 stalled on one huge task for hours: now the task
    fails at its deadline, naming it, and the next task is served."""
    bus = MemoryBus()
    slow = Slow()
    runner = AgentRunner(bus, SpecialistSpec("slow", ["research"], slow, concurrency=1))
    async with serving(runner):
        replies = await bus.subscribe(Topic.reply("r1"), group="orchestrator")
        topic = Topic.task("research", "slow")
        await bus.publish(topic, envelope("hang on this", deadline_s=0.3))
        await bus.publish(topic, envelope("next"))
        first = await replies.receive(timeout=5)
        result = first.envelope.payload
        assert isinstance(result, Result) and result.status == "failed"
        assert "deadline" in (result.error or "") and "passed while" in (result.error or "")
        assert slow.cancelled.is_set(), "the specialist's work was cancelled"
        second = (await replies.receive(timeout=5)).envelope.payload
        assert isinstance(second, Result) and second.output == "done next"
        assert runner.in_flight == 0
    backlog = await bus.backlog(topic, "slow")
    assert backlog.unfinished == 0, "both tasks were acknowledged"
    await bus.aclose()


async def test_a_specialist_that_will_not_stop_loses_its_lease_at_the_deadline() -> None:
    """No touch renews a delivery past its deadline: another replica gets the task after
    the visibility timeout and answers that the deadline passed."""
    bus = MemoryBus(BusOptions(visibility_timeout_s=0.3))
    stubborn = Slow(stubborn=True)
    first = AgentRunner(
        bus, SpecialistSpec("slow", ["research"], stubborn, concurrency=1), instance_id="a"
    )
    other = AgentRunner(
        bus, SpecialistSpec("slow", ["research"], Slow(), concurrency=1), instance_id="b"
    )
    replies = await bus.subscribe(Topic.reply("r1"), group="orchestrator")
    async with serving(first):
        await bus.publish(Topic.task("research", "slow"), envelope("hang", deadline_s=0.5))
        await stubborn.started.wait()
        async with serving(other):
            got = await replies.receive(timeout=10)
            while not isinstance(got.envelope.payload, Result):  # a "redelivered" event
                await got.ack()
                got = await replies.receive(timeout=10)
            result = got.envelope.payload
            assert result.status == "failed"
            assert "deadline passed before it started" in (result.error or "")
            assert got.envelope.sender == "b"
        stubborn.release.set()
    await bus.aclose()
