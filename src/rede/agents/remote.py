"""What the agents served by another process (an MCP server, a remote A2A agent) share: the
capabilities they bring, checked against the YAML's, and their spec."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rede.agents.specialists import Specialist, SpecialistSpec
from rede.config import AgentConfig
from rede.errors import ConfigError


async def adopt_capabilities(
    agent: AgentConfig, found: set[str], what: str, close: Callable[[], Awaitable[None]]
) -> None:
    """Give ``agent`` the capabilities its remote ``found`` (``what``: "its MCP server has no
    tool", ...), or check the ones its YAML lists are among them (closing the remote if not)."""
    if agent.capabilities and not set(agent.capabilities) <= found:
        await close()
        raise ConfigError(
            f"agent {agent.name!r} lists capabilities "
            f"{', '.join(sorted(set(agent.capabilities) - found))} that {what} for "
            f"(it has {', '.join(sorted(found)) or 'none'})"
        )
    if not agent.capabilities:
        agent.capabilities = sorted(found)


def remote_spec(agent: AgentConfig, specialist: Specialist, quality: float) -> SpecialistSpec:
    """The spec of a remote agent; ``quality`` unless the YAML says."""
    return SpecialistSpec(
        name=agent.name,
        capabilities=agent.capabilities,
        specialist=specialist,
        quality=agent.quality if agent.quality is not None else quality,
        tier=agent.tier,
        # the runner holds a slot while waiting on each capability's topic: a remote with
        # more capabilities than slots would leave some never served
        concurrency=max(agent.concurrency, len(agent.capabilities)),
    )
