"""The bus interface every implementation (memory, redis) provides.

Semantics, checked by one contract suite (``tests/test_bus_contract.py``) for every bus:

- ``publish(topic, envelope)`` appends an envelope to a topic's stream.
- ``subscribe(topic, group=G)``: competing consumers. Each envelope goes to one member of G.
  A group created after messages were published still receives them (streams are retained,
  up to ``maxlen`` per topic).
- ``subscribe(topic)`` without a group: fan-out. Every such subscriber receives every envelope
  published after it subscribed.
- A group delivery must be acknowledged. One not acknowledged within ``visibility_timeout_s``
  is redelivered (to whichever member asks next), with ``delivery_count`` incremented; after
  ``max_deliveries`` it goes to the dead-letter topic with the reason instead, and if it
  has a ``reply_to`` topic an ``error`` envelope (code ``max_deliveries``) answering it goes
  there, so its sender learns at once that the task failed. A consumer still working on a
  delivery keeps it by calling ``touch()`` within every visibility timeout, so only a dead
  or stalled holder loses it.
- A received message that is malformed, oversized, unsigned or forged is never handed to the
  consumer: it goes to ``rede.dead`` as an ``error`` envelope naming what was wrong, and is
  counted in ``stats.rejected`` and ``stats.dead_lettered``: once, not once per reader (the
  first to claim it writes it, :meth:`Bus.first_rejection`); ``rede.dead`` keeps the newest
  ``dead_maxlen`` entries.
- Ephemeral topics (reply and inbox topics, :attr:`Topic.ephemeral`) belong to their
  subscriber: only ``subscribe`` creates one's stream, a live subscriber keeps it (a group or
  a fan-out one alike), and its owner deletes it when done (the orchestrator its run's reply
  topic, an agent its inbox). Publishing never creates or extends one: a publish to an
  ephemeral topic whose stream is gone (its run ended, its agent stopped or died) is dropped,
  counted in ``stats.dropped_no_stream`` and returns ``""``; a late reply never crashes its
  sender. A stream whose subscribers all went without deleting it (its owner was killed)
  expires at most ``ephemeral_ttl_s`` after the last one went, so it cannot stay for ever.

Optionally, a bus that can store values (Redis) keeps agent cards with a time to live
(:meth:`Bus.store_card`, :meth:`Bus.snapshot_cards`), so a process that joins later sees the
live agents at once instead of after their next heartbeat. Buses without storage keep none.

A bus that talks to a server (Redis) reports when it loses and regains it
(:meth:`Bus.watch_reachability`): while it cannot reach its server no heartbeat can arrive,
so the registry does not count that silence against any agent. The in-process bus is always
reachable.

:meth:`Bus.backlog` tells how much work a group has not finished: entries not yet delivered
to it, delivered but not acknowledged, and how long the oldest undelivered one has waited.
A spawner in any process reads load from it, not from the calls its own process made.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Self

from rede.errors import ProtocolError
from rede.protocol.codec import DEFAULT_MAX_MESSAGE_BYTES, Codec, lenient_text
from rede.protocol.messages import AgentCard, Envelope, ErrorPayload
from rede.protocol.topics import Topic

if TYPE_CHECKING:
    from rede.protocol.identity import KeySet

log = logging.getLogger(__name__)


@dataclass
class BusOptions:
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    visibility_timeout_s: float = 30.0
    max_deliveries: int = 5
    maxlen: int = 10_000
    """Entries retained per topic stream (approximate for Redis)."""
    dead_maxlen: int = 1_000
    """Entries retained in the dead-letter stream (``rede.dead``)."""
    signing_key: str | None = None
    keys: KeySet | None = None
    """Per-agent identities: each envelope signed by its sender's key (see ``identity``)."""
    ephemeral_ttl_s: float = 3600.0
    """How long an ephemeral topic (reply, inbox) outlives its last live subscriber when no
    one deletes it (its owner was killed); live subscribers renew it, publishes never do."""
    reconnect_timeout_s: float = 30.0
    """A networked bus: how long a call keeps retrying after the server was lost."""
    first_connect_timeout_s: float = 3.0
    """...and how long before the first connection ever made (a wrong address, a server not
    started) is given up: a misconfiguration should fail in seconds."""

    def __post_init__(self) -> None:
        if self.ephemeral_ttl_s <= 0:
            raise ValueError(f"ephemeral_ttl_s must be > 0, not {self.ephemeral_ttl_s!r}")

    def codec(self) -> Codec:
        return Codec(max_bytes=self.max_message_bytes, signing_key=self.signing_key, keys=self.keys)

    def maxlen_for(self, topic: Topic) -> int:
        return self.dead_maxlen if topic.kind == "dead" else self.maxlen


@dataclass
class BusStats:
    published: int = 0
    delivered: int = 0
    redelivered: int = 0
    acked: int = 0
    dead_lettered: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    """Entries refused here, by reason: malformed, too_large, signature, max_deliveries."""
    dropped_no_stream: int = 0
    """Publishes to an ephemeral topic whose stream was gone (deleted or expired): dropped,
    as a late reply to a finished run has no one to read it."""


@dataclass(frozen=True)
class Backlog:
    """A consumer group's unfinished work on one topic (see :meth:`Bus.backlog`)."""

    waiting: int = 0
    """Entries not yet delivered to the group (a group not created yet: the whole stream,
    which it would receive)."""
    pending: int = 0
    """Entries delivered to a member and not acknowledged: being worked on, or held by a
    member that died (until another claims them)."""
    oldest_wait_s: float = 0.0
    """Age of the oldest waiting entry; 0 when none waits."""

    @property
    def unfinished(self) -> int:
        return self.waiting + self.pending

    def __add__(self, other: Backlog) -> Backlog:
        return Backlog(
            self.waiting + other.waiting,
            self.pending + other.pending,
            max(self.oldest_wait_s, other.oldest_wait_s),
        )


class StoredCard(NamedTuple):
    """An agent card kept by the bus, and how long it has left before it expires."""

    card: AgentCard
    expires_in_s: float


class Delivery(abc.ABC):
    """One envelope handed to one consumer."""

    envelope: Envelope
    topic: Topic
    message_id: str
    delivery_count: int

    @abc.abstractmethod
    async def ack(self) -> None:
        """Mark the delivery done; it will not be redelivered."""

    @abc.abstractmethod
    async def nack(self) -> None:
        """Give the delivery back now, for immediate redelivery to any member."""

    @abc.abstractmethod
    async def touch(self) -> bool:
        """Restart the visibility timeout of a delivery still being worked on. False when it
        is no longer this consumer's: another member claimed it (this one stalled past the
        timeout), or it was acknowledged or deleted. Fan-out deliveries: always True."""


class Subscription(abc.ABC):
    topic: Topic
    group: str | None
    consumer: str

    @abc.abstractmethod
    async def receive(self, timeout: float | None = None) -> Delivery:
        """The next delivery. Raises ``TimeoutError`` after ``timeout`` seconds, and
        ``ClosedBusError`` once the subscription or its bus is closed."""

    @abc.abstractmethod
    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Delivery:
        from rede.errors import ClosedBusError

        try:
            return await self.receive()
        except ClosedBusError:
            raise StopAsyncIteration from None


KEPT_IN_PROCESS = 10_000
"""How many values :meth:`Bus.remember` keeps in this process (a bus without a server)."""


class Bus(abc.ABC):
    """Publish-subscribe with consumer groups, acknowledgements and dead letters."""

    options: BusOptions
    codec: Codec
    stats: BusStats

    def __init__(self, options: BusOptions | None = None) -> None:
        self.options = options or BusOptions()
        self.codec = self.options.codec()
        self.stats = BusStats()
        self._kept: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        self._rejections: OrderedDict[str, None] = OrderedDict()

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """Where other processes can reach this bus (``memory://`` is this process only)."""

    async def publish(self, topic: Topic, envelope: Envelope) -> str:
        """Validate, encode (and sign) an envelope and append it to ``topic``; the entry id,
        or ``""`` when the topic is ephemeral and its stream is gone (see the module).

        Raises ``MessageTooLarge`` before anything is sent if it is over the limit."""
        data = self.codec.encode(envelope)
        message_id = await self.publish_raw(topic, data)
        return message_id

    def publish_now(self, topic: Topic, envelope: Envelope) -> str | None:
        """Publish at once, without awaiting, where the bus can (the in-process one has no
        I/O to wait for): the entry id as :meth:`publish` gives it. None where it cannot;
        the caller then awaits :meth:`publish`. Observers' events take this path, so a run
        need not start a task per event."""
        return None

    def listened(self, topic: Topic) -> bool:
        """Whether a publish to ``topic`` may reach anyone. False only where the bus knows
        that nobody does or will: no fan-out subscriber and no consumer group (the
        in-process bus knows its subscribers). A publisher of best-effort messages nobody
        must receive (observers' events) may then skip making them. The default, True: a
        bus whose subscribers live in other processes cannot tell."""
        return True

    @abc.abstractmethod
    async def publish_raw(self, topic: Topic, data: bytes) -> str:
        """Append bytes as they are. For bridges and tests: receivers still validate them."""

    def _dropped(self, topic: Topic) -> str:
        """Count (and log) a publish to an ephemeral topic whose stream is gone."""
        self.stats.dropped_no_stream += 1
        log.debug("dropped a message to %s: its stream is gone (deleted or expired)", topic)
        return ""

    @abc.abstractmethod
    async def subscribe(
        self, topic: Topic, *, group: str | None = None, consumer: str | None = None
    ) -> Subscription: ...

    @abc.abstractmethod
    async def delete(self, topic: Topic) -> None:
        """Drop a topic's stream and groups (a finished run's reply topic)."""

    @abc.abstractmethod
    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ agent cards

    async def store_card(self, card: AgentCard, ttl_s: float) -> None:
        """Keep ``card`` for ``ttl_s`` seconds; every heartbeat stores it again. The default
        keeps nothing: on a bus without storage, heartbeats alone tell who is live."""
        return None

    async def drop_card(self, agent_id: str) -> None:
        """Forget a stored card at once (its agent is stopping cleanly)."""
        return None

    async def snapshot_cards(self) -> list[StoredCard]:
        """Every stored card that has not expired, with the seconds it has left."""
        return []

    # ------------------------------------------------------------------ shared values

    keeps_objects = True
    """Whether :meth:`remember` keeps a Python object as it is (this process's store) rather
    than bytes (a server's): :mod:`rede.runtime.once` then skips encoding its replies."""

    async def remember(self, key: str, value: Any, ttl_s: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl_s`` seconds where every process on this bus
        can read it (agents' idempotent replies, :mod:`rede.runtime.once`): bytes, or any
        object on a bus that :attr:`keeps_objects`. The default keeps it in this process,
        which is every process of an in-process bus: the last ``KEPT_IN_PROCESS`` values, the
        oldest forgotten first (a resumed run then redoes that work: at least once, as ever)."""
        kept = self._kept
        kept[key] = (value, time.monotonic() + ttl_s)
        kept.move_to_end(key)
        while len(kept) > KEPT_IN_PROCESS:
            kept.popitem(last=False)

    async def claim(self, key: str, value: Any, ttl_s: float) -> Any:
        """Keep ``value`` under ``key`` unless something is kept there: None if it is now
        kept, else what was kept (in one step: two claimants never both get None)."""
        held, until = self._kept.get(key, (None, 0.0))
        if held is not None and until > time.monotonic():
            return held
        await self.remember(key, value, ttl_s)
        return None

    # ------------------------------------------------------------------ reachability

    def watch_reachability(self, callback: Callable[[bool], None]) -> Callable[[], None]:
        """Call ``callback(False)`` when the bus loses its server and ``callback(True)`` when
        it reaches it again (at once with False if it is unreachable now); returns a function
        that stops the watch. The default never calls: a bus without a server is always
        reachable."""
        return _unwatched

    # ------------------------------------------------------------------ load

    async def backlog(self, topic: Topic, group: str) -> Backlog:
        """What ``group`` has not finished on ``topic``: waiting, pending, and the age of the
        oldest waiting entry. A topic nobody published to has an empty backlog."""
        raise NotImplementedError(f"{type(self).__name__} does not report backlogs")

    # ------------------------------------------------------------------ shared helpers

    def dead_letter_envelope(self, topic: Topic, raw: bytes, code: str, reason: str) -> Envelope:
        return Envelope(
            sender="bus",
            payload=ErrorPayload(
                code=code,
                message=f"{topic}: {reason}",
                raw=lenient_text(raw, limit=min(2000, self.options.max_message_bytes // 4)),
            ),
        )

    async def first_rejection(self, digest: str) -> bool:
        """Whether this reader is the first to reject the entry ``digest`` names (a hash of
        its topic and bytes); the default remembers the last ``KEPT_IN_PROCESS`` in this
        process, which is every reader of an in-process bus."""
        seen = self._rejections
        if digest in seen:
            return False
        seen[digest] = None
        while len(seen) > KEPT_IN_PROCESS:
            seen.popitem(last=False)
        return True

    async def _dead_letter(self, topic: Topic, raw: bytes, code: str, reason: str) -> None:
        self.stats.rejected[code] += 1
        if code != "max_deliveries":  # an entry given up on is acknowledged by one reader
            digest = hashlib.sha256(f"{topic}\0".encode() + raw).hexdigest()[:32]
            if not await self.first_rejection(digest):
                return  # another reader of the same entry dead-lettered it already
        self.stats.dead_lettered += 1
        envelope = self.dead_letter_envelope(topic, raw, code, reason)
        try:
            data = self.codec.encode(envelope)
        except ProtocolError as exc:  # no key to sign with here: counted, not written
            log.warning("could not write a dead letter for %s (%s): %s", topic, code, exc)
            return
        await self.publish_raw(Topic.dead(), data)

    async def _give_up(self, topic: Topic, raw: bytes, reason: str, by: str = "bus") -> None:
        """Dead-letter an envelope no member acknowledged in ``max_deliveries`` deliveries,
        and answer it on its ``reply_to`` topic with the reason, as ``by`` (the consumer that
        gave up: its agent's key signs it): a task is reported failed, never silently lost."""
        await self._dead_letter(topic, raw, "max_deliveries", reason)
        try:
            envelope = self.codec.decode(raw)
            reply_topic = Topic.from_str(envelope.reply_to or "")
        except (ProtocolError, ValueError):
            return  # not an envelope that expects an answer
        notice = ErrorPayload(code="max_deliveries", message=f"{topic}: {reason}")
        await self.publish(reply_topic, envelope.reply(notice, sender=self.codec.as_sender(by)))

    async def _decode_or_dead_letter(self, topic: Topic, raw: bytes) -> Envelope | None:
        """Decode received bytes; on failure dead-letter them and return None."""
        try:
            return self.codec.decode(raw)
        except ProtocolError as exc:
            code = {
                "MessageTooLarge": "too_large",
                "SignatureError": "signature",
            }.get(type(exc).__name__, "malformed")
            await self._dead_letter(topic, raw, code, str(exc))
            return None


def _unwatched() -> None:
    return None
