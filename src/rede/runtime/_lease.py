"""The lease an agent keeps on a task's delivery while it works on it."""

from __future__ import annotations

import asyncio
from typing import Protocol

from rede.errors import RedeError


class Touchable(Protocol):
    """What a lease renews: a bus delivery, or an agent's pending mark (:mod:`.once`)."""

    async def touch(self) -> bool: ...


class Lease:
    """Touches a delivery three times per visibility timeout while its task runs. If the
    bus says it is no longer ours (another replica took it over while this one stalled),
    it stops: the work goes on, and the run keeps one answer per ``(step, attempt)``. A
    touch that fails because the bus is unreachable ends the lease the same way; the task
    may then be redelivered, which at-least-once delivery allows.

    No touch is made past ``until`` (the task's deadline, in the loop's time): a task past
    its deadline is not worth keeping, so one whose specialist will not stop is left to the
    bus's visibility timeout instead of being held for ever. ``stopped`` is set when the
    lease stops renewing on its own (deadline, lost, unreachable).

    A timer, not a task, between touches: most tasks end long before the first touch, and
    a task per task would be a large part of a fast hop's cost."""

    def __init__(self, delivery: Touchable, every_s: float, until: float | None = None) -> None:
        self._delivery = delivery
        self._every = every_s
        self._until = until
        self._loop = asyncio.get_running_loop()
        self._touching: asyncio.Task[None] | None = None
        self._stopped = False
        self._stopped_event: asyncio.Event | None = None
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(every_s, self._due)

    @property
    def stopped(self) -> asyncio.Event:
        """Set once the lease stops renewing on its own (made when first asked for: two
        leases a task, and nothing waits on most)."""
        if self._stopped_event is None:
            self._stopped_event = asyncio.Event()
            if self._stopped:
                self._stopped_event.set()
        return self._stopped_event

    def _stop(self) -> None:
        self._stopped = True
        if self._stopped_event is not None:
            self._stopped_event.set()

    def _due(self) -> None:
        self._timer = None
        if self._until is not None and self._loop.time() >= self._until:
            self._stop()
            return
        self._touching = self._loop.create_task(self._touch())

    async def _touch(self) -> None:
        try:
            if not await self._delivery.touch():
                self._stop()
                return
        except RedeError:
            self._stop()
            return
        self._timer = self._loop.call_later(self._every, self._due)

    async def end(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._touching is not None:
            self._touching.cancel()
            await asyncio.gather(self._touching, return_exceptions=True)
        if self._timer is not None:  # set again by a touch that finished as it was cancelled
            self._timer.cancel()
