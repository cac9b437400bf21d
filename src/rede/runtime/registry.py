"""The live Registry: which agents exist, what they can do, their price and health.

Agents announce themselves with heartbeats on ``rede.runtime.registry``. A card that misses
heartbeats for ``ttl_s`` expires; a clean shutdown sends a last heartbeat with ``stopping``
so the card goes at once. On a bus that stores cards (Redis keeps each under a key with a
time to live), a registry that starts later reads the stored cards first, so it knows the
live agents at once instead of after their next heartbeat.

Silence counts only while the bus can be reached: while it cannot (Redis is down), no
heartbeat can arrive, so the registry stops the clock that ages cards
(:meth:`Registry.bus_reachable`, fed by :meth:`Bus.watch_reachability` while
:meth:`Registry.follow` runs). An outage longer than ``ttl_s`` then expires no one; once the
bus is back, a card expires ``ttl_s`` of reachable time after its last heartbeat.

Replicas of one agent share its name; routing picks a name and the bus's consumer group
spreads work across the replicas.

A supervisor that starts an exited agent again (``rede up``) says so first: an
``agent_restarting`` event on the same topic, with the agent's capabilities and when it will
be back (:data:`RESTARTING`). The registry keeps that promise (:meth:`Registry.returning`) until
a card of that agent arrives, or ``ttl_s`` past the time it named, so that a step whose only
agent is being restarted waits for it instead of failing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from rede.bus import Bus
from rede.errors import ClosedBusError
from rede.protocol.messages import AgentCard, Envelope, Event, Heartbeat
from rede.protocol.topics import Topic
from rede.runtime._outlast import until_done

RESTARTING = "agent_restarting"
"""The event a supervisor publishes on the registry topic before it starts an agent again:
``{"agent": NAME, "capabilities": [...], "back_in_s": SECONDS, "quick_exits": N}``."""


def restarting(
    sender: str, agent: str, capabilities: list[str], back_in_s: float, quick_exits: int = 0
) -> Envelope:
    """The envelope that says ``agent`` will be started again in ``back_in_s`` seconds."""
    data = {
        "agent": agent,
        "capabilities": capabilities,
        "back_in_s": back_in_s,
        "quick_exits": quick_exits,
    }
    return Envelope(sender=sender, payload=Event(name=RESTARTING, data=data))


@dataclass(frozen=True)
class Returning:
    """An agent its supervisor is starting again: what it serves and when it is due."""

    agent: str
    capabilities: tuple[str, ...]
    due: float
    """On the registry's clock."""
    quick_exits: int


@dataclass(frozen=True)
class AgentView:
    """All live replicas of one agent, as routing sees them."""

    name: str
    card: AgentCard
    replicas: int
    load: int

    @property
    def capabilities(self) -> list[str]:
        return self.card.capabilities

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        """What a call of this size costs at the card's prices."""
        card = self.card
        return (
            prompt_tokens * card.price_in_per_1k + completion_tokens * card.price_out_per_1k
        ) / 1000


class Registry:
    def __init__(self, *, ttl_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._cards: dict[str, tuple[AgentCard, float]] = {}
        self._changed = asyncio.Event()
        self._gone_watchers: dict[str, dict[int, Callable[[], None]]] = {}
        self._next_watch = 0
        self._unreachable_since: float | None = None
        self._unreachable_s = 0.0
        """Time the bus was unreachable, before the current outage: not counted as silence."""
        self._oldest: float | None = None
        """The oldest heartbeat's time (None: to be worked out), so that :meth:`expire`,
        run on every query, looks at the cards only when one may have expired."""
        self._views: dict[str | None, list[AgentView]] = {}
        """:meth:`agents` by capability, until the cards change (every call routes by it)."""
        self._returning: dict[str, Returning] = {}
        """Agents a supervisor said it is starting again, by name, until a card arrives."""

    # ------------------------------------------------------------------ the clock

    def _now(self) -> float:
        """The clock that ages cards: local time less the time the bus was unreachable, so
        it stands still during an outage."""
        now = self._clock() if self._unreachable_since is None else self._unreachable_since
        return now - self._unreachable_s

    def bus_reachable(self, reachable: bool) -> None:
        """The bus lost (False) or regained (True) its server: stop or restart the clock that
        ages cards, as no heartbeat can arrive meanwhile."""
        if not reachable and self._unreachable_since is None:
            self._unreachable_since = self._clock()
        elif reachable and self._unreachable_since is not None:
            self._unreachable_s += self._clock() - self._unreachable_since
            self._unreachable_since = None

    # ------------------------------------------------------------------ updates

    def observe(self, card: AgentCard, *, expires_in_s: float | None = None) -> None:
        """Record a heartbeat (the receipt time, not the sender's clock, decides expiry).

        ``expires_in_s``: for a card read from storage, the time it has left there; it is
        taken as seen ``ttl_s - expires_in_s`` ago, so it expires here when it does there."""
        seen = self._now()
        if expires_in_s is not None:
            seen -= max(0.0, self.ttl_s - expires_in_s)
        known = self._cards.get(card.id)
        if known is not None and known[1] > seen:
            return  # a newer heartbeat already arrived
        self._cards[card.id] = (card, seen)
        self._returning.pop(card.name, None)
        self._notify()

    def expect(
        self, agent: str, capabilities: list[str], back_in_s: float, quick_exits: int = 0
    ) -> None:
        """A supervisor starts ``agent`` again in ``back_in_s`` seconds (see :data:`RESTARTING`)."""
        due = self._now() + max(0.0, back_in_s)
        self._returning[agent] = Returning(agent, tuple(capabilities), due, quick_exits)
        self._notify()

    def returning(self, capability: str) -> list[Returning]:
        """Agents serving ``capability`` that a supervisor is starting again, soonest first;
        a promise lapses ``ttl_s`` after the time it named."""
        now = self._now()
        for name in [n for n, r in self._returning.items() if now > r.due + self.ttl_s]:
            del self._returning[name]
        found = [r for r in self._returning.values() if capability in r.capabilities]
        return sorted(found, key=lambda r: r.due)

    def due_in(self, returning: Returning) -> float:
        """Seconds until ``returning`` is due (0 once it is)."""
        return max(0.0, returning.due - self._now())

    def remove(self, agent_id: str) -> None:
        if self._cards.pop(agent_id, None) is not None:
            self._notify()

    def _notify(self) -> None:
        self._oldest = None
        self._views.clear()
        self._changed.set()
        self._changed = asyncio.Event()
        if self._gone_watchers:
            live = {card.name for card, _ in self._cards.values()}
            for name in [n for n in self._gone_watchers if n not in live]:
                for callback in self._gone_watchers.pop(name).values():
                    callback()

    def expire(self) -> list[AgentCard]:
        """Drop cards whose last heartbeat is older than ``ttl_s`` (of time the bus could
        be reached); return them."""
        now = self._now()
        if self._oldest is None:
            self._oldest = min((seen for _, seen in self._cards.values()), default=now)
        if now - self._oldest <= self.ttl_s:
            return []
        gone = [c for c, seen in self._cards.values() if now - seen > self.ttl_s]
        for card in gone:
            del self._cards[card.id]
        if gone:
            self._notify()
        return gone

    async def follow(self, bus: Bus) -> None:
        """Consume heartbeats from the bus until cancelled or the bus closes. Cards the bus
        stores are read once, after subscribing, so no heartbeat falls in between. While
        following, the bus's outages stop the clock that ages cards, and an outage longer
        than the bus's reconnect window only makes it subscribe again."""
        unwatch = bus.watch_reachability(self.bus_reachable)
        try:
            await until_done(lambda: self._follow(bus), "following the registry")
        finally:
            unwatch()
            self.bus_reachable(True)

    async def _follow(self, bus: Bus) -> None:
        try:
            sub = await bus.subscribe(Topic.registry())
        except ClosedBusError:
            return
        async with sub:
            try:
                stored = await bus.snapshot_cards()
            except ClosedBusError:
                return
            for card, expires_in_s in stored:
                if _fresh(bus, card, self.ttl_s):
                    self.observe(card, expires_in_s=expires_in_s)
            self.expire()
            while True:
                try:
                    delivery = await sub.receive(timeout=self.ttl_s / 2)
                except TimeoutError:
                    self.expire()
                    continue
                except ClosedBusError:
                    return
                env = delivery.envelope
                payload = env.payload
                if (
                    isinstance(payload, Heartbeat)
                    and payload.card.id == env.sender  # an agent announces only itself
                    and _fresh(bus, payload.card, self.ttl_s)
                ):
                    if payload.stopping:
                        self.remove(payload.card.id)
                    else:
                        self.observe(payload.card)
                elif isinstance(payload, Event) and payload.name == RESTARTING:
                    self._expect_from(payload.data)
                self.expire()

    def _expect_from(self, data: dict[str, object]) -> None:
        agent, caps, back = data.get("agent"), data.get("capabilities"), data.get("back_in_s")
        quick = data.get("quick_exits", 0)
        if not isinstance(agent, str) or not isinstance(caps, list):
            return  # not a restart notice this registry can use: nothing to promise
        if not isinstance(back, int | float) or not isinstance(quick, int):
            return
        self.expect(agent, [str(c) for c in caps], float(back), quick)

    # ------------------------------------------------------------------ queries

    def cards(self, capability: str | None = None) -> list[AgentCard]:
        self.expire()
        return [
            c for c, _ in self._cards.values() if capability is None or capability in c.capabilities
        ]

    def agents(self, capability: str | None = None) -> list[AgentView]:
        """Live agents (replicas grouped by name) that serve ``capability``."""
        self.expire()
        views = self._views.get(capability)
        if views is None:
            by_name: dict[str, list[AgentCard]] = {}
            for card in self.cards(capability):
                by_name.setdefault(card.name, []).append(card)
            views = self._views[capability] = [
                AgentView(name, cards[0], len(cards), sum(c.load for c in cards))
                for name, cards in sorted(by_name.items())
            ]
        return list(views)

    def capabilities(self) -> set[str]:
        return {cap for c in self.cards() for cap in c.capabilities}

    def is_live(self, name: str) -> bool:
        return any(c.name == name for c in self.cards())

    def replica_of(self, agent_id: str, name: str) -> bool:
        """Whether ``agent_id`` is a live replica of agent ``name`` (its card says so)."""
        known = self._cards.get(agent_id)
        return known is not None and known[0].name == name

    def knows(self, agent_id: str) -> bool:
        return agent_id in self._cards

    async def wait_for(self, predicate: Callable[[Registry], bool], timeout: float) -> None:
        """Wait until ``predicate(self)`` holds (checked on every change); TimeoutError after."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                changed = self._changed
                try:
                    async with asyncio.timeout(self.ttl_s / 2):
                        await changed.wait()
                except TimeoutError:
                    self.expire()

    def on_gone(self, name: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` once, when no replica of agent ``name`` is live any more (at
        once if none is now); returns a function that cancels the watch. A callback, not a
        task: a run watches every agent it sends to, and that must cost next to nothing.
        Cards are expired on every registry change and, while :meth:`follow` runs, at
        least every ``ttl_s / 2``."""
        if not self.is_live(name):
            callback()
            return _nothing
        key = self._next_watch
        self._next_watch += 1
        watchers = self._gone_watchers.setdefault(name, {})
        watchers[key] = callback

        def cancel() -> None:
            watchers.pop(key, None)
            if not watchers and self._gone_watchers.get(name) is watchers:
                del self._gone_watchers[name]

        return cancel

    async def wait_gone(self, name: str) -> None:
        """Return once no replica of agent ``name`` is live."""
        while True:
            changed = self._changed
            if not self.is_live(name):
                return
            try:
                async with asyncio.timeout(self.ttl_s / 2):
                    await changed.wait()
            except TimeoutError:
                pass


CLOCK_SKEW_S = 30.0
"""How far apart the clocks of a network's machines may be, for :func:`_fresh`."""


def _fresh(bus: Bus, card: AgentCard, ttl_s: float) -> bool:
    """On a signed bus, a heartbeat older than the card's time to live (and the clock skew
    allowed between machines) is a replay, a signed heartbeat captured earlier and sent
    again to keep a stopped agent routable: ignored."""
    if not bus.codec.signing:
        return True
    age = (datetime.now(UTC) - card.last_heartbeat).total_seconds()
    return age <= ttl_s + CLOCK_SKEW_S


def _nothing() -> None:
    return None
