"""The ``mcp:`` and ``a2a:`` sections of an agent: a specialist served by another process."""

from __future__ import annotations

import re

from pydantic import Field, model_validator

from rede.config._base import NAME, _Conf


class McpConfig(_Conf):
    """An MCP server whose tools are the agent's capabilities (``mcp:`` of an agent): a
    command started over stdio, or the ``url`` of a streamable HTTP server."""

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    url: str | None = None
    tools: dict[str, str] = Field(default_factory=dict)
    """Tool name -> capability; when given, only these tools are served. Default: every
    tool, each as a capability of its own name."""
    start_timeout_s: float = Field(20, gt=0)
    call_timeout_s: float = Field(30, gt=0)
    restarts: int = Field(3, ge=0)
    """How many times a server that died is started again (stdio) or reconnected."""

    @model_validator(mode="after")
    def _one_transport(self) -> McpConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("mcp needs exactly one of 'command' (stdio) or 'url' (HTTP)")
        if self.url is not None and (self.args or self.env):
            raise ValueError("mcp 'args' and 'env' apply to a 'command', not to a 'url'")
        for cap in self.tools.values():
            if not re.match(NAME, cap):
                raise ValueError(f"mcp.tools maps to {cap!r}, which is not a capability name")
        return self


class A2aConfig(_Conf):
    """A remote A2A agent whose skills are the agent's capabilities (``a2a:`` of an agent)."""

    url: str
    """The agent's base URL; its card is read from ``/.well-known/agent-card.json``."""
    skills: dict[str, str] = Field(default_factory=dict)
    """Skill id -> capability; when given, only these skills are served."""
    timeout_s: float = Field(60, gt=0)


__all__ = ["A2aConfig", "McpConfig"]
