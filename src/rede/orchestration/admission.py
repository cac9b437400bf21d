"""Admission: how many runs a network runs at once in this process, and what happens to
the next one (``limits.max_runs``, ``limits.admit_wait_s``).

A run over the limit waits for a running one to end, up to ``admit_wait_s``, and is then
refused with :class:`~rede.errors.Busy`, which says when to come back: the typical run's
duration here (a running median), at least a second. A run once admitted is never refused
later; the load it meets queues (see :mod:`rede.orchestration.waits`). Without
``max_runs`` every run is admitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import time
from collections import deque
from collections.abc import AsyncIterator

from rede.errors import Busy


class Admission:
    """Counts the runs of one network in this process and admits or refuses the next."""

    def __init__(self, network: str, max_runs: int | None, wait_s: float = 0.0) -> None:
        self.network = network
        self.max_runs = max_runs
        self.wait_s = wait_s
        self.running = 0
        self.refused = 0
        self._reserved: set[str] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._durations: deque[float] = deque(maxlen=64)

    @property
    def full(self) -> bool:
        return self.max_runs is not None and self.running >= self.max_runs

    @property
    def waiting(self) -> int:
        return sum(not w.done() for w in self._waiters)

    def retry_after_s(self) -> int:
        """Whole seconds after which a refused run is worth sending again."""
        typical = statistics.median(self._durations) if self._durations else 1.0
        return max(1, math.ceil(typical))

    def busy(self) -> Busy:
        self.refused += 1
        return Busy(self.network, self.running, self.max_runs or 0, self.retry_after_s())

    def reserve(self, run_id: str) -> None:
        """Admit run ``run_id`` now or raise Busy, without waiting (a server answers 429
        before it accepts a run); :meth:`admitted` with that id takes the place up."""
        if self.full:
            raise self.busy()
        self.running += 1
        self._reserved.add(run_id)

    def unreserve(self, run_id: str) -> None:
        """A reserved run will not start after all: free its place."""
        if run_id in self._reserved:
            self._reserved.discard(run_id)
            self._free()

    @contextlib.asynccontextmanager
    async def admitted(self, run_id: str | None = None) -> AsyncIterator[None]:
        """Hold a place for one run (waiting up to ``wait_s`` for one); raises Busy."""
        if run_id is not None and run_id in self._reserved:
            self._reserved.discard(run_id)
        else:
            while self.full:
                await self._wait()
            self.running += 1
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._durations.append(time.perf_counter() - t0)
            self._free()

    def _free(self) -> None:
        self.running -= 1
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _wait(self) -> None:
        if self.wait_s <= 0:
            raise self.busy()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, self.wait_s)
        except TimeoutError:
            raise self.busy() from None


__all__ = ["Admission"]
