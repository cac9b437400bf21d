"""Bus round trip: Rede over the memory bus and over Redis, against the raw redis-py floor.

    python benchmarks/bus_latency.py                  # the table in benchmarks/README.md
    python benchmarks/bus_latency.py --n 500 --rounds 1   # quicker
    python benchmarks/bus_latency.py --json out.json

One round trip: a requester publishes a Task envelope (about 1 KB encoded) to a task topic; a
responder, a member of a consumer group on that topic, receives it, publishes a Result
envelope (about 1 KB) to the run's reply topic and acknowledges the task; the requester,
a group member on the reply topic, receives the result and acknowledges it.

- ``memory``: Rede's in-process bus (``MemoryBus``), one event loop.
- ``redis``: Rede's ``RedisBus``, requester and responder each on a bus (a connection pool)
  of its own, as two processes would be.
- ``raw``: the floor: the same exchange in plain redis-py, no Rede code: ``XADD`` (with the
  same ``MAXLEN ~`` trimming) -> ``XREADGROUP COUNT 1 BLOCK`` -> ``XADD`` reply -> ``XACK``,
  the requester reading the reply stream with ``XREADGROUP`` and ``XACK`` too. It carries the
  very bytes Rede encodes, so payload sizes are equal; it skips building, validating and
  decoding envelopes, which is Rede's overhead.

Latency: ``--n`` sequential round trips (one in flight), after ``--warmup``. Throughput:
``--n`` round trips with ``--window`` in flight at once, one responder. Each of ``--rounds``
rounds runs every transport once, in turn (the order rotates from round to round), so slow
spells hit them alike; percentiles pool the rounds. The script starts its own
``redis-server`` on a free loopback port (no persistence) and stops it when done.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from rede.bus import Bus, BusOptions, MemoryBus
from rede.bus.redis import RedisBus
from rede.protocol.codec import Codec
from rede.protocol.messages import Envelope, Result, Task, new_id
from rede.protocol.topics import Topic

TRANSPORTS = ("memory", "redis", "raw")
TASK_TOPIC = Topic.task("echo", "echoer")
FIELD = b"d"


# --------------------------------------------------------------------------- payloads


def padding_for(target: int) -> str:
    """Instruction text that makes an encoded Task envelope about ``target`` bytes."""
    probe = make_task(Topic.reply("run-probe"), "")
    size = len(Codec().encode(probe))
    return "x" * max(0, target - size)


def make_task(reply: Topic, pad: str) -> Envelope:
    return Envelope(
        run_id=reply.parts[0],
        step_id="s1",
        sender="requester",
        reply_to=str(reply),
        payload=Task(capability="echo", instruction=pad, request="bus round trip benchmark"),
    )


def make_result(task: Envelope) -> Envelope:
    assert isinstance(task.payload, Task)
    return task.reply(Result(output=task.payload.instruction, confidence=1.0), sender="responder")


# --------------------------------------------------------------------------- Redis server


@contextmanager
def redis_server(binary: str) -> Iterator[str]:
    """A redis-server of our own on a free loopback port, without persistence."""
    with tempfile.TemporaryDirectory(prefix="rede-bench-") as tmp:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        proc = subprocess.Popen(
            [binary, *args, "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            for _ in range(1000):  # until it answers PING (~10 s at most), or exits
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                        conn.sendall(b"PING\r\n")
                        if conn.recv(16).startswith(b"+PONG"):
                            break
                except OSError:
                    pass
                try:
                    proc.wait(timeout=0.01)
                except subprocess.TimeoutExpired:
                    continue
                raise RuntimeError(f"{binary} exited with {proc.returncode}")
            else:
                raise RuntimeError(f"{binary} did not answer on port {port}")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


# --------------------------------------------------------------------------- one exchange


@dataclass
class Exchange:
    """A requester and a responder over one transport, ready to run round trips."""

    name: str
    send: Callable[[], Awaitable[None]]
    """Publish one task."""
    collect: Callable[[], Awaitable[None]]
    """Receive and acknowledge one result."""
    serve: Callable[[], Awaitable[None]]
    """The responder: answer tasks until cancelled."""
    close: Callable[[], Awaitable[None]]


async def rede_exchange(name: str, requester: Bus, responder: Bus, pad: str) -> Exchange:
    reply = Topic.reply(new_id("run-"))
    replies = await requester.subscribe(reply, group="orchestrator", consumer="requester")
    tasks = await responder.subscribe(TASK_TOPIC, group="echoer", consumer="responder")

    async def send() -> None:
        await requester.publish(TASK_TOPIC, make_task(reply, pad))

    async def collect() -> None:
        delivery = await replies.receive(timeout=30)
        await delivery.ack()

    async def serve() -> None:
        while True:
            delivery = await tasks.receive()
            task = delivery.envelope
            assert task.reply_to is not None
            await responder.publish(Topic.from_str(task.reply_to), make_result(task))
            await delivery.ack()

    async def close() -> None:
        await replies.aclose()
        await tasks.aclose()
        await requester.delete(reply)
        await requester.delete(TASK_TOPIC)
        await requester.aclose()
        if responder is not requester:
            await responder.aclose()

    return Exchange(name, send, collect, serve, close)


async def raw_exchange(url: str, pad: str, maxlen: int) -> Exchange:
    """The floor: the same messages in plain redis-py."""
    # configured as RedisBus configures its client: no socket read timeout (redis-py then
    # skips an asyncio.wait_for per command) and no client-level retries
    requester = aioredis.Redis.from_url(url, socket_timeout=None, retry=Retry(NoBackoff(), 0))
    responder = aioredis.Redis.from_url(url, socket_timeout=None, retry=Retry(NoBackoff(), 0))
    task_key, reply_key = "raw:task", f"raw:reply:{new_id()}"
    await requester.delete(task_key, reply_key)
    await requester.xgroup_create(task_key, "echoer", id="0", mkstream=True)
    await requester.xgroup_create(reply_key, "orchestrator", id="0", mkstream=True)
    codec = Codec()
    task = make_task(Topic.reply("run-raw"), pad)
    task_bytes, result_bytes = codec.encode(task), codec.encode(make_result(task))

    async def send() -> None:
        await requester.xadd(task_key, {FIELD: task_bytes}, maxlen=maxlen, approximate=True)

    async def collect() -> None:
        while True:
            got = await requester.xreadgroup(
                "orchestrator", "requester", {reply_key: ">"}, count=1, block=5000
            )
            if got:
                entry_id = got[0][1][0][0]
                await requester.xack(reply_key, "orchestrator", entry_id)
                return

    async def serve() -> None:
        while True:
            got = await responder.xreadgroup(
                "echoer", "responder", {task_key: ">"}, count=1, block=5000
            )
            if got:
                entry_id = got[0][1][0][0]
                await responder.xadd(
                    reply_key, {FIELD: result_bytes}, maxlen=maxlen, approximate=True
                )
                await responder.xack(task_key, "echoer", entry_id)

    async def close() -> None:
        await requester.delete(task_key, reply_key)
        await requester.aclose()
        await responder.aclose()

    return Exchange("raw", send, collect, serve, close)


# --------------------------------------------------------------------------- measuring


@dataclass
class Measured:
    latencies_s: list[float] = field(default_factory=list)
    throughput_s: list[float] = field(default_factory=list)
    """Round trips per second, one figure per round."""


async def latency(ex: Exchange, n: int, warmup: int) -> list[float]:
    out = []
    for i in range(warmup + n):
        t0 = time.perf_counter()
        await ex.send()
        await ex.collect()
        if i >= warmup:
            out.append(time.perf_counter() - t0)
    return out


async def throughput(ex: Exchange, n: int, window: int) -> float:
    slots = asyncio.Semaphore(window)

    async def sender() -> None:
        for _ in range(n):
            await slots.acquire()
            await ex.send()

    async def collector() -> None:
        for _ in range(n):
            await ex.collect()
            slots.release()

    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(sender())
        tg.create_task(collector())
    return n / (time.perf_counter() - t0)


async def run_one(ex: Exchange, args: argparse.Namespace, into: Measured) -> None:
    async with asyncio.TaskGroup() as tg:
        server = tg.create_task(ex.serve())
        try:
            into.latencies_s += await latency(ex, args.n, args.warmup)
            into.throughput_s.append(await throughput(ex, args.n, args.window))
        finally:
            server.cancel()
    await ex.close()


async def build(name: str, url: str, pad: str, opts: BusOptions) -> Exchange:
    if name == "memory":
        bus = MemoryBus(opts)
        return await rede_exchange(name, bus, bus, pad)
    if name == "redis":
        ns = f"bench-{new_id()}:"
        return await rede_exchange(
            name, RedisBus(url, opts, namespace=ns), RedisBus(url, opts, namespace=ns), pad
        )
    return await raw_exchange(url, pad, opts.maxlen)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(results: dict[str, Measured]) -> dict[str, dict[str, float]]:
    rows = {}
    for name, m in results.items():
        rows[name] = {
            "p50_ms": pct(m.latencies_s, 0.50) * 1e3,
            "p99_ms": pct(m.latencies_s, 0.99) * 1e3,
            "mean_ms": statistics.fmean(m.latencies_s) * 1e3,
            "throughput_per_s": statistics.median(m.throughput_s),
        }
    return rows


def table(rows: dict[str, dict[str, float]]) -> str:
    labels = {
        "memory": "Rede, MemoryBus (in-process)",
        "redis": "Rede, RedisBus",
        "raw": "raw redis-py (floor)",
    }
    floor = rows.get("raw")
    lines = [
        "| transport | p50 ms | p99 ms | round trips/s | p50 / floor | p99 / floor "
        "| throughput / floor |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in TRANSPORTS:
        if name not in rows:
            continue
        r = rows[name]
        if floor:
            ratios = (
                f"{r['p50_ms'] / floor['p50_ms']:.2f}x",
                f"{r['p99_ms'] / floor['p99_ms']:.2f}x",
                f"{r['throughput_per_s'] / floor['throughput_per_s']:.2f}x",
            )
        else:
            ratios = ("-", "-", "-")
        lines.append(
            f"| {labels[name]} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} "
            f"| {r['throughput_per_s']:,.0f} | {' | '.join(ratios)} |"
        )
    return "\n".join(lines)


async def measure(args: argparse.Namespace, url: str) -> dict[str, Any]:
    names = [n for n in TRANSPORTS if n in args.only.split(",")]
    pad = padding_for(args.size)
    sample = make_task(Topic.reply("run-sample"), pad)
    sizes = {
        "task_bytes": len(Codec().encode(sample)),
        "result_bytes": len(Codec().encode(make_result(sample))),
    }
    opts = BusOptions()
    results = {name: Measured() for name in names}
    for round_no in range(args.rounds):
        # rotate the order, so the first (slower, still warming) slot is no one's every time
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            await run_one(await build(name, url, pad, opts), args, results[name])
    return {"sizes": sizes, "rows": summarise(results)}


def versions(binary: str) -> dict[str, str]:
    out = {
        "python": platform.python_version(),
        "redis-py": redis.__version__,
        "redis-server": subprocess.run(
            [binary, "--version"], capture_output=True, text=True, check=True
        ).stdout.split()[2],
    }
    try:
        import hiredis

        out["hiredis"] = hiredis.__version__
    except ImportError:
        out["hiredis"] = "not installed"
    return out


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="round trips per measurement")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--window", type=int, default=16, help="in flight for throughput")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=1024, help="encoded task envelope bytes")
    parser.add_argument("--only", default=",".join(TRANSPORTS), help="memory,redis,raw")
    parser.add_argument("--redis-server", default=None, help="path to redis-server")
    parser.add_argument("--json", default=None, help="write the results here too")
    args = parser.parse_args()
    # stop our redis-server on SIGTERM too: exiting through Python runs the cleanup
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    binary = args.redis_server or shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found: install it or pass --redis-server PATH")
    with redis_server(binary) as url:
        out = asyncio.run(measure(args, url))
    out = {"args": vars(args), "versions": versions(binary), **out}
    print(
        f"task {out['sizes']['task_bytes']} B, result {out['sizes']['result_bytes']} B; "
        f"n={args.n} x {args.rounds} rounds, window {args.window}; "
        + ", ".join(f"{k} {v}" for k, v in out["versions"].items())
    )
    print(table(out["rows"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    cli()
