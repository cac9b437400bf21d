"""The run's reply reader: every envelope that comes back on the run's reply topic.

A result or critique completes the call waiting for its ``(step, attempt)``; one that no
call waits for any more (late, or delivered twice) is recorded and its usage booked, never
used as an answer. A dead-lettered task fails its attempt at once; a redelivery is recorded;
an agent's question to another capability (``input_request``) is answered as a sub-step.
"""

from __future__ import annotations

import asyncio
import contextlib

from rede.bus import Subscription
from rede.errors import RedeError, RunLimitExceeded, StepFailed
from rede.orchestration.call import Ask, Calls
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
)
from rede.protocol.topics import Topic


async def read_replies(s: RunState, calls: Calls, sub: Subscription) -> None:
    """Read the run's replies until the subscription closes."""
    async for delivery in sub:
        env = delivery.envelope
        s.received(env)
        payload = env.payload
        if isinstance(payload, Result | Critique):
            _reply(s, env, payload)
        elif isinstance(payload, ErrorPayload) and payload.code == "max_deliveries":
            # the bus gave up on the task (its holders kept dying): the attempt failed
            s.decide("dead_lettered", step=env.step_id, attempt=env.attempt, reason=payload.message)
            future = s.futures.get((env.step_id or "", env.attempt))
            if future is not None and not future.done():
                future.set_result(
                    Result(status="failed", error=f"dead-lettered: {payload.message}")
                )
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
        await delivery.ack()


def _reply(s: RunState, env: Envelope, payload: Result | Critique) -> None:
    future = s.futures.get((env.step_id or "", env.attempt))
    if future is not None and not future.done():
        future.set_result(payload)
    else:
        s.decide("duplicate_ignored", step=env.step_id, attempt=env.attempt, sender=env.sender)
        if env.id not in s.replies:
            account_late(s, env, payload)
    s.replies.add(env.id)


def account_late(s: RunState, env: Envelope, payload: Result | Critique) -> None:
    """A reply no call waits for any more (its attempt timed out or was re-routed, or a
    redelivered task was answered twice): its answer is ignored, but the work was done
    and paid for, so its usage is booked on the step, the run and the caps."""
    sent = s.sent_to.get((env.step_id or "", env.attempt))
    rec = next((r for r in reversed(s.record.steps) if r.id == env.step_id), None)
    if sent is None or rec is None:
        return
    route, capability = sent
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
    out = env.reply(reply, sender=s.services.sender)
    s.sent(out)
    if env.reply_to:
        await s.services.bus.publish(Topic.from_str(env.reply_to), out)


__all__ = ["account_late", "answer_input", "read_replies"]
