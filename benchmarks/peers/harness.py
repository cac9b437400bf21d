"""Runs one framework's workflow N times in this process and writes what it measured as JSON.

    python benchmarks/peers/harness.py --framework langgraph --base-url URL \\
        --key-prefix langgraph-0ms --n 10 --warmup 1 --out result.json

``run.py`` starts one such process per framework and server latency, each under the Python
that has the framework installed (the peers' venv, or the project's for Rede and the
baseline). Every task uses its own API key (``<prefix>-<i>``), so the server counts each
task's requests and tokens apart. Building the workflow for a task (agents, graph, crew,
network) happens before the clock starts; the clock covers the request to the final answer.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import resource
import sys
import time
import traceback
from contextlib import AbstractAsyncContextManager
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workflow import REQUEST, REVISED_MARK, Ask

FRAMEWORKS = {
    "baseline": "peer_baseline",
    "rede": "rede_runner",
    "autogen": "peer_autogen",
    "autogen_selector": "peer_autogen_selector",
    "langgraph": "peer_langgraph",
    "crewai": "peer_crewai",
}


class WorkflowModule(Protocol):
    PACKAGES: tuple[str, ...]
    """Distributions whose versions the results name."""
    STYLE: str
    """How the workflow is written in this framework, in a few words."""

    def open_workflow(self, base_url: str, api_key: str) -> AbstractAsyncContextManager[Ask]: ...


def rss_kb() -> int:
    """This process's peak resident set size so far, in KiB (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


async def measure(
    module: WorkflowModule, base_url: str, prefix: str, n: int, warmup: int
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for i in range(warmup + n):
        key = f"{prefix}-warmup-{i}" if i < warmup else f"{prefix}-{i - warmup}"
        async with module.open_workflow(base_url, key) as ask:
            start = time.perf_counter()
            answer = await ask(REQUEST)
            wall = time.perf_counter() - start
        if i >= warmup:
            runs.append(
                {
                    "key": key,
                    "wall_s": wall,
                    "final_is_revision": answer.strip().startswith(REVISED_MARK),
                    "answer_head": answer.strip()[:80],
                }
            )
    return {"runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", required=True, choices=sorted(FRAMEWORKS))
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--key-prefix", required=True)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)

    report: dict[str, Any] = {"framework": args.framework, "python": sys.version.split()[0]}
    start = time.perf_counter()
    try:
        module: WorkflowModule = importlib.import_module(FRAMEWORKS[args.framework])  # type: ignore[assignment]
        report["import_s"] = time.perf_counter() - start
        report["rss_after_import_kb"] = rss_kb()
        report["style"] = module.STYLE
        report["versions"] = {p: metadata.version(p) for p in module.PACKAGES}
        report.update(
            asyncio.run(measure(module, args.base_url, args.key_prefix, args.n, args.warmup))
        )
        report["status"] = "ok"
    except BaseException as exc:  # reported as a fact in the results, not dropped
        report["status"] = "failed"
        report["error"] = f"{type(exc).__name__}: {exc}"
        report["traceback"] = traceback.format_exc()[-4000:]
    report["peak_rss_kb"] = rss_kb()
    args.out.write_text(json.dumps(report, indent=1))
    return 0 if report["status"] == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
