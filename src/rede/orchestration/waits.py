"""How long a call waits for its reply: the step timeout times the agent's work, not the
time its task waits for a slot.

A task sent to a busy agent waits on the bus until one of the agent's ``concurrency`` slots
is free. When the step timeout passes with no reply, the call asks: has the agent started
the task (it says so with a ``started`` event when the task waited for its slot)? Then the
step timeout counts from that start. Is the task still queued behind others (the agent's
backlog has tasks waiting)? Then the call waits on, up to ``limits.slot_wait_s`` and never
past the run's deadline, and records a ``queued`` decision once. Neither: the reply is lost
(a dropped task, a stalled agent) and the call fails as before, to be retried.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rede.errors import RedeError
from rede.orchestration.patience import time_left
from rede.orchestration.state import RunState
from rede.protocol.topics import Topic


class Lost(Exception):
    """A call got no reply: the agent timed out or vanished."""


async def wait_reply(
    s: RunState, key: tuple[str, int], agent: str, capability: str, future: asyncio.Future[Any]
) -> Any:
    """The reply to the task ``key`` (step, attempt) sent to ``agent``, timed as above;
    raises :class:`Lost` naming why none came."""
    loop = asyncio.get_running_loop()
    timeout = s.limits.step_timeout_s
    sent = loop.time()
    until = sent + timeout
    queued = False
    away = _Away(loop)
    unwatch = s.services.bus.watch_reachability(away)
    try:
        while True:
            done, _ = await asyncio.wait([future], timeout=max(0.0, until - loop.time()))
            if done:
                return future.result()
            now = loop.time()
            started = s.started_at.get(key)
            # the step timeout counts from the agent's start, and not while the bus is away
            due = (sent if started is None else started) + timeout + away.seconds()
            if away.since is not None or due > now:
                until = max(due, now + timeout) if away.since is not None else due
                continue
            queued = await _still_queued(s, key, agent, capability, started, sent, queued)
            until = loop.time() + min(timeout, _slot_time_left(s, loop.time() - sent))
    finally:
        unwatch()


async def _still_queued(
    s: RunState,
    key: tuple[str, int],
    agent: str,
    capability: str,
    started: float | None,
    sent: float,
    queued: bool,
) -> bool:
    """The step timeout passed: go on waiting (True) while the task waits for the agent's
    slot, within ``slot_wait_s`` and the run's deadline; else raise :class:`Lost`."""
    loop = asyncio.get_running_loop()
    timeout = s.limits.step_timeout_s
    if started is not None or not await _queued(s, agent, capability):
        raise Lost(f"no reply within {timeout:g}s")
    left = _slot_time_left(s, loop.time() - sent)
    if left <= 0:
        raise Lost(
            f"no reply within {timeout:g}s, and {agent} did not start the task in "
            f"{loop.time() - sent:.1f}s waiting for its slot (limits.slot_wait_s, or the "
            "run's deadline)"
        )
    if not queued:
        s.decide(
            "queued",
            step=key[0],
            attempt=key[1],
            agent=agent,
            reason=f"no reply within {timeout:g}s: {agent} has not started the task, "
            f"queued behind others; waiting for its slot up to {left:.1f}s more",
        )
        s.emit("waiting_for_slot", step=key[0], agent=agent, timeout_s=left)
    return True


async def _queued(s: RunState, agent: str, capability: str) -> bool:
    """Whether tasks wait for ``agent``'s slots (so this one is likely among them)."""
    try:
        backlog = await s.services.bus.backlog(Topic.task(capability, agent), agent)
    except NotImplementedError:
        return False  # a bus that cannot tell: the reply is taken as lost, as before
    except RedeError:
        return True  # the bus is away: the task may well be waiting there still
    return backlog.waiting > 0


class _Away:
    """Counts the time the bus was unreachable (a ``watch_reachability`` callback)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.since: float | None = None
        self.total = 0.0

    def __call__(self, up: bool) -> None:
        now = self.loop.time()
        if not up and self.since is None:
            self.since = now
        elif up and self.since is not None:
            self.total += now - self.since
            self.since = None

    def seconds(self) -> float:
        return self.total + (0.0 if self.since is None else self.loop.time() - self.since)


def _slot_time_left(s: RunState, waited: float) -> float:
    """How much longer a call may wait for its task to get a slot."""
    left = time_left(s)
    bound = s.limits.slot_wait_s
    if bound is not None:
        left = bound - waited if left is None else min(left, bound - waited)
    return float("inf") if left is None else left


__all__ = ["Lost", "wait_reply"]
