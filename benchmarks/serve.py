"""What ``rede serve`` adds to a run, and how many streaming clients it serves at once.

    python benchmarks/serve.py                       # the tables in benchmarks/README.md
    python benchmarks/serve.py --n 200 --levels 1,16 # quicker
    python benchmarks/serve.py --json out.json

Networks on zero-latency models (the ``sim`` backend at ``time_scale: 0``, so a run is only
Rede's own work): ``one`` answers in one step (one model call), ``team`` is the demo network
(plan, two research steps, a draft, a synthesis: five calls).

- **Added latency**: ``--n`` sequential runs, one at a time, after ``--warmup``. ``direct``
  calls ``await net.ask(...)`` in this process; ``served`` posts the same request to
  ``/v1/chat/completions`` (non-streaming, a kept-alive ``httpx`` connection) of a ``rede
  serve`` process on loopback. The two alternate run by run, so slow spells hit both alike;
  the added latency is ``served - direct`` at each percentile. It includes the HTTP round
  trip and JSON of both sides; ``GET /healthz`` timed in the same loop is the HTTP floor
  (the round trip of a request that does nothing).
- **Concurrent streaming clients**: for each level in ``--levels``, that many clients each
  stream ``--per-client`` completions back to back (``stream: true`` with
  ``include_usage``) from the ``team`` network. A response counts only if it ends with
  ``[DONE]`` after the answer, a ``stop`` and the usage chunk; anything else, an HTTP error
  or a connection error is **lost**. The server's ``/metrics`` count of finished runs must
  grow by exactly the number of requests. Reported: completed runs per second, and the p50
  and p99 time from request to ``[DONE]``.

The server runs in its own process (``python -m rede serve``), with ``--max-runs`` above
the largest level, the ledger in memory and no access log; the clients run in this one, so
both share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from rede import Network
from rede.server.live import free_port

ONE = """\
name: one
models:
  m: {spec: "sim:7b", seed: 1, time_scale: 0}
agents:
  - {name: answerer, capabilities: [answer], model: m}
"""


def team_yaml() -> str:
    from importlib import resources

    text = (resources.files("rede") / "networks" / "demo.yaml").read_text()
    # every model instant; the demo's names and plan shape otherwise unchanged
    text = re.sub(r"seed: (\d+)", r"seed: \1, time_scale: 0", text)
    return text.replace("name: research-team", "name: team")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ms(value: float) -> float:
    return round(value * 1000, 3)


class Server:
    def __init__(self, files: list[Path], max_runs: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "rede", "serve", *map(str, files)]
        args += ["--port", str(self.port), "--ledger", "", "--no-access-log"]
        args += ["--max-runs", str(max_runs), "--log-level", "warning"]
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)

    def wait_ready(self) -> None:
        for _ in range(600):
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read() if self.proc.stderr else "exited")
            time.sleep(0.05)
        raise RuntimeError("rede serve did not start")

    def runs_finished(self) -> int:
        text = httpx.get(self.url + "/metrics").text
        return int(
            sum(float(v) for v in re.findall(r"^rede_runs_total\{[^}]*\} (\S+)", text, re.M))
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


class MinimalHTTP:
    """HTTP/1.1 on one kept-alive socket, with nothing else: what a request costs the server
    and the loopback, without a client library's own work (httpx's is about 2 ms here)."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def __aenter__(self) -> MinimalHTTP:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)


async def added_latency(
    server: Server, files: dict[str, Path], n: int, warmup: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    request = "Compare cats and dogs as pets"
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=60) as http,
        MinimalHTTP(server.port) as raw,
    ):
        for name, path in files.items():
            times: dict[str, list[float]] = {
                k: [] for k in ("direct", "served", "floor", "served_raw", "floor_raw")
            }
            body = {"model": name, "messages": [{"role": "user", "content": request}]}
            raw_body = json.dumps(body).encode()
            async with Network.from_yaml(path) as net:
                for i in range(warmup + n):
                    t0 = time.perf_counter()
                    result = await net.ask(request)
                    t1 = time.perf_counter()
                    r = await http.post("/v1/chat/completions", json=body)
                    t2 = time.perf_counter()
                    await http.get("/healthz")
                    t3 = time.perf_counter()
                    status, _ = await raw.request("POST", "/v1/chat/completions", raw_body)
                    t4 = time.perf_counter()
                    await raw.request("GET", "/healthz")
                    t5 = time.perf_counter()
                    assert result.status == "ok" and r.status_code == status == 200, r.text
                    if i >= warmup:
                        for k, v in zip(
                            times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True
                        ):
                            times[k].append(v)
            out[name] = latency_row(result.usage.calls, times)
    return out


def latency_row(calls: int, times: dict[str, list[float]]) -> dict[str, Any]:
    direct, served, raw = times["direct"], times["served"], times["served_raw"]
    return {
        "calls_per_run": calls,
        **{
            f"{label}_{q}_ms": ms(pct(values, q))
            for label, values in (("direct", direct), ("served", served), ("served_raw", raw))
            for q in (50, 99)
        },
        "added_p50_ms": ms(pct(served, 50) - pct(direct, 50)),
        "added_p99_ms": ms(pct(served, 99) - pct(direct, 99)),
        "http_floor_p50_ms": ms(pct(times["floor"], 50)),
        "added_raw_p50_ms": ms(pct(raw, 50) - pct(direct, 50)),
        "added_raw_p99_ms": ms(pct(raw, 99) - pct(direct, 99)),
        "http_floor_raw_p50_ms": ms(pct(times["floor_raw"], 50)),
    }


async def one_stream(http: httpx.AsyncClient, body: dict[str, Any]) -> float | None:
    """Seconds to [DONE], or None if the response was not complete."""
    t0 = time.perf_counter()
    content, stop, usage, done = "", False, False, False
    try:
        async with http.stream("POST", "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                return None
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if chunk.get("usage"):
                    usage = True
                for choice in chunk.get("choices", []):
                    content += choice["delta"].get("content") or ""
                    stop = stop or choice["finish_reason"] == "stop"
    except httpx.HTTPError:
        return None
    return time.perf_counter() - t0 if done and stop and usage and content else None


async def concurrency(server: Server, level: int, per_client: int) -> dict[str, Any]:
    body = {
        "model": "team",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Compare Redis Streams and Kafka"}],
    }
    limits = httpx.Limits(max_connections=level, max_keepalive_connections=level)
    before = server.runs_finished()
    async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as http:

        async def client() -> list[float | None]:
            return [await one_stream(http, body) for _ in range(per_client)]

        t0 = time.perf_counter()
        results = await asyncio.gather(*(client() for _ in range(level)))
        wall = time.perf_counter() - t0
    times = [t for rs in results for t in rs if t is not None]
    requests = level * per_client
    recorded = server.runs_finished() - before
    return {
        "clients": level,
        "requests": requests,
        "completed": len(times),
        "lost": requests - len(times),
        "runs_recorded": recorded,
        "runs_per_s": round(len(times) / wall, 1),
        "p50_ms": ms(pct(times, 50)) if times else None,
        "p99_ms": ms(pct(times, 99)) if times else None,
        "wall_s": round(wall, 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=500, help="sequential runs per network")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--levels", default="1,16,64,256", help="concurrent clients")
    parser.add_argument("--per-client", type=int, default=4, help="completions per client")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        files = {"one": Path(tmp) / "one.yaml", "team": Path(tmp) / "team.yaml"}
        files["one"].write_text(ONE)
        files["team"].write_text(team_yaml())
        server = Server(list(files.values()), max_runs=max(levels) * 2)
        try:
            server.wait_ready()
            latency = await added_latency(server, files, args.n, args.warmup)
            for name, row in latency.items():
                print(f"latency {name}: {row}")
            rows = []
            for level in levels:
                rows.append(await concurrency(server, level, args.per_client))
                print(f"concurrency: {rows[-1]}")
        finally:
            server.stop()
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "latency": latency,
        "concurrency": rows,
    }
    print(
        "\n| network | calls / run | direct p50 / p99 (ms) | served p50 / p99 (ms) "
        "| added p50 / p99 (ms) | HTTP floor p50 (ms) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in latency.items():
        print(
            f"| {name} | {r['calls_per_run']} | {r['direct_50_ms']} / {r['direct_99_ms']} | "
            f"{r['served_50_ms']} / {r['served_99_ms']} | "
            f"{r['added_p50_ms']} / {r['added_p99_ms']} | {r['http_floor_p50_ms']} |"
        )
    print(
        "\nThe same requests from a minimal HTTP/1.1 client (one kept-alive socket, no library):"
        "\n\n| network | served p50 / p99 (ms) | added p50 / p99 (ms) | HTTP floor p50 (ms) |"
    )
    print("|---|---:|---:|---:|")
    for name, r in latency.items():
        print(
            f"| {name} | {r['served_raw_50_ms']} / {r['served_raw_99_ms']} | "
            f"{r['added_raw_p50_ms']} / {r['added_raw_p99_ms']} | "
            f"{r['http_floor_raw_p50_ms']} |"
        )
    print(
        "\n| streaming clients | requests | lost | runs recorded | runs / s | p50 (ms) | p99 (ms) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['clients']} | {r['requests']} | {r['lost']} | {r['runs_recorded']} | "
            f"{r['runs_per_s']} | {r['p50_ms']} | {r['p99_ms']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
