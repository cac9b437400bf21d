"""``rede serve``: the command's options and what it does with them. Registered by
``rede.cli.app`` as ``app.command("serve")(serve_command)``; the web stack is imported only when
the command runs, so ``rede --help`` stays quick."""

from __future__ import annotations

import json
import logging
import sys
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import typer

from rede.errors import MissingExtra, RedeError, one_line
from rede.extras import require

DEFAULT_LEDGER = ".rede/ledger.db"


class OnDisconnect(StrEnum):
    cancel = "cancel"
    finish = "finish"


class _JSONLines(logging.Formatter):
    """Access lines are JSON already; other records become JSON with level and logger."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == "rede.server.access":
            return record.getMessage()
        out = {
            "event": "log",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out)


def _logging(level: str, access_log: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JSONLines())
    for name in ("rede.server", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    logging.getLogger("rede.server.access").setLevel("INFO" if access_log else "WARNING")


def serve_command(
    network: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Network YAML file(s) to serve (default: the bundled demo network). Each is "
            "a model whose id is the network's name.",
            exists=True,
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    extra: Annotated[
        list[Path] | None,
        typer.Option(
            "--network",
            help="One more network YAML to serve (repeat for several).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    bus: Annotated[
        str | None,
        typer.Option(
            help="Bus URL. With redis://, the agents served elsewhere (`rede agent`, `rede up`) "
            "answer and none are started here."
        ),
    ] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            help="Accept this bearer key (repeat for several; REDE_API_KEYS adds more, comma-"
            "separated). Without keys only a loopback --host is allowed."
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            help="Allow browsers on this origin to call the API (CORS is off by default)."
        ),
    ] = None,
    max_body_bytes: Annotated[
        int, typer.Option(min=1, help="Largest request body accepted; larger ones get 413.")
    ] = 1_048_576,
    max_runs: Annotated[
        int,
        typer.Option(min=1, help="Runs at once; more get 429 with Retry-After."),
    ] = 256,
    on_disconnect: Annotated[
        OnDisconnect,
        typer.Option(
            help="When a client leaves before its run ends: cancel the run or let it finish "
            "(recorded in the ledger either way)."
        ),
    ] = OnDisconnect.cancel,
    shutdown_timeout: Annotated[
        float,
        typer.Option(
            min=0, help="On SIGINT/SIGTERM, seconds running runs get to finish before cancelled."
        ),
    ] = 30.0,
    ledger: Annotated[
        str,
        typer.Option(help="SQLite file recording every run (the history); '' keeps it in memory."),
    ] = DEFAULT_LEDGER,
    fast: Annotated[bool, typer.Option("--fast", help="Skip simulated model latency.")] = False,
    base_url: Annotated[
        str | None,
        typer.Option(help="Point every LLM agent at this OpenAI-compatible server."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model name on that server.")] = None,
    public_url: Annotated[
        str | None,
        typer.Option(help="The URL clients reach this server at (for the A2A agent card)."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="Server log level.")] = "info",
    no_access_log: Annotated[
        bool, typer.Option("--no-access-log", help="Do not log one JSON line per request.")
    ] = False,
) -> None:
    """Serve networks over HTTP: an OpenAI-compatible API (/v1/chat/completions), runs and
    their live events (/v1/runs), A2A (/.well-known/agent-card.json) and a web page (/)."""
    try:
        uvicorn = require(
            "rede serve", "serve", "uvicorn", "fastapi", "a2a.server", "prometheus_client"
        )[0]
    except MissingExtra as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None

    from rede import Network
    from rede.server import ServerSettings, create_app
    from rede.server.settings import keys_from_env

    mode: Literal["cancel", "finish"] = (
        "cancel" if on_disconnect is OnDisconnect.cancel else "finish"
    )
    paths = [*(network or []), *(extra or [])] or [
        Path(str(resources.files("rede") / "networks" / "demo.yaml"))
    ]
    err = typer.echo
    try:
        nets: list[Network] = []
        for path in paths:  # the first opens the ledger; every other network shares it
            net = Network.from_yaml(
                path,
                bus=bus,
                base_url=base_url,
                model=model,
                ledger=nets[0].ledger if nets else (ledger or None),
                time_scale=0.0 if fast else None,
            )
            if bus and not bus.startswith("memory"):
                net.serve_only(set())
            nets.append(net)
        settings = ServerSettings(
            host=host,
            port=port,
            api_keys=[*(api_key or []), *keys_from_env()],
            cors_origins=cors_origin or [],
            max_body_bytes=max_body_bytes,
            max_concurrent_runs=max_runs,
            on_disconnect=mode,
            shutdown_timeout_s=shutdown_timeout,
            public_url=public_url,
        )
        app = create_app(nets, settings)
    except RedeError as exc:
        err(f"error: {one_line(str(exc))}", err=True)
        raise typer.Exit(1) from None
    _logging(log_level, not no_access_log)
    names = ", ".join(n.config.name for n in nets)
    err(
        f"serving {names} on {settings.base_url} (web page: {settings.base_url}/, "
        f"OpenAI API: {settings.base_url}/v1)",
        err=True,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=int(shutdown_timeout) or None,
        lifespan="on",
    )
