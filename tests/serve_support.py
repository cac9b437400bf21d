"""Helpers for the ``rede serve`` tests: a network whose one model waits at a gate the test
opens, and a reader of SSE streams over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from rede import ModelRequest, Network, ScriptedModel

DEMO_YAML = Path(str(resources.files("rede") / "networks" / "demo.yaml"))
"""The bundled demo network (found through the package, wherever the CLI module lives)."""


class Gate:
    """Each model call waits here for a permit; each ``open()`` gives one (so an opening
    that comes before the call is not lost). Used on the server's event loop: open it with
    ``server.call(gate.open)``."""

    def __init__(self) -> None:
        self._permits = asyncio.Semaphore(0)

    async def wait(self) -> None:
        await self._permits.acquire()

    def open(self, n: int = 1) -> None:
        for _ in range(n):
            self._permits.release()


def gated_network(gate: Gate, name: str = "gated") -> Network:
    """One agent, one capability; its model answers once the gate opens."""

    async def answer(request: ModelRequest) -> str:
        await gate.wait()
        return "the gated answer\nCONFIDENCE: 0.9"

    return Network.from_dict(
        {
            "name": name,
            "description": "A test network whose answers wait for the test.",
            "models": {"m": {"spec": "sim:7b"}},
            "agents": [{"name": "answerer", "capabilities": ["answer"], "model": "m"}],
            "heartbeat_s": 0.2,
            "agent_ttl_s": 5,
            "limits": {"step_timeout_s": 60, "wall_time_s": 120},
        },
        models={"m": ScriptedModel(answer, name="m")},
    )


def sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Parse an SSE response into ``{"id", "event", "data", "comment"}`` dicts as they come."""
    fields: dict[str, Any] = {}
    for line in response.iter_lines():
        if line == "":
            if fields:
                yield fields
            fields = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            fields[key] = _json_or_text(value) if key == "data" else value


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value  # [DONE]


def wait_closed(base_url: str, run_id: str, **headers: str) -> dict[str, Any]:
    """Follow a run's events until its ``run_closed`` event and return that event's data."""
    with httpx.stream(
        "GET", f"{base_url}/v1/runs/{run_id}/events", headers=headers, timeout=60
    ) as r:
        assert r.status_code == 200, r.read()
        for ev in sse_events(r):
            if ev.get("event") == "run_closed":
                return ev["data"]["data"]  # type: ignore[no-any-return]
    raise AssertionError(f"the events of {run_id} ended without run_closed")
