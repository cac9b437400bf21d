"""The lease an agent keeps on a task's delivery while it works on it."""

from __future__ import annotations

import asyncio
import math
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

    def __init__(
        self,
        delivery: Touchable,
        every_s: float,
        until: float | None = None,
        renewals: Renewals | None = None,
    ) -> None:
        self._delivery = delivery
        self._every = every_s
        self._until = until
        self._loop = asyncio.get_running_loop()
        self._touching: asyncio.Task[None] | None = None
        self._stopped = False
        self._stopped_event: asyncio.Event | None = None
        self._renewals = renewals
        self._timer: asyncio.TimerHandle | None = None
        self._wait()

    def _wait(self) -> None:
        """Be due in ``every_s``: on the shared timer of ``renewals``, or on a timer of its
        own."""
        if self._renewals is not None:
            self._renewals.add(self, self._loop.time() + self._every)
        else:
            self._timer = self._loop.call_later(self._every, self._due)

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
        self._wait()

    async def end(self) -> None:
        if self._renewals is not None:
            self._renewals.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        if self._touching is not None:
            self._touching.cancel()
            await asyncio.gather(self._touching, return_exceptions=True)
        if self._timer is not None:  # set again by a touch that finished as it was cancelled
            self._timer.cancel()
        if self._renewals is not None:
            self._renewals.discard(self)


class Renewals:
    """The leases of one agent runner, made due by one timer between them instead of a timer
    each: most leases end long before their first touch, and a timer made and cancelled per
    lease (two a task) was a visible part of a fast hop. A lease ending only leaves the timer;
    the timer, when it fires, touches the leases then due and is set again for the next one,
    or not at all when none is left."""

    def __init__(self) -> None:
        self._due: dict[Lease, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._at = math.inf
        """When the timer fires (inf: no timer)."""

    def add(self, lease: Lease, due: float) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a runner started again in another loop
            self._loop, self._timer, self._at = loop, None, math.inf
            self._due.clear()
        self._due[lease] = due
        if due < self._at:
            self._set(due)

    def discard(self, lease: Lease) -> None:
        self._due.pop(lease, None)

    def _set(self, at: float) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._at = at
        self._timer = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        assert self._loop is not None
        self._timer, self._at = None, math.inf
        now = self._loop.time() + _EARLY
        due = [lease for lease, at in self._due.items() if at <= now]
        for lease in due:
            del self._due[lease]
            lease._due()
        if self._due:
            self._set(min(self._due.values()))


_EARLY = 0.001
"""A shared timer may fire this early (the loop's clock resolution): a lease due that soon
is touched now rather than by another turn of the timer."""
