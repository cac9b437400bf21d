"""One topic's stream in the in-process bus: its entries, consumer groups and subscribers,
and how receivers wait for it to change (see :mod:`rede.bus.memory`)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from rede.bus._base import Subscription
from rede.protocol.messages import Envelope

Entry = bytes | Envelope
"""A stream entry: bytes from ``publish_raw`` (or a signing bus), else the envelope itself."""


@dataclass
class Pending:
    consumer: str
    deadline: float
    count: int


@dataclass
class Group:
    last: int
    pending: OrderedDict[int, Pending] = field(default_factory=OrderedDict)


class Stream:
    def __init__(self, first_seq: int, now: float, ephemeral: bool = False) -> None:
        self.ephemeral = ephemeral
        self.idle_since = now
        """When the last subscriber left (or the stream was made), on the event loop's
        clock: an ephemeral stream with no subscriber expires a TTL after it."""
        self.entries: OrderedDict[int, Entry] = OrderedDict()
        self.stamps: dict[int, float] = {}
        """When each entry was published (the event loop's clock)."""
        self.next_seq = first_seq
        self.groups: dict[str, Group] = {}
        self.fanout: set[Any] = set()
        """Open fan-out subscriptions (the bus's ``_FanoutSubscription``)."""
        self.members: set[Any] = set()
        """Open group subscriptions (its ``_GroupSubscription``)."""
        self._waiters: list[asyncio.Future[None]] = []

    def notify(self) -> None:
        """Wake every receiver waiting for this stream to change."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def changed(self, until: float | None = None) -> None:
        """Wait for the next :meth:`notify`, or until ``until`` (the loop's time). A bare
        future (and a timer only with a deadline): a receive waits once per delivery, and an
        ``asyncio.Event`` and ``asyncio.timeout`` each time were a good part of a hop."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = None if until is None else loop.call_at(until, _wake, waiter)
        try:
            await waiter
        except BaseException:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def drop_oldest(self) -> None:
        seq, _ = self.entries.popitem(last=False)
        self.stamps.pop(seq, None)

    def leave(self, sub: Subscription) -> None:
        """A subscription closed; with it the last, the expiry clock starts."""
        if sub.group is None:
            self.fanout.discard(sub)
        else:
            self.members.discard(sub)
        if not self.fanout and not self.members:
            self.idle_since = asyncio.get_running_loop().time()
        self.notify()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
