"""Idempotent tasks: a task sent again under the same ``idempotency_key`` is answered once.

A resumed run (its orchestrator died; another took it over from its checkpoint) sends the
step that was in flight again, with the key it had. The agent that did it, or any replica of
any agent on the bus, finds the answer kept under that key and replies with it; one that is
still working on it is waited for; only when nobody did or is doing it is the model called.
The answer is kept on the bus (:meth:`rede.bus.Bus.remember`: Redis for a Redis bus) for
``ttl_s`` (a failed result is not kept). While a task runs, a *pending* mark stands in its
place, renewed three times per bus visibility timeout: a holder that dies stops renewing,
so by the time the bus hands its task to another replica the mark has lapsed and the work
is done again (at least once, as ever), never waited for in vain.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from rede.bus import Bus
from rede.errors import RedeError
from rede.protocol.messages import Critique, Envelope, Result
from rede.runtime._lease import Lease, Renewals

Reply = Result | Critique
PENDING = b"pending"
KEPT_HERE = 1024


class OnceOnly:
    """One per agent runner: runs each keyed task once on the bus, and counts reuses."""

    def __init__(self, bus: Bus, sender: str, ttl_s: float = 24 * 3600, poll_s: float = 0.2):
        self.bus = bus
        self.sender = sender
        self.ttl_s = ttl_s
        self.poll_s = poll_s
        self.pending_s = bus.options.visibility_timeout_s
        self.reused = 0
        """Tasks answered from a kept answer instead of a model call."""
        self._running: dict[str, asyncio.Future[Reply]] = {}
        self._done: OrderedDict[str, Reply] = OrderedDict()
        """The last ``KEPT_HERE`` answers, also kept in this process: a bus that lost its
        data (a Redis restarted empty) lost those it kept, and the task comes again."""
        self.renewals = Renewals()
        """The runner's leases' shared timer (its deliveries' and its pending marks')."""

    async def run(
        self, key: str | None, deadline: datetime | None, work: Callable[[], Awaitable[Reply]]
    ) -> Reply:
        if key is None:
            return await work()
        here = self._running.get(key)
        if here is not None:  # this runner is doing it now: the same answer, once
            self.reused += 1
            return await asyncio.shield(here)
        kept = self._done.get(key) or await self._kept_or_claimed(key, deadline)
        if kept is not None:
            self.reused += 1
            return kept
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        mark = _PendingMark(self.bus, key, self.pending_s)
        renewal = Lease(mark, self.pending_s / 3, renewals=self.renewals)
        try:
            reply = await work()
            future.set_result(reply)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            self._running.pop(key, None)
            await renewal.end()
        if not (isinstance(reply, Result) and reply.status == "failed"):
            self._done[key] = reply  # a failure is not kept: the work may be tried again
            while len(self._done) > KEPT_HERE:
                self._done.popitem(last=False)
            await self._keep(key, reply)
        return reply

    async def _kept_or_claimed(self, key: str, deadline: datetime | None) -> Reply | None:
        """The answer kept under ``key`` (waiting while a live holder works on it), or None
        once this runner holds the pending mark, or cannot tell, and must do the work."""
        while True:
            try:
                held = await self.bus.claim(key, PENDING, self.pending_s)
            except RedeError:
                return None  # the bus cannot say: do the work (at least once, as ever)
            if held is None:
                return None
            if held != PENDING:
                return self._decode(held)
            if deadline is not None and deadline < datetime.now(UTC):
                return None
            await asyncio.sleep(self.poll_s)

    def _decode(self, raw: Any) -> Reply | None:
        if isinstance(raw, Result | Critique):  # kept as it is by an in-process bus
            return raw
        try:
            payload = self.bus.codec.decode(raw).payload
        except RedeError:
            return None
        return payload if isinstance(payload, Result | Critique) else None

    async def _keep(self, key: str, reply: Reply) -> None:
        try:
            data: Any = reply  # kept as sent: nothing changes a reply once it is sent
            if not self.bus.keeps_objects:
                data = self.bus.codec.encode(Envelope(sender=self.sender, payload=reply))
            await self.bus.remember(key, data, self.ttl_s)
        except RedeError:
            pass  # not kept: a resumed run would have the work done again, never lose it


class _PendingMark:
    """The mark a runner renews (with a :class:`~rede.runtime._lease.Lease`) while it works."""

    def __init__(self, bus: Bus, key: str, ttl_s: float) -> None:
        self._bus, self._key, self._ttl = bus, key, ttl_s

    async def touch(self) -> bool:
        await self._bus.remember(self._key, PENDING, self._ttl)
        return True


__all__ = ["OnceOnly"]
