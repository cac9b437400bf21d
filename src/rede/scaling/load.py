"""Load signals: how much work each agent has, as a spawner reads it.

A :class:`LoadView` answers, per agent, the tasks sent to it and not yet answered
(:meth:`~LoadView.in_flight`) and how long tasks wait before a replica takes them
(:meth:`~LoadView.wait_s`). Two views:

- :class:`RouterLoad`: the calls this process's router made (in flight, and the recent queue
  wait of the finished ones). Exact and immediate, but blind to runs submitted by other
  processes: right when one process orchestrates every run (the embedded bus).
- :class:`BusLoad`: the bus's own view (:meth:`~rede.bus.Bus.backlog`) of each agent's task
  topics and consumer group, polled every ``interval_s``: what every process submitted,
  waiting or being worked on, and the age of the oldest waiting task. Right for a shared
  bus, where runs come from anywhere (``rede up`` on Redis).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Protocol

from rede.bus import Backlog, Bus
from rede.protocol.topics import Topic
from rede.routing.router import Router


class LoadView(Protocol):
    """What a spawner reads. :meth:`refresh` is awaited before every look."""

    async def refresh(self) -> None:
        """Bring the view up to date (a no-op for views that are always current)."""

    def in_flight(self, agent: str) -> int:
        """Tasks sent to ``agent`` and not answered: waiting for a replica or in hand."""

    def wait_s(self, agent: str) -> float:
        """How long ``agent``'s tasks wait before a replica takes them, in seconds."""

    async def wait_change(self, timeout: float) -> None:
        """Return when the load may have changed, at the latest after ``timeout``."""


class RouterLoad:
    """Calls made by this process's router: in flight now, and the recent queue wait."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def refresh(self) -> None:
        return None

    def in_flight(self, agent: str) -> int:
        return self.router.in_flight.get(agent, 0)

    def wait_s(self, agent: str) -> float:
        return self.router.queue(agent).wait_s

    async def wait_change(self, timeout: float) -> None:
        await self.router.wait_change(timeout=timeout)


class BusLoad:
    """The bus's backlog of each agent's task topics (``rede.task.<capability>.<agent>``,
    consumer group ``<agent>``), summed over its capabilities; read on :meth:`refresh`.

    ``in_flight`` is waiting + pending (delivered, not acknowledged); ``wait_s`` is the age
    of the oldest task no replica has taken yet."""

    def __init__(self, bus: Bus, capabilities: Mapping[str, Sequence[str]]) -> None:
        self.bus = bus
        self.topics = {
            agent: [Topic.task(cap, agent) for cap in caps] for agent, caps in capabilities.items()
        }
        self.backlogs: dict[str, Backlog] = {}

    async def refresh(self) -> None:
        for agent, topics in self.topics.items():
            parts = await asyncio.gather(*(self.bus.backlog(t, agent) for t in topics))
            self.backlogs[agent] = sum(parts, Backlog())

    def backlog(self, agent: str) -> Backlog:
        return self.backlogs.get(agent, Backlog())

    def in_flight(self, agent: str) -> int:
        return self.backlog(agent).unfinished

    def wait_s(self, agent: str) -> float:
        return self.backlog(agent).oldest_wait_s

    async def wait_change(self, timeout: float) -> None:
        # A shared bus does not announce backlog changes: poll.
        await asyncio.sleep(timeout)
