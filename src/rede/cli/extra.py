"""What a user expects of a CLI, kept apart from the commands of :mod:`rede.cli.app`:
``--version``, ``-h``, boolean options shown as flags, ``rede validate``, ``rede init`` and
``rede runs``. Each is a small function that ``rede.cli.app`` registers in a line."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from rede.console import make_console, print_error
from rede.errors import RedeError

console = make_console()
CONTEXT = {"help_option_names": ["-h", "--help"]}


def _flags(cmd: Any, ctx: Any) -> Any:
    """Boolean options are shown as flags (``--fast``), not as ``--fast <bool>``."""
    help_option = cmd.get_help_option(ctx)
    for param in [*cmd.params, *([help_option] if help_option else [])]:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    for sub in getattr(cmd, "commands", {}).values():
        _flags(sub, ctx)
    return cmd


PLAIN_HELP_BELOW = 80
"""Below this many columns, help is click's plain text, which wraps its words at any width,
instead of rich's boxes, which cut option names (``--base…``) on a narrow terminal."""


def _plain_help(cmd: Any) -> None:
    cmd.rich_markup_mode = None
    for sub in getattr(cmd, "commands", {}).values():
        _plain_help(sub)


class RedeGroup(TyperGroup):
    def main(self, *args: Any, standalone_mode: bool = True, **extra: Any) -> Any:
        """A usage error is one ``error:`` line with where to look, as every other error."""
        if shutil.get_terminal_size().columns < PLAIN_HELP_BELOW:
            _plain_help(self)
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **extra)
        try:
            code = super().main(*args, standalone_mode=False, **extra)
        except typer.Abort:
            print_error(make_console(stderr=True), "aborted")
            sys.exit(1)
        except typer.TyperException as exc:  # typer's click errors: usage, bad parameter, ...
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            ctx = getattr(exc, "ctx", None)
            if ctx is not None:  # a usage error: say where the usage is
                message += f" (see {ctx.command_path} -h)"
            print_error(make_console(stderr=True), message)
            sys.exit(getattr(exc, "exit_code", 1))
        sys.exit(code if isinstance(code, int) else 0)

    def get_params(self, ctx: Any) -> Any:
        _flags(self, ctx)
        return super().get_params(ctx)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = super().get_command(ctx, cmd_name)
        return cmd if cmd is None else _flags(cmd, ctx)


def _print_version(value: bool) -> None:
    if value:
        from rede import __version__

        console.print(f"rede {__version__}")
        raise typer.Exit()


def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            is_eager=True,
            callback=_print_version,
            help="Print Rede's version and exit.",
        ),
    ] = False,
) -> None:
    """Rede: networks of small LLM agents on a message bus."""


def validate(
    network: Annotated[Path, typer.Argument(help="Network YAML.", exists=True, dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Load and check a network without running it: the YAML, its models, prompts and tools
    (MCP servers are started and A2A agents asked for their cards, to list what they serve)."""
    from rede.network import Network

    try:
        net = Network.from_yaml(network)
        remote = asyncio.run(net.parts.probe_remote())  # MCP servers and A2A agents found
        for agent in net.config.agents:
            if not agent.remote:
                net.spec(agent)  # builds its model, reads its prompt files, resolves its tool
    except RedeError as exc:
        said = str(exc)
        print_error(console, said if said.startswith(str(network)) else f"{network}: {said}",
                    prefix="invalid")
        raise typer.Exit(1) from None
    conf = net.config
    summary = {
        "network": conf.name,
        "agents": [a.name for a in conf.agents],
        "capabilities": sorted(conf.capabilities),
        "models": {name: m.spec for name, m in conf.models.items()},
        "routing": conf.routing.strategy,
        "tools": remote,
    }
    if as_json:
        console.print_json(json.dumps(summary))
        return
    console.print(
        f"[green]ok[/green] {network}: network {conf.name!r}, {len(conf.agents)} agents "
        f"({', '.join(summary['agents'])}), capabilities {', '.join(summary['capabilities'])}",
        highlight=False,
    )
    for name, found in remote.items():
        listed = ", ".join(t if t == c else f"{t} as {c}" for t, c in found.items())
        console.print(f"  {name} serves {len(found)} tool(s): {listed or 'none'}", highlight=False)


STARTER = """\
# A starter network: a planner, a researcher, a writer, a critic and a synthesiser on
# simulated models. Try it:   rede run network.yaml "Compare SQLite and Postgres" --fast
# Serve it:                   rede serve network.yaml
# Real models: change a spec to "openai:MODEL" with a base_url (Ollama, vLLM, llama.cpp, ...):
#   local: {spec: "openai:llama3.1:8b", base_url: "http://127.0.0.1:11434/v1"}
name: @NAME@
description: Plans a request, researches its parts, writes, critiques and synthesises.
models:
  small: {spec: "sim:3b", seed: 1}
  medium: {spec: "sim:8b", seed: 2}
agents:
  - {name: planner, capabilities: [plan], model: small}
  - {name: researcher, capabilities: [research], model: medium,
     prompts: {research: prompts/research.txt}}
  - {name: writer, capabilities: [write], model: medium, prompts: {write: prompts/write.txt}}
  - {name: critic, capabilities: [critique], model: medium}
  - {name: synthesiser, capabilities: [synthesise], model: small}
  - {name: calculator, capabilities: [arithmetic], tool: arithmetic}
routing:
  strategy: cheapest
limits:
  max_steps: 20
  max_refine_rounds: 1
  wall_time_s: 120
  max_cost_usd: 0.05
"""


def init(
    directory: Annotated[
        Path, typer.Argument(help="Folder for the new network (created if missing).")
    ] = Path("."),
    name: Annotated[str, typer.Option(help="The network's name (its model id when served).")] = (
        "my-network"
    ),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write a starter network (network.yaml) and its prompt files, ready to run."""
    files = {Path("network.yaml"): STARTER.replace("@NAME@", name)}
    bundled = resources.files("rede.agents") / "prompts"
    for cap in ("research", "write"):
        files[Path("prompts") / f"{cap}.txt"] = (bundled / f"{cap}.txt").read_text()
    existing = [p for p in files if (directory / p).exists()]
    if existing and not force:
        console.print(
            f"[red]error:[/red] {', '.join(str(directory / p) for p in existing)} already "
            "exist(s); pass --force to overwrite",
            highlight=False,
        )
        raise typer.Exit(1)
    for rel, text in files.items():
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        (directory / rel).write_text(text)
        console.print(f"wrote {directory / rel}", highlight=False)
    console.print(f'next: [cyan]rede run {directory / "network.yaml"} "your request" --fast[/cyan]')


def runs(
    ledger: Annotated[str, typer.Option(help="Ledger file.")] = ".rede/ledger.db",
    limit: Annotated[int, typer.Option(min=1, help="How many runs, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
) -> None:
    """List recorded runs from the ledger, newest first."""
    from rede.orchestration.ledger import SQLiteLedger
    from rede.server.runs import describe

    if not Path(ledger).exists():
        print_error(make_console(stderr=True), f"no ledger at {ledger}; run something first")
        raise typer.Exit(1)
    store = SQLiteLedger(ledger)
    rows = [describe(store, rid) for rid in list(reversed(store.runs()))[:limit]]
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    console.print(f"runs in {ledger}", highlight=False, soft_wrap=True)
    table = Table()
    ids = max((len(r["id"]) for r in rows), default=3)
    table.add_column("run", no_wrap=True, min_width=ids)  # an id is never cut: it is typed
    for col in ("started", "status", "source", "tokens", "cost"):
        table.add_column(col, no_wrap=True)
    table.add_column("request")
    for r in rows:
        usage = r.get("usage") or {}
        started = datetime.fromtimestamp(r["created"]).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            r["id"],
            started,
            _status(r),
            str(r.get("source") or ""),
            str(usage.get("total_tokens", "")),
            f"${usage['cost_usd']:.6f}" if "cost_usd" in usage else "",
            (r.get("request") or "")[:60],
        )
    console.print(table)


def _status(run: dict[str, Any]) -> str:
    """A run's status as ``rede runs`` lists it: ``ok (partial)``, ``waiting: plan``, ..."""
    status = str(run["status"]) + (" (partial)" if run.get("partial") else "")
    waiting = run.get("waiting_for")
    return status + (f": {', '.join(waiting)}" if waiting else "")

