"""The bus contract: every implementation must pass every test here.

The ``bus_factory`` fixture is parametrised over the implementations (memory, redis)."""

from __future__ import annotations

import asyncio

import pytest

from rede.agents.specialists import SpecialistSpec
from rede.agents.tools import ToolSpecialist, echo_tool
from rede.bus import Backlog, BusOptions, MemoryBus
from rede.errors import ClosedBusError, MessageTooLarge
from rede.protocol.messages import Envelope, ErrorPayload, Event, Task
from rede.protocol.topics import Topic
from rede.runtime.agent import AgentRunner

FAST = BusOptions(visibility_timeout_s=0.2, max_deliveries=3)


def task(n: int, run: str = "run1") -> Envelope:
    return Envelope(
        run_id=run,
        step_id=f"s{n}",
        sender="test",
        payload=Task(capability="research", instruction=f"item {n}"),
    )


TOPIC = Topic.task("research", "researcher")


async def drain(sub, timeout: float = 0.3) -> list[Envelope]:  # type: ignore[no-untyped-def]
    out = []
    while True:
        try:
            d = await sub.receive(timeout=timeout)
        except TimeoutError:
            return out
        await d.ack()
        out.append(d.envelope)


async def test_group_members_compete_each_envelope_to_one_member(bus_factory) -> None:
    bus = await bus_factory(FAST)
    a = await bus.subscribe(TOPIC, group="researcher", consumer="a")
    b = await bus.subscribe(TOPIC, group="researcher", consumer="b")
    for i in range(20):
        await bus.publish(TOPIC, task(i))
    got: dict[str, list[str]] = {"a": [], "b": []}

    async def worker(sub, name: str) -> None:  # type: ignore[no-untyped-def]
        while True:
            try:
                d = await sub.receive(timeout=0.3)
            except TimeoutError:
                return
            got[name].append(d.envelope.step_id)
            await d.ack()
            await asyncio.sleep(0)  # let the other member take its turn

    async with asyncio.TaskGroup() as tg:
        tg.create_task(worker(a, "a"))
        tg.create_task(worker(b, "b"))
    everything = got["a"] + got["b"]
    assert sorted(everything) == sorted(f"s{i}" for i in range(20))
    assert len(set(everything)) == 20, "an envelope went to two members of one group"
    assert got["a"] and got["b"], "one member did all the work"


async def test_each_group_receives_every_envelope(bus_factory) -> None:
    bus = await bus_factory(FAST)
    g1 = await bus.subscribe(TOPIC, group="one")
    g2 = await bus.subscribe(TOPIC, group="two")
    for i in range(5):
        await bus.publish(TOPIC, task(i))
    assert [e.step_id for e in await drain(g1)] == [f"s{i}" for i in range(5)]
    assert [e.step_id for e in await drain(g2)] == [f"s{i}" for i in range(5)]


async def test_group_created_after_publish_still_gets_the_backlog(bus_factory) -> None:
    bus = await bus_factory(FAST)
    for i in range(3):
        await bus.publish(TOPIC, task(i))
    late = await bus.subscribe(TOPIC, group="late")
    assert [e.step_id for e in await drain(late)] == ["s0", "s1", "s2"]


async def test_fanout_reaches_every_subscriber_from_subscription_on(bus_factory) -> None:
    bus = await bus_factory(FAST)
    topic = Topic.events()
    await bus.publish(topic, Envelope(sender="t", payload=Event(name="before")))
    s1 = await bus.subscribe(topic)
    s2 = await bus.subscribe(topic)
    for i in range(4):
        await bus.publish(topic, Envelope(sender="t", payload=Event(name=f"e{i}")))
    names1 = [e.payload.name for e in await drain(s1)]
    names2 = [e.payload.name for e in await drain(s2)]
    assert names1 == names2 == ["e0", "e1", "e2", "e3"]


async def test_unacknowledged_delivery_is_redelivered_to_another_member(bus_factory) -> None:
    bus = await bus_factory(FAST)
    crashed = await bus.subscribe(TOPIC, group="researcher", consumer="crashed")
    await bus.publish(TOPIC, task(1))
    first = await crashed.receive(timeout=2)
    assert first.delivery_count == 1
    # "crashed" never acknowledges; a live member takes the task over after the timeout
    survivor = await bus.subscribe(TOPIC, group="researcher", consumer="survivor")
    again = await survivor.receive(timeout=5)
    assert again.envelope.id == first.envelope.id
    assert again.delivery_count == 2
    await again.ack()
    with pytest.raises(TimeoutError):
        await survivor.receive(timeout=0.5)
    assert bus.stats.redelivered >= 1


async def test_a_touched_delivery_stays_with_its_live_holder(bus_factory) -> None:
    bus = await bus_factory(FAST)  # visibility timeout 0.2 s
    holder = await bus.subscribe(TOPIC, group="researcher", consumer="holder")
    other = await bus.subscribe(TOPIC, group="researcher", consumer="other")
    await bus.publish(TOPIC, task(1))
    held = await holder.receive(timeout=2)

    async def keep() -> None:
        while True:
            assert await held.touch()
            await asyncio.sleep(0.05)

    keeping = asyncio.create_task(keep())
    try:  # three visibility timeouts pass: the other member gets nothing
        with pytest.raises(TimeoutError):
            await other.receive(timeout=0.6)
    finally:
        keeping.cancel()
        await asyncio.gather(keeping, return_exceptions=True)
    # once the holder stops touching it, a live member takes it over; the stale holder's
    # touch then says it is no longer its own
    again = await other.receive(timeout=5)
    assert again.envelope.id == held.envelope.id
    assert again.delivery_count == 2
    assert not await held.touch()
    await again.ack()
    assert not await again.touch()


async def test_acknowledged_delivery_is_not_redelivered(bus_factory) -> None:
    bus = await bus_factory(FAST)
    sub = await bus.subscribe(TOPIC, group="researcher")
    await bus.publish(TOPIC, task(1))
    d = await sub.receive(timeout=2)
    await d.ack()
    with pytest.raises(TimeoutError):
        await sub.receive(timeout=0.6)


async def test_nack_gives_the_delivery_back_at_once(bus_factory) -> None:
    bus = await bus_factory(BusOptions(visibility_timeout_s=30))
    sub = await bus.subscribe(TOPIC, group="researcher")
    await bus.publish(TOPIC, task(1))
    d = await sub.receive(timeout=2)
    await d.nack()
    again = await sub.receive(timeout=5)
    assert again.envelope.id == d.envelope.id
    assert again.delivery_count == 2


async def test_poison_message_goes_to_dead_letters_after_max_deliveries(bus_factory) -> None:
    bus = await bus_factory(FAST)
    dead = await bus.subscribe(Topic.dead(), group="ops")
    sub = await bus.subscribe(TOPIC, group="researcher")
    await bus.publish(TOPIC, task(1))
    counts = []
    for _ in range(FAST.max_deliveries):
        d = await sub.receive(timeout=5)
        counts.append(d.delivery_count)  # never acknowledged
    assert counts == [1, 2, 3]
    with pytest.raises(TimeoutError):
        await sub.receive(timeout=0.8)
    letter = await dead.receive(timeout=5)
    assert isinstance(letter.envelope.payload, ErrorPayload)
    assert letter.envelope.payload.code == "max_deliveries"
    assert "item 1" in (letter.envelope.payload.raw or "")
    assert bus.stats.rejected["max_deliveries"] == 1


async def test_a_dead_lettered_task_is_answered_with_the_reason(bus_factory) -> None:
    bus = await bus_factory(FAST)
    replies = Topic.reply("run1")
    waiting = await bus.subscribe(replies, group="orchestrator")
    sub = await bus.subscribe(TOPIC, group="researcher")
    sent = task(1).model_copy(update={"reply_to": str(replies), "attempt": 2})
    await bus.publish(TOPIC, sent)
    for _ in range(FAST.max_deliveries):
        await sub.receive(timeout=5)  # each holder dies without acknowledging
    with pytest.raises(TimeoutError):
        await sub.receive(timeout=0.8)
    notice = (await waiting.receive(timeout=5)).envelope
    assert isinstance(notice.payload, ErrorPayload)
    assert notice.payload.code == "max_deliveries"
    assert "not acknowledged after 3 deliveries" in notice.payload.message
    assert (notice.parent_id, notice.step_id, notice.attempt) == (sent.id, "s1", 2)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"{not json", "invalid envelope"),
        (b'{"v": "rede/1", "sender": "x", "payload": {"kind": "task"}}', "payload.task.capability"),
        (
            b'{"v": "rede/1", "sender": "x", "payload": {"kind": "result", "confidence": 7}}',
            "confidence",
        ),
        (b'{"v": "rede/1", "sender": "x", "payload": {"kind": "teleport"}}', "payload"),
    ],
)
async def test_malformed_message_is_dead_lettered_with_the_field_named(
    bus_factory, raw: bytes, needle: str
) -> None:
    bus = await bus_factory(FAST)
    dead = await bus.subscribe(Topic.dead(), group="ops")
    sub = await bus.subscribe(TOPIC, group="researcher")
    await bus.publish_raw(TOPIC, raw)
    await bus.publish(TOPIC, task(2))
    d = await sub.receive(timeout=5)  # the consumer never sees the bad one
    assert d.envelope.step_id == "s2"
    letter = (await dead.receive(timeout=5)).envelope.payload
    assert letter.code == "malformed"
    assert needle in letter.message
    assert letter.raw is not None and letter.raw.startswith(raw.decode()[:5])
    assert bus.stats.dead_lettered == 1


async def test_oversized_envelope_is_refused_on_publish_and_dead_lettered_on_receipt(
    bus_factory,
) -> None:
    bus = await bus_factory(BusOptions(max_message_bytes=2_000, visibility_timeout_s=0.2))
    big = task(1)
    big.payload.instruction = "x" * 5_000
    with pytest.raises(MessageTooLarge, match="over the limit of 2000 bytes"):
        await bus.publish(TOPIC, big)
    dead = await bus.subscribe(Topic.dead(), group="ops")
    sub = await bus.subscribe(TOPIC, group="researcher")
    await bus.publish_raw(TOPIC, b'{"pad": "' + b"y" * 3000 + b'"}')
    with pytest.raises(TimeoutError):
        await sub.receive(timeout=0.5)
    letter = (await dead.receive(timeout=5)).envelope.payload
    assert letter.code == "too_large"


async def test_signed_bus_rejects_unsigned_and_forged_envelopes(bus_factory) -> None:
    opts = BusOptions(signing_key="s3cret", visibility_timeout_s=0.2)
    bus = await bus_factory(opts)
    dead = await bus.subscribe(Topic.dead(), group="ops")
    sub = await bus.subscribe(TOPIC, group="researcher")
    from rede.protocol.codec import Codec

    unsigned = Codec().encode(task(1))
    forged = Codec(signing_key="wrong").encode(task(2))
    await bus.publish_raw(TOPIC, unsigned)
    await bus.publish_raw(TOPIC, forged)
    await bus.publish(TOPIC, task(3))  # signed by the bus's own key
    d = await sub.receive(timeout=5)
    assert d.envelope.step_id == "s3"
    assert d.envelope.sig
    codes = [(await dead.receive(timeout=5)).envelope.payload for _ in range(2)]
    assert [c.code for c in codes] == ["signature", "signature"]
    assert "unsigned" in codes[0].message and "forged" in codes[1].message
    assert bus.stats.rejected["signature"] == 2


async def test_receive_times_out(bus_factory) -> None:
    bus = await bus_factory(FAST)
    sub = await bus.subscribe(TOPIC, group="researcher")
    with pytest.raises(TimeoutError):
        await sub.receive(timeout=0.2)


async def test_closed_subscription_ends_iteration(bus_factory) -> None:
    bus = await bus_factory(FAST)
    sub = await bus.subscribe(Topic.events())
    await sub.aclose()
    with pytest.raises(ClosedBusError):
        await sub.receive(timeout=1)
    assert [d async for d in sub] == []


async def test_delete_drops_a_topic(bus_factory) -> None:
    bus = await bus_factory(FAST)
    topic = Topic.reply("run-x")
    owner = await bus.subscribe(topic, group="orchestrator")
    await bus.publish(topic, task(1))
    await bus.delete(topic)
    with pytest.raises(ClosedBusError):  # its subscriptions in this process close
        await owner.receive(timeout=1)
    sub = await bus.subscribe(topic, group="orchestrator")
    with pytest.raises(TimeoutError):
        await sub.receive(timeout=0.3)


async def test_backlog_counts_waiting_and_pending_entries_per_group(bus_factory) -> None:
    bus = await bus_factory(FAST)
    assert await bus.backlog(TOPIC, "researcher") == Backlog()  # nothing published yet
    for i in range(3):
        await bus.publish(TOPIC, task(i))
    await asyncio.sleep(0.05)  # let the oldest entry age: only a lower bound is asserted
    # a group not created yet would receive the whole retained stream
    before = await bus.backlog(TOPIC, "researcher")
    assert (before.waiting, before.pending) == (3, 0)
    assert before.oldest_wait_s >= 0.04

    sub = await bus.subscribe(TOPIC, group="researcher")
    await bus.subscribe(TOPIC, group="auditor")
    first = await sub.receive(timeout=5)
    held = await bus.backlog(TOPIC, "researcher")
    assert (held.waiting, held.pending, held.unfinished) == (2, 1, 3)
    assert held.oldest_wait_s >= 0.04  # the second entry, published with the first
    await first.ack()
    assert [e.step_id for e in await drain(sub)] == ["s1", "s2"]
    assert await bus.backlog(TOPIC, "researcher") == Backlog()
    # another group's backlog is its own
    other = await bus.backlog(TOPIC, "auditor")
    assert (other.waiting, other.pending) == (3, 0)


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

EPHEMERAL_TTL = 0.3
PAST_TTL = 0.45


def event(name: str) -> Envelope:
    return Envelope(sender="test", payload=Event(name=name))


async def retained(bus, topic: Topic) -> int:  # type: ignore[no-untyped-def]
    return (await bus.backlog(topic, "nobody-reads-this")).waiting


def test_reply_and_inbox_topics_are_ephemeral() -> None:
    assert Topic.reply("r1").ephemeral and Topic.inbox("a-1").ephemeral
    assert not any(
        t.ephemeral
        for t in (TOPIC, Topic.bids("x"), Topic.registry(), Topic.events(), Topic.dead())
    )
    with pytest.raises(ValueError, match="ephemeral_ttl_s"):
        BusOptions(ephemeral_ttl_s=0)


async def test_a_publish_never_makes_an_ephemeral_stream(bus_factory) -> None:
    """No subscriber, no stream: the message is dropped and counted, the publisher carries
    on. A durable topic's publish still makes its stream."""
    bus = await bus_factory(BusOptions(ephemeral_ttl_s=EPHEMERAL_TTL))
    reply, inbox = Topic.reply("run-nobody"), Topic.inbox("agent-nobody")
    assert await bus.publish(reply, event("lost")) == ""
    assert await bus.publish(inbox, event("lost")) == ""
    assert await bus.publish(TOPIC, task(1)) != ""
    assert (bus.stats.dropped_no_stream, bus.stats.published) == (2, 1)
    assert await bus.backlog(reply, "orchestrator") == Backlog()
    assert [await retained(bus, t) for t in (reply, inbox, TOPIC)] == [0, 0, 1]
    late = await bus.subscribe(reply, group="orchestrator")  # starts from nothing
    with pytest.raises(TimeoutError):
        await late.receive(timeout=0.1)


async def test_a_late_reply_to_a_deleted_run_topic_is_dropped_and_leaves_nothing(
    bus_factory,
) -> None:
    bus = await bus_factory(BusOptions(ephemeral_ttl_s=EPHEMERAL_TTL))
    reply = Topic.reply("run-over")
    sub = await bus.subscribe(reply, group="orchestrator")
    await bus.publish(reply, event("answer"))
    await (await sub.receive(timeout=5)).ack()
    await sub.aclose()
    await bus.delete(reply)  # the run ended
    # a step still in flight answers anyway, and a task given up on is answered by the bus
    assert await bus.publish(reply, event("late")) == ""
    await bus._give_up(
        TOPIC, bus.codec.encode(task(1).model_copy(update={"reply_to": str(reply)})), "gone"
    )
    assert bus.stats.dropped_no_stream == 2
    assert await retained(bus, reply) == 0


async def test_a_subscribed_ephemeral_topic_never_expires_while_its_subscriber_lives(
    bus_factory,
) -> None:
    """Idle for three TTLs, one reader not receiving at all and one blocked in receive:
    both streams stay, and what is published next reaches them. The inbox is subscribed
    fan-out only (as an agent's is): a fan-out subscriber makes and keeps its stream too."""
    bus = await bus_factory(BusOptions(ephemeral_ttl_s=EPHEMERAL_TTL))
    reply, inbox = Topic.reply("run-long"), Topic.inbox("agent-long")
    group = await bus.subscribe(reply, group="orchestrator")
    fan = await bus.subscribe(inbox)
    await bus.publish(reply, event("before"))
    await bus.publish(inbox, event("before"))
    for sub in (group, fan):
        got = await sub.receive(timeout=5)
        assert got.envelope.payload.name == "before"
        await got.ack()
    blocked = asyncio.create_task(fan.receive(timeout=5))
    await asyncio.sleep(3 * EPHEMERAL_TTL)
    await bus.publish(reply, event("after"))
    await bus.publish(inbox, event("after"))
    assert bus.stats.dropped_no_stream == 0
    assert (await group.receive(timeout=5)).envelope.payload.name == "after"
    assert (await blocked).envelope.payload.name == "after"


async def test_an_ephemeral_topic_its_subscribers_left_undeleted_expires(bus_factory) -> None:
    """A subscriber that closes without deleting (a killed owner's) keeps nothing alive: the
    stream outlives the last one by the TTL at most, and publishes do not extend it."""
    bus = await bus_factory(BusOptions(ephemeral_ttl_s=EPHEMERAL_TTL))
    reply, inbox = Topic.reply("run-gone"), Topic.inbox("agent-gone")
    first = await bus.subscribe(reply, group="orchestrator")
    second = await bus.subscribe(reply, group="orchestrator")
    fan = await bus.subscribe(inbox)
    await first.aclose()  # one member left: the other keeps the stream
    await asyncio.sleep(PAST_TTL)
    assert await bus.publish(reply, event("kept")) != ""
    await second.aclose()
    await fan.aclose()
    for _ in range(int(PAST_TTL / 0.05)):  # publishing all the while does not keep them
        await bus.publish(reply, event("still there?"))
        await bus.publish(inbox, event("still there?"))
        await asyncio.sleep(0.05)
    assert bus.stats.dropped_no_stream > 0
    assert [await retained(bus, t) for t in (reply, inbox)] == [0, 0]
    assert await bus.publish(inbox, event("late")) == ""


def echo_spec() -> SpecialistSpec:
    return SpecialistSpec(
        name="echoer", capabilities=["write"], specialist=ToolSpecialist("echo", echo_tool)
    )


async def test_a_clean_agent_stop_deletes_its_inbox_and_a_killed_ones_expires(
    bus_factory,
) -> None:
    bus = await bus_factory(BusOptions(ephemeral_ttl_s=EPHEMERAL_TTL))
    inboxes = []
    for crash in (False, True):
        runner = AgentRunner(bus, echo_spec(), heartbeat_s=3600)
        serving = asyncio.create_task(runner.run())
        await runner.ready.wait()
        inbox = Topic.inbox(runner.id)
        await bus.publish(inbox, event("an answer"))
        assert await retained(bus, inbox) == 1
        if crash:
            runner.kill()
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        inboxes.append(inbox)
    clean, killed = inboxes
    assert await retained(bus, clean) == 0
    assert await bus.publish(clean, event("late")) == ""
    assert await retained(bus, killed) == 1  # no goodbye: it stays until its TTL
    await asyncio.sleep(PAST_TTL)
    assert await retained(bus, killed) == 0


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


async def test_receivers_cannot_change_the_envelope_another_receiver_gets(bus_factory) -> None:
    # the in-process bus hands every receiver the one envelope object: it must be frozen
    bus = await bus_factory(FAST)
    first, second = await bus.subscribe(Topic.events()), await bus.subscribe(Topic.events())
    await bus.publish(Topic.events(), task(1))
    got = await first.receive(timeout=1)
    with pytest.raises(ValueError, match="frozen"):
        got.envelope.step_id = "changed"  # type: ignore[misc]
    assert (await second.receive(timeout=1)).envelope.step_id == "s1"
