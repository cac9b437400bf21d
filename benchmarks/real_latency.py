"""Latency with real tokens: the demo network against one model, both on SmolLM2-135M.

Every figure comes from one run of this script, on one machine, on one loaded model:

- ``one model``: the request sent straight to SmolLM2, streamed.
- ``network (planner)``: the demo network end to end (``rede demo --real``'s set-up: every
  agent on the one SmolLM2, 2 parallel slots sharing the cores, prefix caching on).
- ``network``, ``1 slot``, ``no prefix cache``, ``llama.cpp server``: the same network on one
  fixed plan (two research steps in parallel, a reviewed write, the synthesis), so that the
  only change between rows is fan-out (2 slots sharing the cores, 2 slots of 1 thread each,
  or 1 slot with both cores), prefix
  caching (a slot keeps its last prompt's KV cache: on or off) or where the model runs (in
  this process, or ``python -m llama_cpp.server`` with 2 threads through the openai backend).

For each: wall time; the critical path of model time (the longest chain of dependent model
calls, each counted for the time it held a slot, or its HTTP round trip for the server); the
network's overhead over it (wall / critical path); the time to the first token of the
answer (the synthesis call's first token, measured by streaming every call; the network does
not yet stream its answer to the caller); completion tokens per second of wall time; and
"prompt": the calls' time to their first token added up, which is what prefix caching cuts
(the prompt's evaluation, plus any wait for a free slot).

Run (a few minutes on 2 cores):
    PYTHONPATH=src python benchmarks/real_latency.py [--server] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import smollm  # noqa: E402
from rede import Network  # noqa: E402
from rede.cli.app import DEMO_REQUEST, demo_network_path  # noqa: E402
from rede.cli.real import real_demo_config  # noqa: E402
from rede.config import NetworkConfig  # noqa: E402
from rede.models import ChatModel, ModelRequest, ModelResponse, StreamChunk  # noqa: E402
from rede.models._engine import Engines  # noqa: E402
from rede.models._structured import DialectMemory  # noqa: E402
from rede.models.llamacpp import LlamaCppModel  # noqa: E402
from rede.models.openai import OpenAIModel  # noqa: E402
from rede.orchestration.plan import Plan, parse_plan  # noqa: E402

PLAN = {
    "intent": "compare two backbones",
    "steps": [
        {"id": "s1", "capability": "research",
         "instruction": "List the strengths and weaknesses of Redis Streams for a small team"},
        {"id": "s2", "capability": "research",
         "instruction": "List the strengths and weaknesses of Apache Kafka for a small team"},
        {"id": "s3", "capability": "write", "depends_on": ["s1", "s2"], "review": True,
         "instruction": "Compare Redis Streams and Apache Kafka and recommend one"},
    ],
}  # fmt: skip
MAX_TOKENS = 160


class Timed(ChatModel):
    """A model whose every call is streamed, noting when its first token came."""

    def __init__(self, inner: ChatModel, calls: list[dict[str, Any]], *, streamed: bool) -> None:
        self.inner, self.calls, self.streamed = inner, calls, streamed
        self.name, self.source, self.price = inner.name, inner.source, inner.price

    async def complete(self, request: ModelRequest) -> ModelResponse:
        if request.temperature is None:  # llama.cpp's server samples at 0.8 by default
            request = request.model_copy(update={"temperature": 0.0})
        start = time.perf_counter()
        first: float | None = None
        response: ModelResponse | None = None
        if self.streamed:
            async for chunk in self.inner.stream(request):
                first = first or (time.perf_counter() if chunk.delta else None)
                response = chunk.response or response
        else:
            response = await self.inner.complete(request)
        assert response is not None
        self.calls.append(
            {"capability": request.metadata.get("capability"), "start": start, "first": first,
             "end": time.perf_counter(), "completion": response.usage.completion_tokens}
        )  # fmt: skip
        return response

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        yield StreamChunk(response=await self.complete(request))

    async def aclose(self) -> None:
        await self.inner.aclose()


async def one_model(engines: Engines) -> dict[str, Any]:
    """The request in one call, on a slot of the network's own engine (1 thread)."""
    model = LlamaCppModel("smollm2", engines=engines, max_tokens=MAX_TOKENS)
    model.engine  # noqa: B018 - loaded before the clock starts, as the network's is by then
    request = ModelRequest.of(DEMO_REQUEST)
    start = time.perf_counter()
    first = None
    async for chunk in model.stream(request):
        first = first or (time.perf_counter() if chunk.delta else None)
        if chunk.response is not None:
            done = chunk.response
    wall = time.perf_counter() - start
    await model.aclose()
    return {"wall_s": wall, "critical_s": done.usage.latency_s, "ttft_s": (first or start) - start,
            "completion": done.usage.completion_tokens, "calls": 1,
            "prompt_s": (first or start) - start}  # fmt: skip


async def network(
    make: Any, *, plan: Plan | None, streamed: bool = True
) -> dict[str, Any]:
    conf = NetworkConfig.from_dict(real_demo_config(demo_network_path()))
    calls: list[dict[str, Any]] = []
    models = {name: Timed(make(name), calls, streamed=streamed) for name in conf.models}
    async with Network(conf, models=models) as net:
        start = time.perf_counter()
        result = await net.ask(DEMO_REQUEST, plan=plan)
    synthesis = [c for c in calls if c["capability"] == "synthesise"]
    first = synthesis[-1]["first"] if synthesis and synthesis[-1]["first"] else None
    return {
        "status": result.status, "wall_s": result.wall_time_s,
        "critical_s": result.critical_path_s, "critical_path": result.critical_path,
        "ttft_s": (first - start) if first else None,
        "completion": sum(c["completion"] for c in calls), "calls": len(calls),
        "prompt_s": sum(c["first"] - c["start"] for c in calls if c["first"]),
        "plan": [(s.id, s.capability, s.depends_on) for s in result.steps if s.kind == "step"],
    }  # fmt: skip


def in_process(
    engines: Engines, *, slots: int = 2, cache: bool = True, threads: int | None = None
) -> Any:
    """Every model on one engine of ``slots`` slots (the cores shared among the calls
    running, unless ``threads`` fixes each call's)."""

    def make(name: str) -> ChatModel:
        return LlamaCppModel("smollm2", slots=slots, threads=threads, cache_prompt=cache,
                             engines=engines, max_tokens=MAX_TOKENS)  # fmt: skip

    return make


def over_server(url: str) -> Any:
    dialects = DialectMemory()

    def make(name: str) -> ChatModel:
        return OpenAIModel("smollm2", base_url=url, seed=0, max_tokens=MAX_TOKENS,
                           dialects=dialects, timeout_s=120)  # fmt: skip

    return make


async def ttft(model: LlamaCppModel, request: ModelRequest) -> tuple[float, float]:
    """A streamed call's time to its first token and its whole time."""
    start = time.perf_counter()
    first = None
    async for chunk in model.stream(request):
        first = first or (time.perf_counter() if chunk.delta else None)
    return (first or start) - start, time.perf_counter() - start


async def fan_out(engines: Engines, repeats: int) -> dict[str, Any]:
    """Two independent research calls at once: on 2 slots sharing the cores, and queued on
    1 slot that has them all."""
    asks = [ModelRequest.of(f"List three facts about {topic}.", max_tokens=64)
            for topic in ("Redis Streams", "Apache Kafka")]  # fmt: skip
    walls: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeats):  # interleaved, so that the machine's load falls on both alike
        for slots in (2, 1):
            model = LlamaCppModel("smollm2", slots=slots, engines=engines)
            model.engine  # noqa: B018 - loaded before the clock starts
            start = time.perf_counter()
            await asyncio.gather(*(model.complete(a) for a in asks))
            walls[slots].append(time.perf_counter() - start)
            await model.aclose()
    return {"2_slots_s": walls[2], "1_slot_s": walls[1]}


async def prefix_cache(engines: Engines, repeats: int) -> dict[str, Any]:
    """A call whose prompt shares a long prefix with the slot's last one (as a refine call
    shares its draft's): time to first token with the slot's KV cache kept, and cleared."""
    context = " ".join(f"Fact {i}: Redis Streams keeps an append-only log per key." for i in
                       range(40))  # fmt: skip
    first, second = (ModelRequest.of(f"{context}\n\n{q}", max_tokens=8) for q in
                     ("Summarise the facts.", "Which product is this about?"))  # fmt: skip
    out: dict[str, list[float]] = {"cached_s": [], "cleared_s": []}
    for _ in range(repeats):
        for cache, key in ((True, "cached_s"), (False, "cleared_s")):
            model = LlamaCppModel("smollm2", slots=1, threads=1, engines=engines,
                                  cache_prompt=cache)  # fmt: skip
            await model.complete(first)  # the slot now holds the shared prefix
            out[key].append((await ttft(model, second))[0])
            await model.aclose()
    probe = LlamaCppModel("smollm2", slots=1, threads=1, engines=engines)
    out["prompt_tokens"] = (await probe.complete(second)).usage.prompt_tokens
    await probe.aclose()
    return out


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    plan = parse_plan(json.dumps(PLAN), {"research", "write"}, max_steps=6)
    engines = Engines()
    rows: list[dict[str, Any]] = []
    runs: list[tuple[str, Any]] = [
        ("one model", lambda: one_model(engines)),
        ("network (planner)", lambda: network(in_process(engines), plan=None)),
        ("network, 2 slots", lambda: network(in_process(engines), plan=plan)),
        ("network, 2 slots x 1 thread",
         lambda: network(in_process(engines, threads=1), plan=plan)),
        ("network, 1 slot", lambda: network(in_process(engines, slots=1), plan=plan)),
        ("network, no prefix cache", lambda: network(in_process(engines, cache=False), plan=plan)),
    ]
    for name, run in [] if args.only_micro else runs:
        rows.append({"run": name, **await run()})
        report(rows[-1])
    fan = await fan_out(engines, args.repeats)
    print(f"fan-out, 2 research calls: 2 slots {median(fan['2_slots_s']):.2f} s, queued on 1 "
          f"slot {median(fan['1_slot_s']):.2f} s (median of {args.repeats}; "
          f"{fan})", flush=True)  # fmt: skip
    cache = await prefix_cache(engines, args.repeats)
    print(f"prefix cache, {cache['prompt_tokens']}-token prompt sharing its prefix: TTFT "
          f"{median(cache['cached_s']):.2f} s cached, {median(cache['cleared_s']):.2f} s "
          f"cleared (median of {args.repeats}; {cache})", flush=True)  # fmt: skip
    rows.append({"run": "micro", "fan_out": fan, "prefix_cache": cache})
    if args.server:
        with smollm.server(smollm.model_path(), threads=2) as url:
            rows.append({"run": "network, llama.cpp server", **await network(
                over_server(url), plan=plan, streamed=False)})  # fmt: skip
            report(rows[-1])
    return rows


def report(row: dict[str, Any]) -> None:
    ttft = f"{row['ttft_s']:.2f}" if row.get("ttft_s") is not None else "-"
    ratio = row["wall_s"] / row["critical_s"] if row["critical_s"] else float("nan")
    print(
        f"{row['run']:<28} wall {row['wall_s']:6.2f} s  critical path {row['critical_s']:6.2f} s"
        f"  overhead x{ratio:4.2f}  answer TTFT {ttft:>6} s  {row['calls']:2d} calls  "
        f"prompt {row['prompt_s']:5.2f} s  "
        f"{row['completion'] / row['wall_s']:5.1f} tok/s {row.get('status', '')}",
        flush=True,
    )
    if row.get("plan"):
        print(f"{'':<28} plan {row['plan']}  path {' -> '.join(row['critical_path'])}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", action="store_true", help="also via llama.cpp's server")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--repeats", type=int, default=3, help="of each micro-measure")
    parser.add_argument("--only-micro", action="store_true", help="skip the network runs")
    options = parser.parse_args()
    print("real model, SmolLM2-135M, weak (Q4_1, llama.cpp, CPU)", flush=True)
    result = asyncio.run(main(options))
    if options.json:
        with contextlib.suppress(OSError):
            options.json.write_text(json.dumps(result, indent=1))
