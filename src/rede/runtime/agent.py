"""The agent runtime: one running instance of a specialist on a bus.

An :class:`AgentRunner` consumes ``rede.task.<capability>.<agent>`` in the consumer group
``<agent>`` (its replicas compete for work), runs the specialist, publishes the reply to the
task's ``reply_to`` topic and only then acknowledges, so a crash mid-task leaves the task
pending on the bus for another replica or a re-route. While a task runs, its delivery is
touched within every visibility timeout, so a slow live replica keeps it and only a dead or
stalled one loses it.

A task's ``deadline`` holds while it runs too: at the deadline the specialist's work is
cancelled, a ``failed`` result saying the deadline passed is sent and the task acknowledged,
so its slot serves the next task; and no touch renews a delivery past its deadline (a
specialist that will not stop loses it to another replica).

A task delivered again (its first holder died or stalled) is announced to the run with a
``redelivered`` event before it is redone, so the run's ledger shows it. It heartbeats its
card to the registry (and stores it, for ``card_ttl_s``, on buses that keep cards) and says
goodbye when stopped cleanly; a clean stop also deletes its inbox topic (a killed one's
expires after the bus's ``ephemeral_ttl_s``). A specialist's exception becomes a ``failed``
result naming the error; it is never only logged. A task for a capability the agent does
not serve (published to its stream by someone else) is answered ``failed``, never run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from rede.agents.bidding import make_bid
from rede.agents.specialists import SpecialistSpec
from rede.bus import Bus, Delivery, Subscription
from rede.errors import BusError, ClosedBusError, ProtocolError
from rede.protocol.messages import (
    AgentCard,
    BidRequest,
    Critique,
    Envelope,
    Event,
    Heartbeat,
    InputReply,
    InputRequest,
    Result,
    Task,
    Usage,
    new_id,
)
from rede.protocol.topics import Topic
from rede.runtime._lease import Lease
from rede.runtime._outlast import resubscribing, until_done
from rede.runtime.once import OnceOnly

log = logging.getLogger("rede.runtime")


class _Context:
    def __init__(self, runner: AgentRunner, envelope: Envelope) -> None:
        self._runner = runner
        self._envelope = envelope

    async def ask(self, capability: str, question: str) -> str:
        return await self._runner.ask(self._envelope, capability, question)


def _loop_time(deadline: datetime | None) -> float | None:
    """A wall-clock deadline as the running loop's time (None: no deadline)."""
    if deadline is None:
        return None
    left = (deadline - datetime.now(UTC)).total_seconds()
    return asyncio.get_running_loop().time() + left


def _overrun(env: Envelope, task: Task, name: str) -> str:
    deadline = env.deadline.isoformat() if env.deadline is not None else "none"
    limit = f"the task's deadline ({deadline})"
    if task.timeout_s is not None:
        limit += f" or its {task.timeout_s:g}s of work"
    return f"{limit} passed while {name!r} worked on it; its work was cancelled"


def reply_topic(text: str) -> Topic:
    """Where a task's answer may go: a reply or inbox stream, never another agent's task
    stream or any other topic (an injected task must not make an agent write there)."""
    topic = Topic.from_str(text)
    if topic.kind not in ("reply", "inbox"):
        raise ValueError(f"{text!r} is not a reply or inbox topic")
    return topic


class AgentRunner:
    def __init__(
        self,
        bus: Bus,
        spec: SpecialistSpec,
        *,
        instance_id: str | None = None,
        heartbeat_s: float = 2.0,
        card_ttl_s: float = 10.0,
        ask_timeout_s: float = 60.0,
    ) -> None:
        self.bus = bus
        self.spec = spec
        self.id = instance_id or new_id(f"{spec.name}-")
        self.heartbeat_s = heartbeat_s
        self.card_ttl_s = card_ttl_s
        self.ask_timeout_s = ask_timeout_s
        self.in_flight = 0
        self.handled = 0
        self._slots = asyncio.Semaphore(spec.concurrency)
        self._crashed = False
        self._asks: dict[str, asyncio.Future[InputReply]] = {}
        self.ready = asyncio.Event()
        self.once = OnceOnly(bus, self.id)
        """Answers a task sent again under the same idempotency key once (a resumed run)."""
        self.bidder = make_bid
        """Answers calls for bids (``routing.strategy: auction``); None: never bids."""

    def card(self) -> AgentCard:
        s = self.spec
        return AgentCard(
            id=self.id,
            name=s.name,
            capabilities=s.capabilities,
            model=s.specialist.model_name,
            kind="tool" if s.specialist.kind == "tool" else "llm",
            price_in_per_1k=s.price_in_per_1k,
            price_out_per_1k=s.price_out_per_1k,
            context_window=s.context_window,
            quality=s.quality,
            tier=s.tier,
            load=self.in_flight,
            concurrency=s.concurrency,
            simulated=s.specialist.simulated,
        )

    async def _heartbeat(self, stopping: bool = False) -> None:
        card = self.card()
        if stopping:  # drop the stored card before the goodbye: see Registry.follow
            await self.bus.drop_card(self.id)
        env = Envelope(sender=self.id, payload=Heartbeat(card=card, stopping=stopping))
        await self.bus.publish(Topic.registry(), env)
        if not stopping:
            await self.bus.store_card(card, self.card_ttl_s)

    async def run(self) -> None:
        """Serve until cancelled. A clean stop tells the registry; a :meth:`kill` does not."""
        try:
            async with asyncio.TaskGroup() as tg:
                subs = [
                    await self.bus.subscribe(
                        Topic.task(cap, self.spec.name), group=self.spec.name, consumer=self.id
                    )
                    for cap in self.spec.capabilities
                ]
                inbox = await self.bus.subscribe(Topic.inbox(self.id))
                bids = [await self.bus.subscribe(Topic.bids(c)) for c in self.spec.capabilities]
                # announced before it takes a task: a reply counts only from a known replica
                await self._heartbeat()
                for sub in subs:
                    tg.create_task(self._keep(sub, functools.partial(self._consume, tg=tg)))
                for sub in bids:
                    tg.create_task(self._keep(sub, self._answer_bids))
                tg.create_task(self._keep(inbox, self._read_inbox))
                tg.create_task(self._heartbeats())
                self.ready.set()
        except BaseExceptionGroup as group:  # the TaskGroup wraps every error in a group
            closed, rest = group.split(ClosedBusError)
            if closed is None:
                raise
            if rest is not None:
                raise rest from None
            # the bus closed: stop serving quietly
        finally:
            if not self._crashed:
                await asyncio.shield(self._goodbye())

    async def _goodbye(self) -> None:
        """A clean stop: tell the registry, then drop the inbox (its reader has stopped, as
        the task group has ended). Best effort: the bus may be closed or unreachable, and then
        the registry's expiry and the inbox's time to live clean up instead."""
        with contextlib.suppress(Exception):
            await self._heartbeat(stopping=True)
        with contextlib.suppress(Exception):
            await self.bus.delete(Topic.inbox(self.id))

    def kill(self) -> None:
        """For fault injection: the next cancellation behaves like a crash (no goodbye)."""
        self._crashed = True

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self._heartbeat()
            except ClosedBusError:
                raise
            except BusError as exc:  # the bus is away: the registry stops ageing cards then
                log.warning("agent %s could not heartbeat: %s", self.id, exc)

    async def _keep(
        self, sub: Subscription, serve: Callable[[Subscription], Awaitable[None]]
    ) -> None:
        """Serve a subscription, subscribing again whenever the bus fails under it."""
        topic, group = sub.topic, sub.group
        consumer = self.id if group is not None else None
        await resubscribing(
            sub,
            lambda: self.bus.subscribe(topic, group=group, consumer=consumer),
            serve,
            f"agent {self.id} reading {topic}",
        )

    async def _consume(self, sub: Subscription, tg: asyncio.TaskGroup) -> None:
        while True:
            await self._slots.acquire()
            try:
                delivery = await sub.receive()
            except BaseException:
                self._slots.release()
                raise
            self.in_flight += 1  # counted from receipt: a spawner stops only idle replicas
            tg.create_task(self._handle(delivery))

    async def _handle(self, delivery: Delivery) -> None:
        try:
            env = delivery.envelope
            if not isinstance(env.payload, Task) or not env.reply_to:
                await self._dead_letter(delivery, "not a task with a reply_to topic")
                return
            try:
                topic = reply_topic(env.reply_to)
            except ValueError as exc:
                reason = f"task with an invalid reply_to: {exc}"
                await self._dead_letter(delivery, reason, "malformed")
                return
            if delivery.delivery_count > 1:
                note = Event(
                    name="redelivered",
                    data={"delivery_count": delivery.delivery_count, "topic": str(delivery.topic)},
                )
                await self._publish(topic, env.reply(note, sender=self.id))
            until = await self._started(env, topic)
            every = self.bus.options.visibility_timeout_s / 3
            lease = Lease(delivery, every, until, self.once.renewals)
            try:
                reply_payload = await self._run_task(env, until)
            finally:
                await lease.end()
            reply = env.reply(reply_payload, sender=self.id)
            try:
                await self._publish(topic, reply)
            except ProtocolError as exc:  # e.g. the result is over the size limit
                failed = Result(
                    status="failed",
                    error=f"reply not sendable: {exc}",
                    usage=getattr(reply_payload, "usage", Usage()),
                )
                await self._publish(topic, env.reply(failed, sender=self.id))
            await until_done(delivery.ack, f"acknowledging task {env.id}")
            self.handled += 1
        finally:
            self.in_flight -= 1
            self._slots.release()

    async def _started(self, env: Envelope, topic: Topic) -> float | None:
        """When this task's work must end (its deadline, or its ``timeout_s`` from now);
        a task that waited for a slot tells its run it has started, so the run times the
        work from now and not the wait (see :mod:`rede.orchestration.waits`)."""
        until = _loop_time(env.deadline)
        task = env.payload
        assert isinstance(task, Task)
        if task.timeout_s is None:
            return until
        now = asyncio.get_running_loop().time()
        if (datetime.now(UTC) - env.created_at).total_seconds() > min(1.0, task.timeout_s / 4):
            note = Event(name="started", data={"agent": self.id})
            await self._publish(topic, env.reply(note, sender=self.id))
        work = now + task.timeout_s
        return work if until is None else min(until, work)

    async def _run_task(self, env: Envelope, until: float | None):  # type: ignore[no-untyped-def]
        task = env.payload
        assert isinstance(task, Task)
        if until is not None and until <= asyncio.get_running_loop().time():
            return Result(status="failed", error="the task's deadline passed before it started")
        if task.capability not in self.spec.capabilities:  # sent to the wrong stream: refused
            served = ", ".join(self.spec.capabilities)
            error = f"agent {self.spec.name!r} serves {served}, not {task.capability!r}"
            return Result(status="failed", error=error)
        return await self.once.run(
            task.idempotency_key, env.deadline, lambda: self._do(env, task, until)
        )

    async def _do(self, env: Envelope, task: Task, until: float | None) -> Result | Critique:
        scope = asyncio.timeout_at(until)
        try:
            async with scope:
                reply = await self.spec.specialist.handle(task, _Context(self, env))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if scope.expired():
                return Result(status="failed", error=_overrun(env, task, self.spec.name))
            return Result(status="failed", error=f"{type(exc).__name__}: {exc}")
        if not isinstance(reply, Result | Critique):
            return Result(
                status="failed",
                error=f"specialist {self.spec.name!r} returned {type(reply).__name__}, "
                "not a Result or a Critique",
            )
        return reply

    async def _publish(self, topic: Topic, env: Envelope) -> None:
        """Publish, outlasting any bus outage: the task stays unacknowledged meanwhile, so
        if this process dies the bus gives it to another replica."""
        await until_done(lambda: self.bus.publish(topic, env), f"publishing to {topic}")

    async def _dead_letter(
        self, delivery: Delivery, reason: str, code: str = "unexpected_kind"
    ) -> None:
        raw = self.bus.codec.encode(delivery.envelope)
        await until_done(
            lambda: self.bus._dead_letter(delivery.topic, raw, code, reason), "dead-lettering"
        )
        await until_done(delivery.ack, "acknowledging a dead letter")

    # ------------------------------------------------------------------ input requests

    async def ask(self, task_env: Envelope, capability: str, question: str) -> str:
        """Ask another capability a question mid-task; the run's orchestrator routes it."""
        if not task_env.reply_to:
            raise RuntimeError("this task has no orchestrator to route a question through")
        request = task_env.reply(
            InputRequest(capability=capability, question=question),
            sender=self.id,
            reply_to=str(Topic.inbox(self.id)),
        )
        future: asyncio.Future[InputReply] = asyncio.get_running_loop().create_future()
        self._asks[request.id] = future
        try:
            await self.bus.publish(Topic.from_str(task_env.reply_to), request)
            async with asyncio.timeout(self.ask_timeout_s):
                reply = await future
        finally:
            self._asks.pop(request.id, None)
        if reply.error:
            raise RuntimeError(f"question to {capability!r} failed: {reply.error}")
        return reply.answer

    async def _read_inbox(self, sub: Subscription) -> None:
        async for delivery in sub:
            payload = delivery.envelope.payload
            future = self._asks.get(delivery.envelope.parent_id or "")
            if isinstance(payload, InputReply) and future is not None and not future.done():
                future.set_result(payload)
            await delivery.ack()

    # ------------------------------------------------------------------ auctions

    async def _answer_bids(self, sub: Subscription) -> None:
        """Bid on calls for bids (see :mod:`rede.routing.auction`) while the deadline allows."""
        async for delivery in sub:
            env = delivery.envelope
            request = env.payload
            if not isinstance(request, BidRequest) or self.bidder is None:
                continue
            if env.deadline is not None and env.deadline < datetime.now(UTC):
                continue  # too late to count
            try:
                topic = reply_topic(env.reply_to or "")
            except ValueError as exc:
                await self._dead_letter(delivery, f"call for bids with no reply topic: {exc}")
                continue
            bid = self.bidder(
                self.card(), request, queue=self.in_flight, concurrency=self.spec.concurrency
            )
            if bid is not None:
                await self.bus.publish(topic, env.reply(bid, sender=self.id))
