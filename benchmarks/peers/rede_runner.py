"""Rede: the workflow as a network described in YAML (``rede_workflow.yaml``), through the
public API: ``Network.from_yaml(..., base_url=..., model=..., api_key=...)`` and
``await net.ask(request)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from workflow import Ask

from rede.network import Network

PACKAGES = ("rede", "openai", "pydantic")
STYLE = "YAML network: planner's JSON plan, parallel research steps, reviewed write step"
NETWORK = Path(__file__).resolve().parent / "rede_workflow.yaml"
MODEL = "bench-model"


@asynccontextmanager
async def open_workflow(base_url: str, api_key: str) -> AsyncIterator[Ask]:
    net = Network.from_yaml(NETWORK, base_url=base_url, model=MODEL, api_key=api_key)
    async with net:

        async def ask(request: str) -> str:
            result = await net.ask(request)
            if result.status != "ok":
                raise RuntimeError(f"the run ended {result.status}: {result.error}")
            return result.answer

        yield ask
