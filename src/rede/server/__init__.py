"""``rede serve``: a network as a service: an OpenAI-compatible API, runs and their live
events, A2A v1.0 and a web page, on FastAPI.

The names below are imported on first use, so ``rede.server.cli`` (loaded by every ``rede``
command) does not pull in the web stack."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rede.server.app import create_app
    from rede.server.runs import RunManager, ServedRun
    from rede.server.settings import ServerSettings

_WHERE = {
    "create_app": "rede.server.app",
    "RunManager": "rede.server.runs",
    "ServedRun": "rede.server.runs",
    "ServerSettings": "rede.server.settings",
}

__all__ = ["RunManager", "ServedRun", "ServerSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'rede.server' has no attribute {name!r}")
