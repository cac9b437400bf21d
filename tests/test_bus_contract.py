"""The bus contract (:mod:`rede.testing.bus_contract`): every check, against every bus.

The ``bus_factory`` fixture is parametrised over the implementations (memory, redis); each
check of the public conformance suite is one test here, and ``check_bus`` itself is run
whole once. What only the memory bus needs is tested below the contract."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from rede.bus import Backlog, BusOptions, MemoryBus
from rede.protocol.topics import Topic
from rede.testing.bus_contract import CHECKS, TOPIC, MakeBus, check_bus, task


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__.removeprefix("check_") for c in CHECKS])
async def test_contract(check: Callable[[MakeBus], Awaitable[None]], bus_factory) -> None:
    await check(bus_factory)


async def test_check_bus_runs_the_whole_suite_and_names_a_failing_check() -> None:
    await check_bus(MemoryBus)

    class Forgetful(MemoryBus):  # loses every other envelope: no bus may do that
        dropped = 0

        async def publish(self, topic, envelope):  # type: ignore[no-untyped-def, override]
            Forgetful.dropped += 1
            if Forgetful.dropped % 2 == 0:
                return "0"
            return await super().publish(topic, envelope)

    with pytest.raises(AssertionError, match=r"^check_\w+: "):
        await check_bus(Forgetful)


async def test_backlog_adds_up_across_topics() -> None:
    total = Backlog(2, 1, 0.5) + Backlog(1, 0, 2.0)
    assert total == Backlog(3, 1, 2.0) and total.unfinished == 4


# --------------------------------------------------------------------------- ephemeral topics
# Reply and inbox topics belong to their subscriber: only subscribing makes the stream, a live
# subscriber keeps it, a publish to a missing one is dropped and counted, and one whose
# subscribers all left without deleting it expires. The TTL is made short here and the tests
# wait past it; what they assert is whether a stream is there, never how long anything took.
# "Gone" is seen through backlog(): a group not created yet would receive the whole retained
# stream, so waiting == 0 means no entry is left.


def test_reply_and_inbox_topics_are_ephemeral() -> None:
    assert Topic.reply("r1").ephemeral and Topic.inbox("a-1").ephemeral
    assert not any(
        t.ephemeral
        for t in (TOPIC, Topic.bids("x"), Topic.registry(), Topic.events(), Topic.dead())
    )
    with pytest.raises(ValueError, match="ephemeral_ttl_s"):
        BusOptions(ephemeral_ttl_s=0)


# What only the memory bus needs: a sweep, as nothing else would look at a stream again.


async def test_memory_bus_sweeps_ephemeral_streams_nobody_touches_again() -> None:
    # a TTL well above the time 400 subscribes take on a loaded machine (0.05 s was not)
    bus = MemoryBus(BusOptions(ephemeral_ttl_s=0.5))
    for i in range(200):
        await (await bus.subscribe(Topic.reply(f"run-{i}"), group="orchestrator")).aclose()
        await (await bus.subscribe(Topic.inbox(f"agent-{i}"))).aclose()
    await bus.publish(TOPIC, task(1))
    assert len(bus._streams) == 401
    await asyncio.sleep(0.6)
    await bus.publish(TOPIC, task(2))  # any publish sweeps (at most once per min(1 s, TTL))
    assert list(bus._streams) == [str(TOPIC)]
    assert not bus._ephemeral
