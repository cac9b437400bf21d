"""The bus contract as a public conformance suite: ``await check_bus(make_bus)``.

Every :class:`~rede.bus.Bus` implementation must pass every check here (memory and Redis do,
in Rede's own test suite); a third-party bus can be held to the same contract, in the spirit
of ``trio.testing.check_one_way_stream``::

    from rede.testing.bus_contract import check_bus

    async def test_my_bus_keeps_the_contract():
        await check_bus(lambda options=None: MyBus.connect(url, options))

``make_bus(options)`` returns (or awaits to) a new bus with those :class:`BusOptions` (None:
defaults), on a clean slate: topics of earlier buses must not be visible. The suite closes
every bus it made. A check that fails raises ``AssertionError`` naming it. The checks use
short timeouts (visibility 0.2 s, an ephemeral TTL of 0.3 s); the whole suite takes a few
seconds. Each check is also importable on its own (:data:`CHECKS`), so a test suite can
report them one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
from collections.abc import Awaitable, Callable, Iterator

from rede.agents.specialists import SpecialistSpec
from rede.agents.tools import ToolSpecialist, echo_tool
from rede.bus import Backlog, Bus, BusOptions
from rede.errors import ClosedBusError, MessageTooLarge
from rede.protocol.messages import Envelope, ErrorPayload, Event, Task
from rede.protocol.topics import Topic
from rede.runtime.agent import AgentRunner

MakeBus = Callable[[BusOptions | None], Bus | Awaitable[Bus]]
"""``make_bus(options)``: a new bus with those options (None: defaults)."""


@contextlib.contextmanager
def _raises(kind: type[BaseException], match: str | None = None) -> Iterator[None]:
    """Like ``pytest.raises``, without depending on pytest."""
    try:
        yield
    except kind as exc:
        if match is not None and not re.search(match, str(exc)):
            raise AssertionError(f"{kind.__name__} {str(exc)!r} does not match {match!r}") from exc
    else:
        raise AssertionError(f"expected {kind.__name__}, nothing was raised")


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


async def check_group_members_compete_each_envelope_to_one_member(make_bus: MakeBus) -> None:
    bus = await make_bus(FAST)
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


async def check_each_group_receives_every_envelope(make_bus: MakeBus) -> None:
    bus = await make_bus(FAST)
    g1 = await bus.subscribe(TOPIC, group="one")
    g2 = await bus.subscribe(TOPIC, group="two")
    for i in range(5):
        await bus.publish(TOPIC, task(i))
    assert [e.step_id for e in await drain(g1)] == [f"s{i}" for i in range(5)]
    assert [e.step_id for e in await drain(g2)] == [f"s{i}" for i in range(5)]


async def check_group_created_after_publish_still_gets_the_backlog(make_bus: MakeBus) -> None:
    bus = await make_bus(FAST)
    for i in range(3):
        await bus.publish(TOPIC, task(i))
    late = await bus.subscribe(TOPIC, group="late")
    assert [e.step_id for e in await drain(late)] == ["s0", "s1", "s2"]


async def check_fanout_reaches_every_subscriber_from_subscription_on(make_bus: MakeBus) -> None:
    bus = await make_bus(FAST)
    topic = Topic.events()
    await bus.publish(topic, Envelope(sender="t", payload=Event(name="before")))
    s1 = await bus.subscribe(topic)
    s2 = await bus.subscribe(topic)
    for i in range(4):
        await bus.publish(topic, Envelope(sender="t", payload=Event(name=f"e{i}")))
    names1 = [e.payload.name for e in await drain(s1)]
    names2 = [e.payload.name for e in await drain(s2)]
    assert names1 == names2 == ["e0", "e1", "e2", "e3"]


async def check_unacknowledged_delivery_is_redelivered_to_another_member(make_bus: MakeBus) -> None:
    bus = await make_bus(FAST)
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
    with _raises(TimeoutError):
        await survivor.receive(timeout=0.5)
    assert bus.stats.redelivered >= 1


async def check_a_touched_delivery_stays_with_its_live_holder(make_bus: MakeBus) -> None:
    bus = await make_bus(FAST)  # visibility timeout 0.2 s
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
        with _raises(TimeoutError):
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


async def check_acknowledged_delivery_is_not_redelivered(make_bus: MakeBus) -> None:
    bus = await make_bus(FAST)
    sub = await bus.subscribe(TOPIC, group="researcher")
    await bus.publish(TOPIC, task(1))
    d = await sub.receive(timeout=2)
    await d.ack()
    with _raises(TimeoutError):
        await sub.receive(timeout=0.6)


async def check_nack_gives_the_delivery_back_at_once(make_bus: MakeBus) -> None:
    bus = await make_bus(BusOptions(visibility_timeout_s=30))
    sub = await bus.subscribe(TOPIC, group="researcher")
    await bus.publish(TOPIC, task(1))
    d = await sub.receive(timeout=2)
    await d.nack()
    again = await sub.receive(timeout=5)
    assert again.envelope.id == d.envelope.id
    assert again.delivery_count == 2


async def check_poison_message_goes_to_dead_letters_after_max_deliveries(make_bus: MakeBus) -> None:
    bus = await make_bus(FAST)
    dead = await bus.subscribe(Topic.dead(), group="ops")
    sub = await bus.subscribe(TOPIC, group="researcher")
    await bus.publish(TOPIC, task(1))
    counts = []
    for _ in range(FAST.max_deliveries):
        d = await sub.receive(timeout=5)
        counts.append(d.delivery_count)  # never acknowledged
    assert counts == [1, 2, 3]
    with _raises(TimeoutError):
        await sub.receive(timeout=0.8)
    letter = await dead.receive(timeout=5)
    assert isinstance(letter.envelope.payload, ErrorPayload)
    assert letter.envelope.payload.code == "max_deliveries"
    assert "item 1" in (letter.envelope.payload.raw or "")
    assert bus.stats.rejected["max_deliveries"] == 1


async def check_a_dead_lettered_task_is_answered_with_the_reason(make_bus: MakeBus) -> None:
    bus = await make_bus(FAST)
    replies = Topic.reply("run1")
    waiting = await bus.subscribe(replies, group="orchestrator")
    sub = await bus.subscribe(TOPIC, group="researcher")
    sent = task(1).model_copy(update={"reply_to": str(replies), "attempt": 2})
    await bus.publish(TOPIC, sent)
    for _ in range(FAST.max_deliveries):
        await sub.receive(timeout=5)  # each holder dies without acknowledging
    with _raises(TimeoutError):
        await sub.receive(timeout=0.8)
    notice = (await waiting.receive(timeout=5)).envelope
    assert isinstance(notice.payload, ErrorPayload)
    assert notice.payload.code == "max_deliveries"
    assert "not acknowledged after 3 deliveries" in notice.payload.message
    assert (notice.parent_id, notice.step_id, notice.attempt) == (sent.id, "s1", 2)


MALFORMED = [
    (b"{not json", "invalid envelope"),
    (b'{"v": "rede/1", "sender": "x", "payload": {"kind": "task"}}', "payload.task.capability"),
    (
        b'{"v": "rede/1", "sender": "x", "payload": {"kind": "result", "confidence": 7}}',
        "confidence",
    ),
    (b'{"v": "rede/1", "sender": "x", "payload": {"kind": "teleport"}}', "payload"),
]


async def check_malformed_message_is_dead_lettered_with_the_field_named(make_bus: MakeBus) -> None:
    for raw, needle in MALFORMED:
        await _one_malformed(await make_bus(FAST), raw, needle)


async def _one_malformed(bus: Bus, raw: bytes, needle: str) -> None:
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


async def check_oversized_envelope_is_refused_on_publish_and_dead_lettered_on_receipt(
    make_bus: MakeBus,
) -> None:
    bus = await make_bus(BusOptions(max_message_bytes=2_000, visibility_timeout_s=0.2))
    big = task(1)
    big.payload.instruction = "x" * 5_000
    with _raises(MessageTooLarge, match="over the limit of 2000 bytes"):
        await bus.publish(TOPIC, big)
    dead = await bus.subscribe(Topic.dead(), group="ops")
    sub = await bus.subscribe(TOPIC, group="researcher")
    await bus.publish_raw(TOPIC, b'{"pad": "' + b"y" * 3000 + b'"}')
    with _raises(TimeoutError):
        await sub.receive(timeout=0.5)
    letter = (await dead.receive(timeout=5)).envelope.payload
    assert letter.code == "too_large"


async def check_signed_bus_rejects_unsigned_and_forged_envelopes(make_bus: MakeBus) -> None:
    opts = BusOptions(signing_key="s3cret", visibility_timeout_s=0.2)
    bus = await make_bus(opts)
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


async def check_receive_times_out(make_bus: MakeBus) -> None:
    bus = await make_bus(FAST)
    sub = await bus.subscribe(TOPIC, group="researcher")
    with _raises(TimeoutError):
        await sub.receive(timeout=0.2)


async def check_closed_subscription_ends_iteration(make_bus: MakeBus) -> None:
    bus = await make_bus(FAST)
    sub = await bus.subscribe(Topic.events())
    await sub.aclose()
    with _raises(ClosedBusError):
        await sub.receive(timeout=1)
    assert [d async for d in sub] == []


async def check_delete_drops_a_topic(make_bus: MakeBus) -> None:
    bus = await make_bus(FAST)
    topic = Topic.reply("run-x")
    owner = await bus.subscribe(topic, group="orchestrator")
    await bus.publish(topic, task(1))
    await bus.delete(topic)
    with _raises(ClosedBusError):  # its subscriptions in this process close
        await owner.receive(timeout=1)
    sub = await bus.subscribe(topic, group="orchestrator")
    with _raises(TimeoutError):
        await sub.receive(timeout=0.3)


async def check_backlog_counts_waiting_and_pending_entries_per_group(make_bus: MakeBus) -> None:
    bus = await make_bus(FAST)
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


EPHEMERAL_TTL = 0.3
PAST_TTL = 0.45


def event(name: str) -> Envelope:
    return Envelope(sender="test", payload=Event(name=name))


async def retained(bus, topic: Topic) -> int:  # type: ignore[no-untyped-def]
    return (await bus.backlog(topic, "nobody-reads-this")).waiting


async def check_a_publish_never_makes_an_ephemeral_stream(make_bus: MakeBus) -> None:
    """No subscriber, no stream: the message is dropped and counted, the publisher carries
    on. A durable topic's publish still makes its stream."""
    bus = await make_bus(BusOptions(ephemeral_ttl_s=EPHEMERAL_TTL))
    reply, inbox = Topic.reply("run-nobody"), Topic.inbox("agent-nobody")
    assert await bus.publish(reply, event("lost")) == ""
    assert await bus.publish(inbox, event("lost")) == ""
    assert await bus.publish(TOPIC, task(1)) != ""
    assert (bus.stats.dropped_no_stream, bus.stats.published) == (2, 1)
    assert await bus.backlog(reply, "orchestrator") == Backlog()
    assert [await retained(bus, t) for t in (reply, inbox, TOPIC)] == [0, 0, 1]
    late = await bus.subscribe(reply, group="orchestrator")  # starts from nothing
    with _raises(TimeoutError):
        await late.receive(timeout=0.1)


async def check_a_late_reply_to_a_deleted_run_topic_is_dropped_and_leaves_nothing(
    make_bus: MakeBus,
) -> None:
    bus = await make_bus(BusOptions(ephemeral_ttl_s=EPHEMERAL_TTL))
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


async def check_a_subscribed_ephemeral_topic_never_expires_while_its_subscriber_lives(
    make_bus: MakeBus,
) -> None:
    """Idle for three TTLs, one reader not receiving at all and one blocked in receive:
    both streams stay, and what is published next reaches them. The inbox is subscribed
    fan-out only (as an agent's is): a fan-out subscriber makes and keeps its stream too."""
    bus = await make_bus(BusOptions(ephemeral_ttl_s=EPHEMERAL_TTL))
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


async def check_an_ephemeral_topic_its_subscribers_left_undeleted_expires(
    make_bus: MakeBus,
) -> None:
    """A subscriber that closes without deleting (a killed owner's) keeps nothing alive: the
    stream outlives the last one by the TTL at most, and publishes do not extend it."""
    bus = await make_bus(BusOptions(ephemeral_ttl_s=EPHEMERAL_TTL))
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


async def check_a_clean_agent_stop_deletes_its_inbox_and_a_killed_ones_expires(
    make_bus: MakeBus,
) -> None:
    bus = await make_bus(BusOptions(ephemeral_ttl_s=EPHEMERAL_TTL))
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


async def check_receivers_cannot_change_the_envelope_another_receiver_gets(
    make_bus: MakeBus,
) -> None:
    # the in-process bus hands every receiver the one envelope object: it must be frozen
    bus = await make_bus(FAST)
    first, second = await bus.subscribe(Topic.events()), await bus.subscribe(Topic.events())
    await bus.publish(Topic.events(), task(1))
    got = await first.receive(timeout=1)
    with _raises(ValueError, match="frozen"):
        got.envelope.step_id = "changed"  # type: ignore[misc]
    assert (await second.receive(timeout=1)).envelope.step_id == "s1"


async def check_a_kept_value_is_claimed_once_and_expires(make_bus: MakeBus) -> None:
    """``claim`` keeps a value unless one is kept (two claimants never both win);
    ``remember`` replaces it; both expire after their TTL (idempotent replies)."""
    bus = await make_bus(FAST)
    claims = await asyncio.gather(*(bus.claim("k1", b"pending", 5) for _ in range(6)))
    assert claims.count(None) == 1 and set(claims) == {None, b"pending"}, claims
    await bus.remember("k1", b"answer", 5)
    assert await bus.claim("k1", b"pending", 5) == b"answer"
    await bus.remember("k2", b"short", 0.1)
    await asyncio.sleep(0.25)
    assert await bus.claim("k2", b"again", 5) is None


CHECKS: list[Callable[[MakeBus], Awaitable[None]]] = [
    check
    for name, check in sorted(globals().items())
    if name.startswith("check_") and name != "check_bus"
]
"""Every check of the contract, each taking ``make_bus``."""


class _Made:
    """A ``make_bus`` that remembers what it made, to close it after a check."""

    def __init__(self, make_bus: MakeBus) -> None:
        self._make = make_bus
        self.buses: list[Bus] = []

    async def __call__(self, options: BusOptions | None = None) -> Bus:
        made = self._make(options)
        bus = await made if inspect.isawaitable(made) else made
        self.buses.append(bus)
        return bus

    async def close(self) -> None:
        for bus in self.buses:
            with contextlib.suppress(Exception):
                await bus.aclose()


async def check_bus(make_bus: MakeBus) -> None:
    """Run every check against buses from ``make_bus``; AssertionError names the first that
    fails. Buses the checks make are closed after each check."""
    for check in CHECKS:
        made = _Made(make_bus)
        try:
            await check(made)
        except AssertionError as exc:
            raise AssertionError(f"{check.__name__}: {exc}") from exc
        finally:
            await made.close()


__all__ = ["CHECKS", "MakeBus", "check_bus"]
