"""``rede mcp NETWORK.yaml``: serve a network as an MCP server over stdio (tool ``ask``)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated

import typer

from rede.errors import RedeError, one_line

DEFAULT_LEDGER = ".rede/ledger.db"


def mcp_command(
    network: Annotated[Path, typer.Argument(help="Network YAML.", exists=True, dir_okay=False)],
    base_url: Annotated[
        str | None, typer.Option(help="Point every LLM agent at this OpenAI-compatible server.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model name on that server.")] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="OPENAI_API_KEY", help="API key for that server.")
    ] = None,
    fast: Annotated[bool, typer.Option(help="Skip simulated model latency.")] = False,
    ledger: Annotated[
        str, typer.Option(help="SQLite file recording every run ('' to keep it in memory).")
    ] = DEFAULT_LEDGER,
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Serve streamable HTTP on this port (0: any free)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on, with --port.")] = "127.0.0.1",
) -> None:
    """Serve a network as an MCP server over stdin/stdout (or streamable HTTP with --port):
    its tool `ask` answers a request with the run's answer, cost and run id."""
    from rede.network import Network

    try:
        from rede.server.mcp import serve_http, serve_stdio

        if ledger:
            Path(ledger).parent.mkdir(parents=True, exist_ok=True)
        net = Network.from_yaml(
            network,
            base_url=base_url,
            model=model,
            api_key=api_key,
            time_scale=0.0 if fast else None,
            ledger=ledger or None,
        )

        def say(line: str) -> None:
            typer.echo(line, err=True)

        serving = serve_stdio(net) if port is None else serve_http(net, host, port, say)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serving)
    except RedeError as exc:  # stdout belongs to the protocol: errors go to stderr
        typer.echo(f"error: {one_line(str(exc))}", err=True)
        raise typer.Exit(1) from None
