"""A network as an MCP server: one tool, ``ask``, that runs a request through the network.

``rede mcp NETWORK.yaml`` serves it over stdio, the way IDEs and desktop clients start MCP
servers (nothing but the protocol is written to stdout); with ``--port``, over streamable
HTTP at ``http://HOST:PORT/mcp``. The tool's result is structured:
the answer, the run's status, cost, tokens and id, and ``simulated`` (true when simulated
models wrote it; the answer's text then starts with ``[simulated]``, so no reader can take
it for a real model's). A run that fails is a tool error naming what failed, with its run id.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from rede.errors import RedeError
from rede.extras import require
from rede.network import Network
from rede.orchestration.run import RunResult

SIMULATED_MARK = "[simulated] "


class AskAnswer(BaseModel):
    """What the ``ask`` tool returns."""

    answer: str
    status: str
    run_id: str
    cost_usd: float = Field(description="What the run's model calls cost, in US dollars.")
    tokens: int
    simulated: bool = Field(description="True when simulated models wrote the answer.")
    sources: list[str] = Field(description="Where the usage came from: real, simulated, ...")


def answer_of(run: RunResult) -> AskAnswer:
    usage = run.usage
    simulated = run.simulated
    return AskAnswer(
        answer=(SIMULATED_MARK if simulated else "") + run.answer,
        status=run.status,
        run_id=run.run_id,
        cost_usd=usage.cost_usd,
        tokens=usage.prompt_tokens + usage.completion_tokens,
        simulated=simulated,
        sources=sorted(run.sources),
    )


def mcp_app(net: Network) -> Any:
    """An SDK ``MCPServer`` whose ``ask`` tool asks the (started) network."""
    server, errors = require(
        "rede mcp", "mcp", "mcp.server.mcpserver", "mcp.server.mcpserver.exceptions"
    )
    description = net.config.description or f"The Rede network {net.config.name!r}."
    app = server.MCPServer(f"rede-{net.config.name}", instructions=description)

    async def ask(request: str) -> AskAnswer:
        try:
            run = await net.ask(request)
        except RedeError as exc:
            run_id = getattr(exc.run, "run_id", None)
            message = str(exc) + (f" (run {run_id})" if run_id else "")
            raise errors.ToolError(message) from None  # shown to the client, unlike others
        return answer_of(run)

    caps = ", ".join(sorted(net.config.capabilities))
    app.add_tool(
        ask,
        name="ask",
        description=f"{description} Ask it anything its agents can do ({caps}); returns the "
        "answer with the run's cost, tokens and id.",
    )
    return app


async def serve_http(
    net: Network, host: str = "127.0.0.1", port: int = 0, say: Callable[[str], None] = print
) -> None:
    """Start the network and serve it over streamable HTTP at ``http://HOST:PORT/mcp`` until
    cancelled; ``say`` is told the address once it accepts connections (port 0: any free)."""
    (uvicorn,) = require("rede mcp --port", "serve", "uvicorn")
    app = mcp_app(net)
    sock = socket.create_server((host, port), family=_family(host))
    try:
        config = uvicorn.Config(app.streamable_http_app(host=host), log_level="warning")
        async with net:
            bound = sock.getsockname()
            say(f"serving network {net.config.name!r} over MCP at http://{host}:{bound[1]}/mcp")
            await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        sock.close()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


async def serve_stdio(net: Network) -> None:
    """Start the network and serve it over stdin/stdout until the client closes them."""
    app = mcp_app(net)  # a missing extra says so before anything starts
    async with net:
        await app.run_stdio_async()


__all__ = ["SIMULATED_MARK", "AskAnswer", "answer_of", "mcp_app", "serve_http", "serve_stdio"]
