"""The Redis bus: Redis Streams with consumer groups, for agents in many processes and machines.

One stream per topic (key ``namespace + str(topic)``), one field ``d`` per entry holding the
encoded envelope, so size limits, validation and signing behave exactly as on the memory bus.

- ``publish``: ``XADD key MAXLEN ~ options.maxlen``. Trimming is approximate (whole stream
  nodes), so a stream holds a little more than ``maxlen`` entries, never unboundedly many. A
  group or fan-out reader that falls more than ``maxlen`` entries behind loses the oldest.
- Ephemeral topics (reply, inbox) belong to their subscribers. A publish is
  ``XADD key NOMKSTREAM MAXLEN ~ ...``, one command as for any topic: it never creates the
  key nor touches its TTL, and where the key is gone (the run ended and its orchestrator
  deleted it, or its owner died and it expired) Redis answers nil and the message is dropped
  (``stats.dropped_no_stream``). ``subscribe`` creates the key with
  ``PEXPIRE key <ephemeral_ttl_s>`` (a group: ``XGROUP CREATE ... MKSTREAM``; fan-out: in one
  ``MULTI``, a throwaway group created with ``MKSTREAM`` and destroyed at once, which leaves
  the stream), and one task per bus renews the TTL every third of it on each key that bus has
  an open subscription on (a pipeline of ``PEXPIRE``, which never creates a key), so a
  subscriber blocked or idle for hours keeps its stream. A key found gone under a live
  subscriber (another process deleted it, or this one stalled past the TTL) is created again.
  A killed process stops renewing and its keys expire within the TTL; a clean owner deletes
  its topic (``DEL``).
- ``subscribe(topic, group=G)``: ``XGROUP CREATE key G 0 MKSTREAM``, so a group created after
  publishing still gets the retained backlog; ``XREADGROUP ... COUNT 1 BLOCK`` reads one entry
  at a time, so members of a group share the work. A group that disappears (Redis restarted
  without persistence, an ephemeral key deleted under it) is created again and reading
  carries on.
- Redelivery: every ``visibility_timeout_s / 4`` (at most 5 s) a group reader runs
  ``XPENDING key G IDLE <visibility>`` and ``XCLAIM``s the entries whose holder has been silent
  for the visibility timeout; the blocking read is cut into slices no longer than that, so a
  blocked reader still wakes to claim. The delivery count comes from ``XPENDING``; an entry
  already delivered ``max_deliveries`` times is acknowledged and dead-lettered
  (``max_deliveries``) instead, and its sender told (see ``Bus._give_up``). (``XPENDING`` +
  ``XCLAIM`` rather than ``XAUTOCLAIM``: the claim must see the count before it hands the
  entry over, and ``XAUTOCLAIM`` does not tell.)
- ``touch``: the holder, if it still holds the entry (``XPENDING`` for that id), runs
  ``XCLAIM key G <itself> 0 <id> JUSTID``, which resets the entry's idle time without counting
  a delivery: a live consumer working longer than the visibility timeout keeps its task.
- ``nack``: ``XCLAIM ... IDLE <visibility + 1 s> JUSTID`` marks the entry as silent for longer
  than the visibility timeout, so the next claim by any member takes it at once, with its
  delivery count incremented. The entry keeps its place and its count; nothing is re-added.
- ``subscribe(topic)`` without a group: fan-out. The stream's last id is captured at subscribe
  time and the subscription keeps its own cursor (``XREAD``).
- ``backlog(topic, group)``: ``XINFO GROUPS`` gives the group's ``lag`` (entries not yet
  delivered) and ``pending``; the oldest waiting entry is the first after the group's
  ``last-delivered-id`` (``XRANGE key (<id> + COUNT 1``), and its age is ``TIME`` minus
  the milliseconds of its id, both on the server's clock. A group not created yet would
  receive the whole stream; a missing stream has no backlog.
- Agent cards: ``SET <namespace>rede:card:<agent id> <signed heartbeat envelope> PX <ttl>``
  on every heartbeat, ``DEL`` on a clean stop; :meth:`RedisBus.snapshot_cards` reads them all
  (``SCAN`` + ``GET``/``PTTL``), so a registry that starts later sees the live agents at once.
  A card that fails validation or its signature is dead-lettered like any received envelope.

Connection loss (``ConnectionError``/``TimeoutError`` from redis-py) never crashes a publisher
or a consumer: the call is retried with exponential backoff for up to ``reconnect_timeout_s``
(30 s by default) and then fails with :class:`~rede.errors.BusError`; the bus reports when
it loses and reaches Redis again (:mod:`rede.bus._reconnect`). Unacknowledged entries
stay in Redis's pending lists meanwhile, so nothing is lost; a publish retried after a lost
reply may be stored twice (delivery is at least once, as with any redelivery).

The URL is redis-py's: ``redis://[[user]:password@]host:port/db`` (an ACL user, or only a
password for the default user), ``rediss://`` for TLS (``?ssl_ca_certs=/path/ca.pem``,
``ssl_certfile``/``ssl_keyfile`` for client certificates, ``ssl_cert_reqs=none`` to skip
verification), ``unix:///path/redis.sock``. :attr:`RedisBus.url` shows it without the password.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from rede.bus._base import Backlog, Bus, BusOptions, Delivery, StoredCard, Subscription
from rede.bus._client import client, cluster_hint, is_cluster_url, server_time, stream_key
from rede.bus._reconnect import RETRYABLE, Reconnecting
from rede.errors import BusError, ClosedBusError
from rede.protocol.messages import AgentCard, Envelope, Heartbeat, new_id
from rede.protocol.topics import Topic

log = logging.getLogger(__name__)

T = TypeVar("T")

FIELD = b"d"
"""The one field of a stream entry: the encoded envelope."""
MAX_BLOCK_S = 5.0
"""Longest single blocking read; a blocked reader wakes at least this often."""
CLAIM_BATCH = 16
FANOUT_BATCH = 64


def redact_url(url: str) -> str:
    """The URL without its password (in the user part or the query string)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        user = user.split(":", 1)[0]
        netloc = f"{user}@{host}" if user else host
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "password"], safe="/")
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def _glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis ``MATCH`` pattern."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _is_nogroup(exc: ResponseError) -> bool:
    text = str(exc)
    return text.startswith(("NOGROUP", "UNBLOCKED"))


class RedisBus(Bus):
    """A bus on Redis Streams. Every process that uses the same URL and namespace shares it.

    ``namespace`` prefixes every stream key (``"team-a:"``), so several networks or test runs
    can share one Redis. ``reconnect_timeout_s`` bounds how long a call keeps retrying while
    Redis is unreachable; ``connect_timeout_s`` bounds one attempt to connect.

    There is no read timeout on the socket, on purpose: redis-py enforces one on writes with
    ``asyncio.wait_for``, which on Python 3.11 can swallow a cancellation that lands as the
    write completes, so a cancelled consumer would keep running. A dead peer is found by TCP
    keepalive instead (redis-py's defaults: probes after 30 s idle, 3 probes 5 s apart).
    """

    def __init__(
        self,
        url: str,
        options: BusOptions | None = None,
        *,
        namespace: str = "",
        reconnect_timeout_s: float | None = None,
        connect_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(options)
        self._url = url
        self.namespace = namespace
        reconnect_timeout_s = reconnect_timeout_s or self.options.reconnect_timeout_s
        self.reconnect_timeout_s = reconnect_timeout_s
        self.cluster = is_cluster_url(url)
        self._redis: aioredis.Redis = client(url, connect_timeout_s=connect_timeout_s)
        self._closed = False
        self._closing = asyncio.Event()
        first = min(reconnect_timeout_s, self.options.first_connect_timeout_s)
        self._calls = Reconnecting(self.url, reconnect_timeout_s, self._check_open, first_s=first)
        self._subs: dict[str, set[_RedisSubscription]] = {}
        self._keeper: asyncio.Task[None] | None = None
        """Renews the TTL of the ephemeral keys with an open subscription (see the module)."""

    @property
    def url(self) -> str:
        return redact_url(self._url)

    def key(self, topic: Topic) -> str:
        """The Redis key of a topic's stream."""
        return stream_key(self.namespace, topic, self.cluster)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedBusError(f"the Redis bus at {self.url} is closed")

    # ------------------------------------------------------------------ calls with retry

    def watch_reachability(self, callback: Callable[[bool], None]) -> Callable[[], None]:
        return self._calls.watch(callback)

    async def _call(self, op: Callable[[], Awaitable[T]], deadline: float | None = None) -> T:
        """Run one Redis call, retried across a lost connection (see ``_reconnect``)."""
        try:
            return await self._calls.call(op, deadline)
        except ResponseError as exc:
            hint = cluster_hint(self.url, exc)
            if hint is None:
                raise
            raise hint from None

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.options.ephemeral_ttl_s * 1000))

    async def _ensure_group(self, key: str, group: str, ephemeral: bool = False) -> None:
        """``XGROUP CREATE ... MKSTREAM``; on an ephemeral topic with ``PEXPIRE`` in the same
        round trip: the subscriber sets the TTL that the bus then renews while it is open."""
        r = self._redis
        if not ephemeral:
            try:
                await self._call(lambda: r.xgroup_create(key, group, id="0", mkstream=True))
            except ResponseError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise
            return
        ttl_ms = self._ttl_ms

        async def create() -> Any:
            async with r.pipeline(transaction=False) as pipe:
                pipe.xgroup_create(key, group, id="0", mkstream=True)
                pipe.pexpire(key, ttl_ms)
                created, _ = await pipe.execute(raise_on_error=False)
            return created

        created = await self._call(create)
        if isinstance(created, ResponseError) and not str(created).startswith("BUSYGROUP"):
            raise created

    async def _ensure_stream(self, key: str) -> Any:
        """Create an ephemeral stream if missing, with no group and no entry (a throwaway
        group made with ``MKSTREAM`` and destroyed, in one ``MULTI``), renew its TTL, and
        return its last entry (``XREVRANGE ... COUNT 1``: a fan-out reader's cursor)."""
        r = self._redis
        ttl_ms = self._ttl_ms
        scratch = new_id("rede-mkstream-")

        async def make() -> Any:
            async with r.pipeline(transaction=True) as pipe:
                pipe.xgroup_create(key, scratch, id="$", mkstream=True)
                pipe.xgroup_destroy(key, scratch)
                pipe.pexpire(key, ttl_ms)
                pipe.xrevrange(key, "+", "-", count=1)
                replies = await pipe.execute(raise_on_error=False)
            for reply in replies:
                if isinstance(reply, ResponseError):
                    raise reply
            return replies[-1]

        return await self._call(make)

    def _track(self, sub: _RedisSubscription) -> None:
        self._subs.setdefault(sub.key, set()).add(sub)
        if sub.topic.ephemeral and (self._keeper is None or self._keeper.done()):
            self._keeper = asyncio.create_task(self._keep_alive(), name="rede-ephemeral-ttl")

    def _live_ephemeral_keys(self) -> list[str]:
        return [
            key
            for key, subs in self._subs.items()
            if any(sub.topic.ephemeral and not sub.closed for sub in subs)
        ]

    async def _keep_alive(self) -> None:
        """Every third of the TTL, ``PEXPIRE`` each ephemeral key with an open subscription;
        create again one found gone. Ends when the bus closes, or when no such subscription
        is left (the next one starts it again)."""
        r = self._redis
        while True:
            try:
                async with asyncio.timeout(self.options.ephemeral_ttl_s / 3):
                    await self._closing.wait()
                return
            except TimeoutError:
                pass
            keys = self._live_ephemeral_keys()
            if not keys:
                return
            try:
                async with r.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.pexpire(key, self._ttl_ms)
                    renewed = await pipe.execute()
                for key, ok in zip(keys, renewed, strict=True):
                    if not ok and key in self._live_ephemeral_keys():
                        log.warning("ephemeral stream %s vanished under a subscriber", key)
                        await self._ensure_stream(key)
            except (*RETRYABLE, ResponseError, BusError) as exc:  # again on the next tick
                if self._closed:
                    return
                log.warning("could not renew ephemeral streams on %s: %s", self.url, exc)

    # ------------------------------------------------------------------ the interface

    async def publish_raw(self, topic: Topic, data: bytes) -> str:
        self._check_open()
        key = self.key(topic)
        maxlen = self.options.maxlen_for(topic)
        r = self._redis
        nomkstream = topic.ephemeral  # only a subscriber makes (and keeps) an ephemeral stream
        message_id = await self._call(
            lambda: r.xadd(
                key, {FIELD: data}, maxlen=maxlen, approximate=True, nomkstream=nomkstream
            )
        )
        if message_id is None:  # NOMKSTREAM and no stream: its owner deleted it or is gone
            return self._dropped(topic)
        self.stats.published += 1
        return message_id.decode() if isinstance(message_id, bytes) else str(message_id)

    async def subscribe(
        self, topic: Topic, *, group: str | None = None, consumer: str | None = None
    ) -> Subscription:
        self._check_open()
        key = self.key(topic)
        consumer = consumer or new_id("c-")
        sub: _RedisSubscription
        if group is None:
            if topic.ephemeral:
                last = await self._ensure_stream(key)
            else:
                last = await self._call(lambda: self._redis.xrevrange(key, "+", "-", count=1))
            cursor = last[0][0] if last else b"0-0"
            sub = _FanoutSubscription(self, topic, key, consumer, cursor)
        else:
            await self._ensure_group(key, group, topic.ephemeral)
            sub = _GroupSubscription(self, topic, key, group, consumer)
        self._track(sub)
        return sub

    async def backlog(self, topic: Topic, group: str) -> Backlog:
        self._check_open()
        key = self.key(topic)
        r = self._redis

        async def read() -> Backlog:
            if not await r.exists(key):
                return Backlog()
            try:
                groups = await r.xinfo_groups(key)
            except ResponseError:  # the stream went between the two calls
                return Backlog()
            info = next((g for g in groups if _text(g["name"]) == group), None)
            if info is None:
                waiting, pending, after = int(await r.xlen(key)), 0, "-"
            else:
                pending = int(info["pending"])
                after = "(" + _text(info["last-delivered-id"])
                lag = info.get("lag")
                if lag is None:  # Redis cannot tell (entries deleted inside the range)
                    waiting = len(await r.xrange(key, after, "+", count=self.options.maxlen))
                else:
                    waiting = int(lag)
            oldest = 0.0
            if waiting:
                first = await r.xrange(key, after, "+", count=1)
                if first:
                    born_ms = int(_text(first[0][0]).split("-", 1)[0])
                    oldest = max(0.0, await server_time(r, key) - born_ms / 1000)
            return Backlog(waiting, pending, oldest)

        return await self._call(read)

    async def delete(self, topic: Topic) -> None:
        self._check_open()
        key = self.key(topic)
        for sub in self._subs.pop(key, set()):
            sub._shut()
        await self._call(lambda: self._redis.delete(key))

    # ------------------------------------------------------------------ agent cards

    def card_key(self, agent_id: str) -> str:
        """The Redis key of one agent's stored card."""
        return f"{self.namespace}rede:card:{agent_id}"

    async def store_card(self, card: AgentCard, ttl_s: float) -> None:
        self._check_open()
        key = self.card_key(card.id)
        data = self.codec.encode(Envelope(sender=card.id, payload=Heartbeat(card=card)))
        ttl_ms = max(1, int(ttl_s * 1000))
        await self._call(lambda: self._redis.set(key, data, px=ttl_ms))

    keeps_objects = False

    async def remember(self, key: str, value: Any, ttl_s: float) -> None:
        self._check_open()
        name, ttl_ms = f"{self.namespace}rede:kept:{key}", max(1, int(ttl_s * 1000))
        await self._call(lambda: self._redis.set(name, value, px=ttl_ms))

    async def claim(self, key: str, value: Any, ttl_s: float) -> Any:
        self._check_open()
        name, ttl_ms = f"{self.namespace}rede:kept:{key}", max(1, int(ttl_s * 1000))
        # SET NX GET (Redis 7.0+, Valkey): set if absent and return what was there, at once
        held = self._call(lambda: self._redis.set(name, value, px=ttl_ms, nx=True, get=True))
        return await held  # type: ignore[no-any-return]

    async def first_rejection(self, digest: str) -> bool:  # one SET NX for every process
        name = f"{self.namespace}rede:rejected:{digest}"
        return bool(await self._call(lambda: self._redis.set(name, 1, px=3_600_000, nx=True)))

    async def drop_card(self, agent_id: str) -> None:
        self._check_open()
        key = self.card_key(agent_id)
        await self._call(lambda: self._redis.delete(key))

    async def snapshot_cards(self) -> list[StoredCard]:
        self._check_open()
        pattern = _glob_escape(self.namespace) + "rede:card:*"
        r = self._redis

        async def read() -> list[tuple[bytes | None, int]]:
            keys = [key async for key in r.scan_iter(match=pattern, count=1000)]
            if not keys:
                return []
            async with r.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(key)
                    pipe.pttl(key)
                values = await pipe.execute()
            return list(zip(values[::2], values[1::2], strict=True))

        stored = []
        for raw, ttl_ms in await self._call(read):
            if raw is None or ttl_ms == -2:  # expired or deleted since the scan
                continue
            envelope = await self._decode_or_dead_letter(Topic.registry(), raw)
            if envelope is None:
                continue
            payload = envelope.payload
            if not isinstance(payload, Heartbeat) or payload.card.id != envelope.sender:
                await self._dead_letter(
                    Topic.registry(),
                    raw,
                    "unexpected_kind",
                    "a stored agent card must be a heartbeat sent by the card's own agent",
                )
                continue
            left = ttl_ms / 1000 if ttl_ms >= 0 else float("inf")  # -1: stored without a TTL
            stored.append(StoredCard(payload.card, left))
        return stored

    async def aclose(self) -> None:
        if self._closed:
            return
        subs = [sub for subs in self._subs.values() for sub in subs]
        await asyncio.gather(*(sub.aclose() for sub in subs))
        self._closed = True
        self._closing.set()
        self._calls.wake()
        self._subs.clear()
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        await self._redis.aclose()


class _RedisDelivery(Delivery):
    def __init__(
        self,
        sub: _GroupSubscription | None,
        envelope: Envelope,
        topic: Topic,
        message_id: str,
        count: int,
    ) -> None:
        self._sub = sub
        self.envelope = envelope
        self.topic = topic
        self.message_id = message_id
        self.delivery_count = count

    async def ack(self) -> None:
        if self._sub is not None:
            await self._sub._ack(self.message_id)

    async def nack(self) -> None:
        if self._sub is not None:
            await self._sub._nack(self.message_id)

    async def touch(self) -> bool:
        return self._sub is None or await self._sub._touch(self.message_id)


class _RedisSubscription(Subscription):
    """What both kinds share: the stream key, closing, and a blocking read that a close
    interrupts (by cancelling the waiting task, which redis-py answers by dropping the
    connection it was reading on)."""

    def __init__(self, bus: RedisBus, topic: Topic, key: str, consumer: str) -> None:
        self._bus = bus
        self.topic = topic
        self.key = key
        self.consumer = consumer
        self.closed = False
        self._waiters: set[asyncio.Task[Any]] = set()
        self._woken: set[asyncio.Task[Any]] = set()

    def _check_open(self) -> None:
        if self.closed or self._bus._closed:
            raise ClosedBusError(f"subscription to {self.topic} is closed")

    async def _blocking(self, op: Callable[[], Awaitable[T]], deadline: float | None) -> T:
        task = asyncio.current_task()
        assert task is not None
        self._waiters.add(task)
        try:
            return await self._bus._call(op, deadline)
        except asyncio.CancelledError:
            if task in self._woken:
                self._woken.discard(task)
                if task.uncancel() == 0:  # only our wake-up, no one else's cancellation
                    raise ClosedBusError(f"subscription to {self.topic} is closed") from None
            raise
        finally:
            self._waiters.discard(task)

    def _shut(self) -> None:
        """Mark closed and wake every receive blocked on Redis."""
        self.closed = True
        current = asyncio.current_task()
        for waiter in self._waiters - self._woken:
            if waiter is not current:
                self._woken.add(waiter)
                waiter.cancel()

    async def aclose(self) -> None:
        if self.closed:
            return
        self._shut()
        subs = self._bus._subs.get(self.key)
        if subs is not None:
            subs.discard(self)

    @staticmethod
    def _block_ms(deadline: float | None, until: float | None = None) -> int | None:
        """How long the next read may block, in ms; None (do not block) under 1 ms, as
        ``BLOCK 0`` would block for ever. Computed when the read is (re)sent."""
        now = asyncio.get_running_loop().time()
        wait = MAX_BLOCK_S
        if deadline is not None:
            wait = min(wait, deadline - now)
        if until is not None:
            wait = min(wait, until - now)
        ms = int(wait * 1000)
        return ms if ms >= 1 else None


class _FanoutSubscription(_RedisSubscription):
    def __init__(self, bus: RedisBus, topic: Topic, key: str, consumer: str, cursor: Any) -> None:
        super().__init__(bus, topic, key, consumer)
        self.group = None
        self._cursor = cursor
        self._buffer: deque[tuple[Any, dict[bytes, bytes]]] = deque()

    async def receive(self, timeout: float | None = None) -> Delivery:
        bus = self._bus
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            self._check_open()
            while self._buffer:
                entry_id, fields = self._buffer.popleft()
                envelope = await bus._decode_or_dead_letter(self.topic, fields.get(FIELD, b""))
                if envelope is not None:
                    bus.stats.delivered += 1
                    return _RedisDelivery(None, envelope, self.topic, entry_id.decode(), 1)
            try:
                reply = await self._blocking(
                    lambda: bus._redis.xread(
                        {self.key: self._cursor}, count=FANOUT_BATCH, block=self._block_ms(deadline)
                    ),
                    deadline,
                )
            except ResponseError as exc:  # a failover ended the read: read again, from the cursor
                if not str(exc).startswith("UNBLOCKED"):
                    raise
                reply = None
            if reply:
                entries = reply[0][1]
                self._buffer.extend(entries)
                self._cursor = entries[-1][0]
            elif deadline is not None and loop.time() >= deadline:
                raise TimeoutError


class _GroupSubscription(_RedisSubscription):
    def __init__(self, bus: RedisBus, topic: Topic, key: str, group: str, consumer: str) -> None:
        super().__init__(bus, topic, key, consumer)
        self.group: str = group
        vis = bus.options.visibility_timeout_s
        self._vis_ms = max(1, int(vis * 1000))
        self._claim_every = min(max(vis / 4, 0.005), MAX_BLOCK_S)
        self._next_claim = 0.0
        self._new = {key: ">"}

    async def _group_call(self, op: Callable[[], Awaitable[T]], deadline: float | None) -> T:
        """A call that needs the group; if it vanished (Redis restarted without persistence,
        or another process deleted the topic) create it again and carry on."""
        try:
            return await self._blocking(op, deadline)
        except ResponseError as exc:
            if not _is_nogroup(exc):
                raise
        self._check_open()
        log.info("group %r on %s is gone; creating it again", self.group, self.key)
        await self._bus._ensure_group(self.key, self.group, self.topic.ephemeral)
        return await self._blocking(op, deadline)

    async def receive(self, timeout: float | None = None) -> Delivery:
        bus = self._bus
        r = bus._redis
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            self._check_open()
            if loop.time() >= self._next_claim:
                claimed = await self._claim_expired(deadline)
                if claimed is not None:
                    return claimed
            reply = await self._group_call(
                lambda: r.xreadgroup(
                    self.group,
                    self.consumer,
                    self._new,
                    count=1,
                    block=self._block_ms(deadline, self._next_claim),
                ),
                deadline,
            )
            if reply:
                entry_id, fields = reply[0][1][0]
                message_id = entry_id.decode()
                envelope = await bus._decode_or_dead_letter(self.topic, fields.get(FIELD, b""))
                if envelope is None:
                    await self._xack(message_id)
                    continue
                bus.stats.delivered += 1
                return _RedisDelivery(self, envelope, self.topic, message_id, 1)
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError

    async def _claim_expired(self, deadline: float | None) -> Delivery | None:
        """Take over the oldest delivery whose holder has been silent for the visibility
        timeout; dead-letter the ones delivered ``max_deliveries`` times already."""
        bus = self._bus
        r = bus._redis
        key, group, vis_ms = self.key, self.group, self._vis_ms
        rows = await self._group_call(
            lambda: r.xpending_range(key, group, "-", "+", CLAIM_BATCH, idle=vis_ms), deadline
        )
        self._next_claim = asyncio.get_running_loop().time() + self._claim_every
        for row in rows:
            entry_id = row["message_id"]
            count = int(row["times_delivered"])
            claim = partial(r.xclaim, key, group, self.consumer, vis_ms, [entry_id])
            claimed = await self._group_call(claim, deadline)
            if not claimed:  # another member took it, or it was trimmed (and left the list)
                continue
            message_id = entry_id.decode()
            fields = claimed[0][1]
            if not fields:  # trimmed away on a Redis older than 7.0
                await self._xack(message_id)
                continue
            raw = fields.get(FIELD, b"")
            if count >= bus.options.max_deliveries:
                if await self._xack(message_id):
                    await bus._give_up(
                        self.topic,
                        raw,
                        f"not acknowledged after {count} deliveries to group {group!r}",
                        self.consumer,
                    )
                continue
            envelope = await bus._decode_or_dead_letter(self.topic, raw)
            if envelope is None:
                await self._xack(message_id)
                continue
            bus.stats.delivered += 1
            bus.stats.redelivered += 1
            self._next_claim = 0.0  # more may be due: look again on the next receive
            return _RedisDelivery(self, envelope, self.topic, message_id, count + 1)
        if len(rows) == CLAIM_BATCH:
            self._next_claim = 0.0
        return None

    async def _xack(self, message_id: str) -> int:
        bus = self._bus
        try:
            return int(await bus._call(lambda: bus._redis.xack(self.key, self.group, message_id)))
        except ResponseError as exc:
            if _is_nogroup(exc):
                return 0  # the topic was deleted: nothing left to acknowledge
            raise

    async def _ack(self, message_id: str) -> None:
        self._bus._check_open()
        if await self._xack(message_id):
            self._bus.stats.acked += 1

    async def _touch(self, message_id: str) -> bool:
        bus = self._bus
        bus._check_open()
        r = bus._redis
        key, group, consumer = self.key, self.group, self.consumer
        try:
            rows = await bus._call(lambda: r.xpending_range(key, group, message_id, message_id, 1))
            if not rows or rows[0]["consumer"].decode() != consumer:
                return False
            await bus._call(lambda: r.xclaim(key, group, consumer, 0, [message_id], justid=True))
        except ResponseError as exc:
            if _is_nogroup(exc):
                return False  # the topic was deleted
            raise
        return True

    async def _nack(self, message_id: str) -> None:
        bus = self._bus
        bus._check_open()
        idle = self._vis_ms + 1000
        try:
            await bus._call(
                lambda: bus._redis.xclaim(
                    self.key, self.group, self.consumer, 0, [message_id], idle=idle, justid=True
                )
            )
        except ResponseError as exc:
            if _is_nogroup(exc):
                return  # the topic was deleted: nothing left to give back
            raise
        for sub in bus._subs.get(self.key, ()):
            if isinstance(sub, _GroupSubscription) and sub.group == self.group:
                sub._next_claim = 0.0

    async def aclose(self) -> None:
        if self.closed:
            return
        await super().aclose()
        if self._bus._closed:
            return
        # Forget this consumer if it holds nothing: a closed consumer with pending entries
        # stays, so a live member claims them after the visibility timeout.
        r = self._bus._redis
        try:
            async with asyncio.timeout(1.0):
                mine = await r.xpending_range(self.key, self.group, "-", "+", 1, self.consumer)
                if not mine:
                    await r.xgroup_delconsumer(self.key, self.group, self.consumer)
        except (TimeoutError, ResponseError, *RETRYABLE) as exc:
            log.debug("could not remove consumer %s from %s: %s", self.consumer, self.key, exc)
