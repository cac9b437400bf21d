"""``rede resume``, ``rede approve`` and ``rede reply``: durable runs and a person in the loop
from the command line (see :mod:`rede.orchestration.durable` and
:mod:`rede.orchestration.human`). Each is a small function that :mod:`rede.cli.app` registers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from rede.console import make_console, print_error
from rede.errors import RedeError

console = make_console()
err = make_console(stderr=True)
LedgerPath = Annotated[str, typer.Option(help="Ledger file.")]
DEFAULT_LEDGER = ".rede/ledger.db"


def _store(ledger: str):  # type: ignore[no-untyped-def]
    from rede.orchestration.ledger import SQLiteLedger

    if not Path(ledger).exists():
        print_error(err, f"no ledger at {ledger}; pass --ledger")
        raise typer.Exit(1)
    try:
        return SQLiteLedger(ledger)
    except RedeError as exc:
        print_error(err, exc)
        raise typer.Exit(1) from None


def _answer(ledger: str, run_id: str, step: str | None, **answer: object) -> None:
    from rede.orchestration.human import answer_wait

    store = _store(ledger)
    try:
        wait = answer_wait(store, run_id, step, **answer)  # type: ignore[arg-type]
    except RedeError as exc:
        print_error(err, exc)
        raise typer.Exit(1) from None
    finally:
        store.close()
    console.print(
        f"answered {wait} of {run_id}. The process that holds the run goes on; if none does: "
        f"[cyan]rede resume {run_id} NETWORK.yaml --ledger {ledger}[/cyan]",
        highlight=False,
    )


def approve(
    run_id: Annotated[str, typer.Argument(help="The paused run.")],
    step: Annotated[
        str | None,
        typer.Option(
            help="The step to approve ('plan' for the plan); default: "
            "what the run waits for, if one thing."
        ),
    ] = None,
    reject: Annotated[bool, typer.Option("--reject", help="Reject instead of approving.")] = False,
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger).")] = "",
    text: Annotated[str, typer.Option(help="Approve with this text as the step's output.")] = "",
    ledger: LedgerPath = DEFAULT_LEDGER,
) -> None:
    """Approve (or --reject) what a paused run waits for: its plan or a step's output."""
    _answer(ledger, run_id, step, approved=not reject, reason=reason, text=text)


def reply(
    run_id: Annotated[str, typer.Argument(help="The paused run.")],
    text: Annotated[str, typer.Argument(help="The answer to the agent's question.")],
    step: Annotated[str | None, typer.Option(help="The step whose question to answer.")] = None,
    ledger: LedgerPath = DEFAULT_LEDGER,
) -> None:
    """Answer an agent's question to a person (``ctx.ask("human", ...)``) in a paused run."""
    _answer(ledger, run_id, step, approved=True, text=text)


def resume(
    run_id: Annotated[str, typer.Argument(help="The run to take up.")],
    network: Annotated[Path, typer.Argument(help="Network YAML.", exists=True, dir_okay=False)],
    bus: Annotated[
        str | None, typer.Option(help="Bus URL; with redis, agents served elsewhere are used.")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Take the run even while another process's lease runs.")
    ] = False,
    fast: Annotated[bool, typer.Option(help="Skip simulated model latency.")] = False,
    ledger: LedgerPath = DEFAULT_LEDGER,
) -> None:
    """Resume a run whose process stopped, from its checkpoint in the ledger: finished steps
    are kept (not re-run, not re-billed); a paused run waits on for its person."""
    from rede.cli.tui import LiveView, render_result
    from rede.network import Network

    _store(ledger).close()

    async def go() -> None:
        net = Network.from_yaml(network, bus=bus, ledger=ledger, time_scale=0.0 if fast else None)
        if bus and not bus.startswith("memory"):
            net.serve_only(set())
        async with net:
            with LiveView(console, simulated=net.simulated, title=f"resume {run_id}") as view:
                result = await net.resume(run_id, observer=view, force=force)
        render_result(console, result)

    try:
        asyncio.run(go())
    except RedeError as exc:
        if exc.run is not None:
            render_result(console, exc.run)
        print_error(err, exc)
        raise typer.Exit(1) from None
