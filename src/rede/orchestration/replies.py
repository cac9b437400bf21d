"""The reply reader: every envelope that comes back to an orchestrator's runs.

An orchestrator has one reply topic (``rede.reply.<orchestrator id>``) and one reader for
all its live runs (:class:`SharedReplies`), which hands each envelope to its run by
``run_id``. A reply topic and a blocking reader per run cost a stream, a consumer group and,
on Redis, a connection per run: 150 concurrent runs exhausted the connection pool, starved
the registry's reader and lost runs. The reader and the topic live while any run does; the
last run to end deletes the topic, so a reply to an ended run is dropped as before.

A result or critique counts only from a live replica of the agent its ``(step, attempt)``
was routed to (its registry card names that agent, or on a bus with per-agent keys its key
does), whatever its signature: any other is
recorded as ``reply_rejected`` and ignored, so a forged reply never replaces an output.
One from the routed agent completes the call waiting for its ``(step, attempt)``; one that no
call waits for any more (late, or delivered twice) is recorded and its usage booked, never
used as an answer. A dead-lettered task fails its attempt at once; a redelivery is recorded;
an agent's question to another capability (``input_request``) is answered as a sub-step.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib

from rede.bus import Bus, Subscription
from rede.errors import RedeError, RunLimitExceeded, StepFailed
from rede.orchestration.call import Ask, Calls
from rede.orchestration.human import HUMAN, ask_person
from rede.orchestration.recovery import Recovery
from rede.orchestration.run import CallRecord
from rede.orchestration.state import RunState
from rede.protocol.messages import (
    Critique,
    Envelope,
    ErrorPayload,
    Event,
    InputReply,
    InputRequest,
    Result,
    owns,
)
from rede.protocol.topics import Topic
from rede.runtime._outlast import resubscribing
from rede.runtime.agent import reply_topic


class SharedReplies:
    """One orchestrator's reply topic and its one reader, shared by its live runs."""

    def __init__(self, bus: Bus, topic: Topic, consumer: str) -> None:
        self.bus = bus
        self.topic = topic
        self.consumer = consumer
        self.runs: dict[str, tuple[RunState, Calls]] = {}
        self.reader: asyncio.Task[None] | None = None
        self._sub: Subscription | None = None
        self._lock = asyncio.Lock()
        self.recovery = Recovery(bus, consumer, self._live, self._ready)
        """Sends the runs' awaited tasks again if the bus comes back empty."""

    async def join(self, s: RunState, calls: Calls) -> asyncio.Task[None]:
        """Route the replies to run ``s`` to it (opening the topic for the first live run);
        returns the reader, whose end fails the run's waiting calls."""
        async with self._lock:
            if self.reader is None or self.reader.done():
                await self._close()
                self._sub = await self._subscribe()
                # a bus that fails under the reader is subscribed to again, for as long as
                # its runs live (each ends at its own deadline): an outage is not a lost run
                self.reader = asyncio.create_task(
                    resubscribing(
                        self._sub, self._subscribe, self._read, f"orchestrator {self.consumer}"
                    )
                )
                self.reader.add_done_callback(self._stopped)
                await self.recovery.start()
            self.runs[s.run_id] = (s, calls)
            return self.reader

    def _live(self) -> list[RunState]:
        return [s for s, _ in self.runs.values()]

    async def _ready(self) -> None:
        """The reply topic and its group exist (made again on a bus that lost them)."""
        await (await self._subscribe()).aclose()

    async def _subscribe(self) -> Subscription:
        return await self.bus.subscribe(self.topic, group="orchestrator", consumer=self.consumer)

    async def leave(self, s: RunState) -> None:
        """Run ``s`` ended; the last one to end closes the reader and deletes the topic."""
        async with self._lock:
            self.runs.pop(s.run_id, None)
            if not self.runs:
                await self._close()

    async def _close(self) -> None:
        await self.recovery.stop()
        reader, sub = self.reader, self._sub
        self.reader = self._sub = None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if sub is not None:
            await sub.aclose()
            with contextlib.suppress(RedeError):
                await self.bus.delete(self.topic)

    def _stopped(self, reader: asyncio.Task[None]) -> None:
        for s, _ in list(self.runs.values()):
            s.reader_stopped(reader)

    async def _read(self, sub: Subscription) -> None:
        async for delivery in sub:
            run = self.runs.get(delivery.envelope.run_id)
            if run is not None:  # else the run ended: nothing waits for this any more
                read_reply(*run, delivery.envelope)
            await delivery.ack()


async def read_replies(s: RunState, calls: Calls, sub: Subscription) -> None:
    """Read one run's replies from its own subscription until it closes."""
    async for delivery in sub:
        read_reply(s, calls, delivery.envelope)
        await delivery.ack()


def read_reply(s: RunState, calls: Calls, env: Envelope) -> None:
    """Record one envelope that came back to run ``s`` and act on it."""
    s.received(env)
    payload = env.payload
    if isinstance(payload, Result | Critique):
        _reply(s, env, payload)
    elif isinstance(payload, ErrorPayload) and payload.code == "max_deliveries":
        # the bus gave up on the task (its holders kept dying): the attempt failed
        if not _notice_from_routed(s, env):
            _rejected(s, env, "a bus notice signed by another agent's key")
            return
        s.decide("dead_lettered", step=env.step_id, attempt=env.attempt, reason=payload.message)
        future = s.futures.get((env.step_id or "", env.attempt))
        if future is not None and not future.done():
            future.set_result(Result(status="failed", error=f"dead-lettered: {payload.message}"))
    elif isinstance(payload, Event) and payload.name == "started":
        # the agent started a task that waited for its slot: its step timeout counts from now
        s.started_at[(env.step_id or "", env.attempt)] = asyncio.get_running_loop().time()
    elif isinstance(payload, Event) and payload.name == "redelivered":
        # an agent took over a task whose first holder died or stalled
        s.decide(
            "redelivered",
            step=env.step_id,
            attempt=env.attempt,
            agent=env.sender,
            delivery_count=payload.data.get("delivery_count"),
        )
    elif isinstance(payload, InputRequest):
        task = asyncio.create_task(answer_input(s, calls, env, payload))
        s.helpers.add(task)
        task.add_done_callback(s.helpers.discard)


def _reply(s: RunState, env: Envelope, payload: Result | Critique) -> None:
    key = (env.step_id or "", env.attempt)
    sent = s.sent_to.get(key)
    if sent is None or not _from_routed(s, env.sender, sent[0].agent):
        _rejected(s, env, "the reply did not come from the agent routed to")
        return
    future = s.futures.get(key)
    if future is not None and not future.done():
        future.set_result(payload)
    else:
        s.decide("duplicate_ignored", step=env.step_id, attempt=env.attempt, sender=env.sender)
        if env.id not in s.replies:
            account_late(s, env, payload)
    s.replies.add(env.id)


def _rejected(s: RunState, env: Envelope, reason: str) -> None:
    """Not from the agent this attempt went to (or its replicas): recorded, never used."""
    sent = s.sent_to.get((env.step_id or "", env.attempt))
    routed = sent[0].agent if sent is not None else None
    s.decide(
        "reply_rejected",
        step=env.step_id,
        attempt=env.attempt,
        sender=env.sender,
        routed_to=routed,
        reason=reason,
    )


def _notice_from_routed(s: RunState, env: Envelope) -> bool:
    """Only the routed agent's replicas read its task stream, so on a bus with per-agent keys
    the notice that the bus gave up on a task is signed with that agent's key."""
    if not s.services.bus.codec.proves_sender:
        return True
    sent = s.sent_to.get((env.step_id or "", env.attempt))
    return sent is not None and (env.kid or "").rpartition(".")[0] == sent[0].agent


def _from_routed(s: RunState, sender: str, agent: str) -> bool:
    """A live replica of ``agent`` per the registry; on a bus that proves senders (per-agent
    keys) also an instance of it whose first heartbeat has not reached this registry yet."""
    registry = s.services.registry
    if registry.replica_of(sender, agent):
        return True
    proven = s.services.bus.codec.proves_sender and owns(agent, sender)
    return proven and not registry.knows(sender)


def account_late(s: RunState, env: Envelope, payload: Result | Critique) -> None:
    """A reply no call waits for any more (its attempt timed out or was re-routed, or a
    redelivered task was answered twice): its answer is ignored, but the work was done
    and paid for, so its usage is booked on the step, the run and the caps."""
    sent = s.sent_to.get((env.step_id or "", env.attempt))
    rec = next((r for r in reversed(s.record.steps) if r.id == env.step_id), None)
    if sent is None or rec is None:
        return
    route, capability = sent
    s.settle_late((env.step_id or "", env.attempt))  # booked below, no longer reserved
    key = f"{env.step_id}/{env.attempt}"
    if key in s.booked_before or key in s.checkpoint.accounted:
        return  # the same answer again (a re-sent task answered from the agent's kept reply)
    usage = payload.usage
    rec.usage = rec.usage + usage
    rec.calls.append(
        CallRecord(
            agent=route.agent,
            capability=capability,
            tier=route.tier,
            status="failed",
            usage=usage,
            confidence=payload.confidence,
            error=f"reply to attempt {env.attempt} came after the step moved on; ignored",
        )
    )
    with contextlib.suppress(RunLimitExceeded):  # already spent: the caps stop the next call
        s.account(usage)


async def answer_input(s: RunState, calls: Calls, env: Envelope, request: InputRequest) -> None:
    """An agent asked another capability a question mid-task: route it as a sub-step."""
    rec = s.new_record(
        f"{env.step_id}.ask{len(s.record.steps)}",
        request.capability,
        request.question,
        [],
        kind="input",
    )
    s.decide("input_request", step=env.step_id, asker=env.sender, capability=request.capability)
    try:
        if request.capability == HUMAN:
            reply = await _ask_human(s, env, request)
            s.finish(rec, Result(output=reply.answer, confidence=reply.confidence))
            await _answer(s, env, reply)
            return
        if request.capability == "critique":
            raise StepFailed(
                rec.id, "'critique' reviews a step's output; it does not answer questions"
            )
        result = await calls.call(rec, Ask(request.capability, request.question, []))
        s.finish(rec, result)
        reply = InputReply(answer=result.output, confidence=result.confidence, usage=result.usage)
    except RedeError as exc:  # the asker gets the error; the run's own limits still hold
        s.finish(rec, None)
        reply = InputReply(answer="", error=str(exc))
    await _answer(s, env, reply)


async def _answer(s: RunState, env: Envelope, reply: InputReply) -> None:
    out = env.reply(reply, sender=s.services.sender)
    s.sent(out)
    if env.reply_to:
        await s.services.bus.publish(reply_topic(env.reply_to), out)


async def _ask_human(s: RunState, env: Envelope, request: InputRequest) -> InputReply:
    """An agent's question to ``human``: the run waits for a person's answer (the same
    question of the same step is the same wait when the run is resumed)."""
    digest = hashlib.sha256(request.question.encode()).hexdigest()[:10]
    step = env.step_id or "run"
    answer = await ask_person(
        s, f"input:{step}:{digest}", "input", step, request.question, request.question
    )
    return InputReply(answer=str(answer.get("text", "")), confidence=1.0)


__all__ = ["SharedReplies", "account_late", "answer_input", "read_replies", "read_reply"]
