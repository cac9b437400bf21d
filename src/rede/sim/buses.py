"""Bus wrappers for the simulation: the same :class:`~rede.bus.Bus` interface around a real
bus (memory or Redis), so the network under test runs on the real thing.

- :class:`MeteredBus` counts what is published, per run: envelopes and encoded bytes.
- :class:`FaultyBus` drops or delays envelopes that match the active :class:`BusRule` s:
  a topic pattern (``rede.task.math.*``), envelope kinds, senders, or a partitioned group of
  agents (everything to or from them). A drop happens at publish: the message never reaches
  the bus, as if lost on the wire; the orchestrator's timeouts and the registry's expiry are
  what must notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rede.bus import Bus, Subscription
from rede.errors import ClosedBusError
from rede.protocol.messages import Envelope
from rede.protocol.topics import Topic

_INSTANCE = re.compile(r"^(?P<name>[A-Za-z0-9_\-]+)-[0-9a-f]{16}$")


def agent_of(instance_id: str) -> str | None:
    """The agent name of a runner instance id (``math-3f2a...`` -> ``math``)."""
    m = _INSTANCE.match(instance_id)
    return m.group("name") if m else None


class WrapperBus(Bus):
    """Delegates everything to ``inner``; subclasses intercept :meth:`publish`.

    Closing the wrapper closes the inner bus."""

    def __init__(self, inner: Bus) -> None:
        self.inner = inner
        self.options = inner.options
        self.codec = inner.codec
        self.stats = inner.stats

    @property
    def url(self) -> str:
        return self.inner.url

    async def publish(self, topic: Topic, envelope: Envelope) -> str:
        return await self.inner.publish(topic, envelope)

    async def publish_raw(self, topic: Topic, data: bytes) -> str:
        return await self.inner.publish_raw(topic, data)

    async def subscribe(
        self, topic: Topic, *, group: str | None = None, consumer: str | None = None
    ) -> Subscription:
        return await self.inner.subscribe(topic, group=group, consumer=consumer)

    async def delete(self, topic: Topic) -> None:
        await self.inner.delete(topic)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def _dead_letter(self, topic: Topic, raw: bytes, code: str, reason: str) -> None:
        await self.inner._dead_letter(topic, raw, code, reason)

    @property
    def keeps_objects(self) -> bool:  # type: ignore[override]
        return self.inner.keeps_objects

    async def remember(self, key: str, value: Any, ttl_s: float) -> None:
        await self.inner.remember(key, value, ttl_s)

    async def claim(self, key: str, value: Any, ttl_s: float) -> Any:
        return await self.inner.claim(key, value, ttl_s)


@dataclass
class Traffic:
    messages: int = 0
    bytes: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, size: int) -> None:
        self.messages += 1
        self.bytes += size
        self.by_kind[kind] += 1


class MeteredBus(WrapperBus):
    """Counts every envelope published through it (attempted sends, before any fault), by
    ``run_id``; envelopes of no run (heartbeats) are counted under ``""``."""

    def __init__(self, inner: Bus) -> None:
        super().__init__(inner)
        self.runs: dict[str, Traffic] = {}

    async def publish(self, topic: Topic, envelope: Envelope) -> str:
        size = len(self.codec.encode(envelope))
        self.runs.setdefault(envelope.run_id, Traffic()).add(envelope.kind, size)
        return await self.inner.publish(topic, envelope)

    def traffic(self, run_id: str) -> Traffic:
        return self.runs.get(run_id, Traffic())


@dataclass
class BusRule:
    """Which envelopes a bus fault touches, and what it does to them."""

    action: str
    """``drop`` or ``delay``."""
    topic: str | None = None
    """A glob over the topic name (``rede.task.*.math``); None: any topic."""
    kinds: frozenset[str] = frozenset()
    """Envelope kinds (``task``, ``result``, ``heartbeat``...); empty: any kind."""
    senders: frozenset[str] = frozenset()
    """Agent names whose envelopes match; empty: any sender."""
    group: frozenset[str] = frozenset()
    """A partition: agent names cut off from the rest (to and from them)."""
    rate: float = 1.0
    delay_s: float = 0.0
    seed: int = 0
    dropped: int = 0
    delayed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def matches(self, topic: Topic, envelope: Envelope) -> bool:
        if self.topic is not None and not fnmatch.fnmatchcase(str(topic), self.topic):
            return False
        if self.kinds and envelope.kind not in self.kinds:
            return False
        sender = agent_of(envelope.sender) or envelope.sender
        if self.senders and sender not in self.senders:
            return False
        if self.group and not (sender in self.group or self._to_group(topic)):
            return False
        return self.rate >= 1.0 or self._rng.random() < self.rate

    def _to_group(self, topic: Topic) -> bool:
        if topic.kind == "task":
            return topic.parts[1] in self.group
        if topic.kind == "inbox":
            return agent_of(topic.parts[0]) in self.group
        return False


class FaultyBus(WrapperBus):
    """Applies the active rules at publish; owns (and cancels on close) delayed sends."""

    def __init__(self, inner: Bus) -> None:
        super().__init__(inner)
        self.rules: list[BusRule] = []
        self._delayed: set[asyncio.Task[None]] = set()

    async def publish(self, topic: Topic, envelope: Envelope) -> str:
        for rule in list(self.rules):
            if not rule.matches(topic, envelope):
                continue
            if rule.action == "drop":
                rule.dropped += 1
                return f"dropped-{envelope.id}"
            rule.delayed += 1
            task = asyncio.create_task(self._later(rule.delay_s, topic, envelope))
            self._delayed.add(task)
            task.add_done_callback(self._delayed.discard)
            return f"delayed-{envelope.id}"
        return await self.inner.publish(topic, envelope)

    async def _later(self, delay_s: float, topic: Topic, envelope: Envelope) -> None:
        await asyncio.sleep(delay_s)
        with contextlib.suppress(ClosedBusError):  # closed meanwhile: lost, as on a dying link
            await self.inner.publish(topic, envelope)

    async def aclose(self) -> None:
        for task in list(self._delayed):
            task.cancel()
        await asyncio.gather(*self._delayed, return_exceptions=True)
        await super().aclose()
