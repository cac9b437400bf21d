"""An MCP server written with the SDK, for the tests: ``python tests/mcp_server.py MODE``.

MODE ``stdio`` serves over stdin/stdout; ``http`` serves streamable HTTP on 127.0.0.1 (a
port the system picks, printed as the first line of stdout); ``fail`` exits at once with an
error; ``hang`` never speaks (a server that hangs on start)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys

from mcp.server.mcpserver import MCPServer

app = MCPServer("rede-tests")


@app.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@app.tool()
def shout(text: str) -> str:
    """The text in capitals."""
    return text.upper()


@app.tool()
def pid() -> int:
    """The server process's id (a restarted server has another)."""
    return os.getpid()


@app.tool()
def die() -> str:
    """Crash the server in the middle of the call."""
    os._exit(3)


@app.tool()
async def hang() -> str:
    """Never answer."""
    await asyncio.Event().wait()
    return "never"


@app.tool()
def off_schema() -> str:
    """Return a string while the tool's published output schema asks for an integer."""
    return "not a number"


# the published schema no longer matches what the tool returns (a buggy third-party server)
app._tool_manager._tools["off_schema"].fn_metadata.output_schema = {
    "type": "object",
    "properties": {"result": {"type": "integer"}},
    "required": ["result"],
}


def serve_http() -> None:
    import uvicorn

    sock = socket.create_server(("127.0.0.1", 0))  # listening: a client may connect now
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app.streamable_http_app(), log_level="warning")
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode == "fail":
        sys.exit("mcp_server: cannot start (a test of a server that fails to start)")
    if mode == "hang":
        while True:
            os.read(0, 1 << 16) or os.pause()
    if mode == "http":
        serve_http()
    else:
        app.run("stdio")
