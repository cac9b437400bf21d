"""What signing costs per hop: unsigned, one shared HMAC key, per-agent Ed25519 identities.

    python benchmarks/signing.py                 # codec and Redis round trips, 3 rounds
    python benchmarks/signing.py --n 300 --rounds 1 --json out.json

A hop is one envelope published by one party and received by another. Two figures per mode,
all modes measured in the same run, rounds rotating the order so slow spells hit all alike:

- ``codec``: CPU per hop in one process: encode (sign) a ~1 KB Task envelope and decode
  (verify) it, as publisher and receiver do; microseconds, median of ``--n`` hops.
- ``redis``: a request/reply round trip over Rede's Redis bus (two hops: the task and its
  result), requester and responder on buses of their own as two processes would be; median
  and p99 in milliseconds (the exchange of ``bus_latency.py``).

The ratio column is each mode against unsigned, in the same run. The script starts its own
``redis-server`` on a free loopback port and stops it when done.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bus_latency import build, latency, make_task, padding_for, redis_server
from rede.bus import BusOptions
from rede.protocol.codec import Codec
from rede.protocol.identity import KeySet, new_key
from rede.protocol.topics import Topic

MODES = ("unsigned", "hmac", "ed25519")


def options(mode: str, keys: Path) -> BusOptions:
    if mode == "hmac":
        return BusOptions(signing_key="a-shared-benchmark-key")
    if mode == "ed25519":
        return BusOptions(keys=KeySet.load(keys))
    return BusOptions()


def codec_hop_us(codec: Codec, n: int, pad: str) -> float:
    env = make_task(Topic.reply("run-bench"), pad)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        codec.decode(codec.encode(env))
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


async def redis_round_trip_ms(url: str, opts: BusOptions, n: int, pad: str) -> list[float]:
    ex = await build("redis", url, pad, opts)
    async with asyncio.TaskGroup() as tg:
        server = tg.create_task(ex.serve())
        try:
            out = await latency(ex, n, warmup=50)
        finally:
            server.cancel()
    await ex.close()
    return [t * 1000 for t in out]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(args: argparse.Namespace, url: str, keys: Path) -> dict[str, Any]:
    pad = padding_for(1024)
    codec_us: dict[str, list[float]] = {m: [] for m in MODES}
    trips: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        order = MODES[r % 3 :] + MODES[: r % 3]
        for mode in order:
            opts = options(mode, keys)
            codec_us[mode].append(codec_hop_us(opts.codec(), args.n * 10, pad))
            trips[mode] += await redis_round_trip_ms(url, opts, args.n, pad)
    rows = {}
    for mode in MODES:
        rows[mode] = {
            "codec_us_per_hop": statistics.median(codec_us[mode]),
            "redis_rtt_p50_ms": pct(trips[mode], 0.5),
            "redis_rtt_p99_ms": pct(trips[mode], 0.99),
        }
    base = rows["unsigned"]
    for row in rows.values():
        row["codec_ratio"] = row["codec_us_per_hop"] / base["codec_us_per_hop"]
        row["redis_p50_ratio"] = row["redis_rtt_p50_ms"] / base["redis_rtt_p50_ms"]
    return rows


def table(rows: dict[str, dict[str, float]]) -> str:
    lines = [
        "| mode | codec us/hop | ratio | Redis RTT p50 ms | p99 ms | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for mode, r in rows.items():
        lines.append(
            f"| {mode} | {r['codec_us_per_hop']:.1f} | {r['codec_ratio']:.2f}x | "
            f"{r['redis_rtt_p50_ms']:.3f} | {r['redis_rtt_p99_ms']:.3f} | "
            f"{r['redis_p50_ratio']:.2f}x |"
        )
    return "\n".join(lines)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="Redis round trips per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rede-keys-") as tmp:
        keys = Path(tmp)
        new_key(keys, "requester", "orchestrator")
        new_key(keys, "responder", "agent")
        with redis_server(args.redis_server) as url:
            rows = asyncio.run(measure(args, url, keys))
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"python": sys.version.split()[0], "rows": rows}, indent=2))


if __name__ == "__main__":
    cli()
