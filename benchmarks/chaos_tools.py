"""Tools for the chaos soak (``benchmarks/chaos.py``): they stand in for models.

Each call sleeps a little (simulated work) and appends two lines to a JSONL file of its own
process in ``$REDE_CHAOS_OUT``: ``start`` before the work (a model call is paid once it is
started, so a call cut short by a SIGKILL still counts) and ``end`` after it. A task's
idempotency key (``run/step/attempt/capability``) that appears in two ``start`` lines is a
model call paid twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from rede.protocol.messages import Task

_log: Any = None

PLAN = {
    "intent": "chaos",
    "steps": [
        {"id": "a", "capability": "research", "instruction": "look up part a"},
        {"id": "b", "capability": "analyse", "instruction": "work out part b"},
        {"id": "c", "capability": "analyse", "instruction": "combine", "depends_on": ["a", "b"]},
    ],
}


def _write(phase: str, task: Task) -> None:
    global _log
    if _log is None:
        out = Path(os.environ["REDE_CHAOS_OUT"])
        _log = open(out / f"calls-{os.getpid()}.jsonl", "a", buffering=1)
    line = {"key": task.idempotency_key, "pid": os.getpid(), "t": time.time(), "phase": phase}
    _log.write(json.dumps(line) + "\n")  # line-buffered: on disk before the work starts


async def _work(task: Task) -> None:
    _write("start", task)
    low, high = (float(x) for x in os.environ.get("REDE_CHAOS_WORK_S", "0.05,0.2").split(","))
    await asyncio.sleep(random.uniform(low, high))
    _write("end", task)


async def plan(task: Task) -> str:
    await _work(task)
    return json.dumps(PLAN)


async def work(task: Task) -> str:
    await _work(task)
    return f"done: {task.instruction}"


async def synthesise(task: Task) -> str:
    await _work(task)
    return "answer: " + "; ".join(item.content for item in task.context)
