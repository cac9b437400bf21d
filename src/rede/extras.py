"""Optional parts of Rede and the extras that install them.

``pip install rede`` gives the protocol, the in-process bus, orchestration, the model client,
the CLI and ``rede demo``. The rest comes with an extra; a part used without its extra fails
with one line that names the command to run (:func:`require`)."""

from __future__ import annotations

import importlib
from types import ModuleType

from rede.errors import MissingExtra

EXTRAS = {
    "serve": "rede serve: the HTTP API, the web page, A2A and Prometheus metrics",
    "redis": "the Redis bus across processes and machines, and the embedded Valkey server",
    "charts": "charts of benchmark reports (matplotlib)",
    "mcp": "MCP servers as agents and `rede mcp` (a network as an MCP server)",
    "local": "a GGUF model run in this process by llama.cpp (rede demo --real, llamacpp:)",
}
"""Each extra of ``pyproject.toml`` (beside ``all`` and ``test``) and what it is for."""


def require(what: str, extra: str, *modules: str) -> list[ModuleType]:
    """Import ``modules`` for ``what``, or raise :class:`MissingExtra` naming ``extra``."""
    found: list[ModuleType] = []
    for name in modules:
        try:
            found.append(importlib.import_module(name))
        except ImportError as exc:
            missing = getattr(exc, "name", None) or name
            raise MissingExtra(what, extra, missing) from None
    return found
