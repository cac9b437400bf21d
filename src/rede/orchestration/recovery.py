"""A bus that came back empty: an orchestrator sends its runs' in-flight tasks again.

A Redis restarted without persistence (or a failover to a replica that missed writes) has
lost every stream: tasks waiting for an agent's slot, tasks an agent holds, replies not yet
read. Agents re-register with their next heartbeat; their consumer groups are made again as
they read. What only the orchestrator knows is which tasks its live runs still wait for, so
when the bus is reachable again it checks a mark it left there (:class:`Recovery`): if the
mark is gone, the bus lost its data, and every task still awaited is published again, the
same envelope with the same ``idempotency_key``. An agent still working on it, or that
answered it, replies with that answer instead of calling its model again (see
:mod:`rede.runtime.once`); only a task nobody started is worked on, for the first time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from rede.bus import Bus
from rede.errors import RedeError
from rede.orchestration.state import RunState

log = logging.getLogger("rede.orchestration")

MARK_TTL_S = 7 * 24 * 3600.0


class Recovery:
    """Watches one orchestrator's bus for its coming back empty, and re-sends then."""

    def __init__(
        self,
        bus: Bus,
        owner: str,
        runs: Callable[[], Iterable[RunState]],
        ready: Callable[[], Awaitable[None]],
    ) -> None:
        self.bus = bus
        self.mark = f"rede:alive:{owner}"
        self.runs = runs
        self.ready = ready
        """Makes the reply topic again before tasks are re-sent (their replies go there)."""
        self.task: asyncio.Task[None] | None = None
        self._unwatch: Callable[[], None] | None = None

    async def start(self) -> None:
        with contextlib.suppress(RedeError):
            await self.bus.remember(self.mark, b"1", MARK_TTL_S)
        if self._unwatch is None:
            self._unwatch = self.bus.watch_reachability(self._reachable)

    async def stop(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    def _reachable(self, up: bool) -> None:
        if up and (self.task is None or self.task.done()):
            self.task = asyncio.get_running_loop().create_task(self._check())

    async def _check(self) -> None:
        try:
            if await self.bus.claim(self.mark, b"1", MARK_TTL_S) is not None:
                return  # the mark survived: so did the streams
            await self.ready()
            for s in list(self.runs()):
                await republish(s)
        except RedeError as exc:  # away again: the next time it is reachable checks again
            log.warning("checking the bus for lost data failed: %s", exc)


async def republish(s: RunState) -> None:
    """Publish every task run ``s`` still waits for again, as it was first sent."""
    for (step, attempt), (topic, env) in list(s.in_flight.items()):
        future = s.futures.get((step, attempt))
        if future is None or future.done():
            continue
        s.decide(
            "republished",
            step=step,
            attempt=attempt,
            topic=str(topic),
            reason="the bus came back without its data (its mark was gone): the task is "
            "sent again under the same idempotency key",
        )
        await s.services.bus.publish(topic, env)


__all__ = ["Recovery", "republish"]
