"""The in-process bus: asyncio, one event loop, the embedded default.

It keeps the same semantics as the Redis bus (streams retained per topic, consumer groups
with pending entries, redelivery after a visibility timeout, dead letters). Without a signing
key, :meth:`MemoryBus.publish` carries the validated envelope object itself: its size is
measured once against the limit (``MessageTooLarge`` before anything is sent, as on the
wire), and receivers share the frozen envelope instead of each parsing bytes. With a signing
key every envelope travels as signed bytes, and ``publish_raw`` always carries bytes,
validated (and dead-lettered if bad) on receipt, exactly as on the wire.

Ephemeral topics (reply, inbox) live as their Redis keys do: ``subscribe`` creates the
stream, and publishing to one that does not exist drops the message (counted in
``stats.dropped_no_stream``) instead of creating it. While a subscription to it is open the
stream never expires; once its last subscriber closed without a ``delete``, the stream is
dropped ``ephemeral_ttl_s`` later, when it is next looked at (publish, subscribe, backlog) or
by a sweep that a publish runs at most once per ``min(1 s, ephemeral_ttl_s)``, so streams
nobody looks at again go too.
"""

from __future__ import annotations

import asyncio

from rede.bus._base import Backlog, Bus, BusOptions, Delivery, Subscription
from rede.bus._stream import Entry, Group, Pending, Stream
from rede.errors import ClosedBusError
from rede.protocol.messages import Envelope, new_id
from rede.protocol.topics import Topic


class _MemoryDelivery(Delivery):
    def __init__(
        self,
        sub: _GroupSubscription | None,
        envelope: Envelope,
        topic: Topic,
        seq: int,
        count: int,
    ) -> None:
        self._sub = sub
        self._seq = seq
        self.envelope = envelope
        self.topic = topic
        self.message_id = str(seq)
        self.delivery_count = count

    async def ack(self) -> None:
        if self._sub is not None:
            self._sub._ack(self._seq)

    async def nack(self) -> None:
        if self._sub is not None:
            self._sub._nack(self._seq)

    async def touch(self) -> bool:
        return self._sub is None or self._sub._touch(self._seq)


class MemoryBus(Bus):
    """In-process bus. All subscribers must live on the event loop that publishes."""

    def __init__(self, options: BusOptions | None = None) -> None:
        super().__init__(options)
        self._streams: dict[str, Stream] = {}
        self._ephemeral: set[str] = set()
        """Keys of the ephemeral streams, which the sweep looks at."""
        self._next_sweep = 0.0
        self._last_seq = 0
        self._closed = False

    @property
    def url(self) -> str:
        return "memory://"

    def _stream(self, topic: Topic) -> Stream:
        """The topic's stream, made if missing (by a subscribe, or a durable topic's publish)."""
        key = str(topic)
        stream = self._existing(key)
        if stream is None:
            now = asyncio.get_running_loop().time()
            stream = self._streams[key] = Stream(0, now, topic.ephemeral)
            if topic.ephemeral:
                self._ephemeral.add(key)
        return stream

    def _existing(self, key: str) -> Stream | None:
        """The stream at ``key``, unless it is missing or has just expired."""
        stream = self._streams.get(key)
        if stream is not None and stream.ephemeral:
            self._expire(key, stream, asyncio.get_running_loop().time())
            stream = self._streams.get(key)
        return stream

    def _expire(self, key: str, stream: Stream, now: float) -> None:
        """Drop an ephemeral stream no one has subscribed to for ``ephemeral_ttl_s``, as
        Redis expires a key no live subscriber renews."""
        if stream.fanout or stream.members:
            return
        if now - stream.idle_since >= self.options.ephemeral_ttl_s:
            del self._streams[key]
            self._ephemeral.discard(key)

    def _sweep(self, now: float) -> None:
        """Expire every abandoned ephemeral stream; run at most once per ``min(1 s, ttl)``."""
        self._next_sweep = now + min(1.0, self.options.ephemeral_ttl_s)
        for key in list(self._ephemeral):
            stream = self._streams.get(key)
            if stream is None:
                self._ephemeral.discard(key)
            else:
                self._expire(key, stream, now)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedBusError("the memory bus is closed")

    async def publish(self, topic: Topic, envelope: Envelope) -> str:
        return self.publish_now(topic, envelope)

    def publish_now(self, topic: Topic, envelope: Envelope) -> str:
        if self.codec.signing:  # signed bytes, checked on receipt as on the wire
            return self._append(topic, self.codec.encode(envelope))
        self.codec.check_size(envelope)
        return self._append(topic, envelope)

    async def publish_raw(self, topic: Topic, data: bytes) -> str:
        return self._append(topic, data)

    def listened(self, topic: Topic) -> bool:
        stream = self._streams.get(str(topic))
        return stream is not None and bool(stream.fanout or stream.groups)

    def _append(self, topic: Topic, data: Entry) -> str:
        self._check_open()
        if topic.ephemeral:
            found = self._existing(str(topic))
            if found is None:  # its owner deleted it or is gone: no one would read this
                return self._dropped(topic)
            stream = found
        else:
            stream = self._stream(topic)
        self._last_seq += 1
        seq = self._last_seq
        now = asyncio.get_running_loop().time()
        stream.entries[seq] = data
        stream.stamps[seq] = now
        if self._ephemeral and now >= self._next_sweep:
            self._sweep(now)
        self.stats.published += 1
        for sub in stream.fanout:
            sub.queue.put_nowait((seq, data))
        self._trim(stream)
        stream.notify()
        return str(seq)

    def _trim(self, stream: Stream) -> None:
        while len(stream.entries) > self.options.maxlen:
            stream.drop_oldest()
        if not stream.groups:
            return
        floor = min(min([g.last + 1, *g.pending.keys()]) for g in stream.groups.values())
        while stream.entries:
            seq = next(iter(stream.entries))
            if seq >= floor:
                break
            stream.drop_oldest()

    async def subscribe(
        self, topic: Topic, *, group: str | None = None, consumer: str | None = None
    ) -> Subscription:
        self._check_open()
        stream = self._stream(topic)
        consumer = consumer or new_id("c-")
        if group is None:
            sub = _FanoutSubscription(self, topic, stream, consumer)
            stream.fanout.add(sub)
            return sub
        if group not in stream.groups:
            first = next(iter(stream.entries), None)
            stream.groups[group] = Group(last=first - 1 if first is not None else self._last_seq)
        return _GroupSubscription(self, topic, stream, group, consumer)

    async def backlog(self, topic: Topic, group: str) -> Backlog:
        self._check_open()
        stream = self._existing(str(topic))
        if stream is None:
            return Backlog()
        state = stream.groups.get(group)
        last = state.last if state is not None else -1
        waiting = [seq for seq in stream.entries if seq > last]
        oldest = 0.0
        if waiting:
            now = asyncio.get_running_loop().time()
            oldest = max(0.0, now - stream.stamps.get(waiting[0], now))
        pending = len(state.pending) if state is not None else 0
        return Backlog(len(waiting), pending, oldest)

    async def delete(self, topic: Topic) -> None:
        key = str(topic)
        self._ephemeral.discard(key)
        stream = self._streams.pop(key, None)
        if stream is not None:
            for sub in [*stream.fanout, *stream.members]:
                sub.closed = True
            stream.notify()

    async def aclose(self) -> None:
        self._closed = True
        for stream in self._streams.values():
            for sub in [*stream.fanout, *stream.members]:
                sub.closed = True
            stream.notify()


async def _envelope(bus: MemoryBus, topic: Topic, entry: Entry) -> Envelope | None:
    """The entry's envelope: itself if carried as one, else its bytes decoded (and
    dead-lettered, returning None, if they are not a valid envelope)."""
    if isinstance(entry, Envelope):
        return entry
    return await bus._decode_or_dead_letter(topic, entry)


class _FanoutSubscription(Subscription):
    def __init__(self, bus: MemoryBus, topic: Topic, stream: Stream, consumer: str) -> None:
        self._bus = bus
        self._stream = stream
        self.topic = topic
        self.group = None
        self.consumer = consumer
        self.queue: asyncio.Queue[tuple[int, Entry]] = asyncio.Queue()
        self.closed = False

    async def receive(self, timeout: float | None = None) -> Delivery:
        if timeout is None:
            return await self._receive()
        async with asyncio.timeout(timeout):
            return await self._receive()

    async def _receive(self) -> Delivery:
        while True:
            if self.closed or self._bus._closed:
                raise ClosedBusError(f"subscription to {self.topic} is closed")
            if self.queue.empty():
                await self._stream.changed()
                continue
            seq, raw = self.queue.get_nowait()
            envelope = await _envelope(self._bus, self.topic, raw)
            if envelope is None:
                continue
            self._bus.stats.delivered += 1
            return _MemoryDelivery(None, envelope, self.topic, seq, 1)

    async def aclose(self) -> None:
        self.closed = True
        self._stream.leave(self)


class _GroupSubscription(Subscription):
    def __init__(
        self, bus: MemoryBus, topic: Topic, stream: Stream, group: str, consumer: str
    ) -> None:
        self._bus = bus
        self._stream = stream
        self.topic = topic
        self.group = group
        self.consumer = consumer
        self.closed = False
        stream.members.add(self)

    @property
    def _state(self) -> Group:
        state = self._stream.groups.get(self.group or "")
        if state is None:
            raise ClosedBusError(f"topic {self.topic} was deleted")
        return state

    def _ack(self, seq: int) -> None:
        state = self._stream.groups.get(self.group or "")
        if state is not None and state.pending.pop(seq, None) is not None:
            self._bus.stats.acked += 1
            self._bus._trim(self._stream)

    def _nack(self, seq: int) -> None:
        state = self._stream.groups.get(self.group or "")
        if state is not None and seq in state.pending:
            state.pending[seq].deadline = 0.0
            self._stream.notify()

    def _touch(self, seq: int) -> bool:
        state = self._stream.groups.get(self.group or "")
        pending = state.pending.get(seq) if state is not None else None
        if pending is None or pending.consumer != self.consumer:
            return False
        now = asyncio.get_running_loop().time()
        pending.deadline = now + self._bus.options.visibility_timeout_s
        return True

    async def receive(self, timeout: float | None = None) -> Delivery:
        if timeout is None:
            return await self._receive()
        async with asyncio.timeout(timeout):
            return await self._receive()

    async def _receive(self) -> Delivery:
        loop = asyncio.get_running_loop()
        opts = self._bus.options
        while True:
            if self.closed or self._bus._closed:
                raise ClosedBusError(f"subscription to {self.topic} is closed")
            state = self._state
            now = loop.time()
            # 1. claim a delivery whose visibility timeout ran out (oldest first)
            claimed = await self._claim_expired(state, now)
            if claimed is not None:
                return claimed
            # 2. the next new entry
            seq = next((s for s in self._stream.entries if s > state.last), None)
            if seq is not None:
                state.last = seq
                raw = self._stream.entries[seq]
                envelope = await _envelope(self._bus, self.topic, raw)
                if envelope is None:
                    self._bus._trim(self._stream)
                    continue
                state.pending[seq] = Pending(self.consumer, now + opts.visibility_timeout_s, 1)
                self._bus.stats.delivered += 1
                return _MemoryDelivery(self, envelope, self.topic, seq, 1)
            # 3. wait for a publish, a nack, or the next pending expiry (no await since the
            # checks above, so no change can slip in between)
            until = None
            if state.pending:
                until = min(p.deadline for p in state.pending.values())
            await self._stream.changed(until)

    async def _claim_expired(self, state: Group, now: float) -> Delivery | None:
        opts = self._bus.options
        for seq, pending in list(state.pending.items()):
            if pending.deadline > now:
                continue
            raw = self._stream.entries.get(seq)
            if raw is None:  # trimmed away by maxlen
                del state.pending[seq]
                continue
            if pending.count >= opts.max_deliveries:
                del state.pending[seq]
                await self._bus._give_up(
                    self.topic,
                    raw if isinstance(raw, bytes) else self._bus.codec.encode(raw),
                    f"not acknowledged after {pending.count} deliveries to group {self.group!r}",
                    self.consumer,
                )
                self._bus._trim(self._stream)
                continue
            pending.count += 1
            pending.consumer = self.consumer
            pending.deadline = now + opts.visibility_timeout_s
            envelope = raw if isinstance(raw, Envelope) else self._bus.codec.decode(raw)
            self._bus.stats.delivered += 1
            self._bus.stats.redelivered += 1
            return _MemoryDelivery(self, envelope, self.topic, seq, pending.count)
        return None

    async def aclose(self) -> None:
        self.closed = True
        self._stream.leave(self)
