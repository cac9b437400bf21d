"""``rede export sft``: fine-tuning data from a ledger (see :mod:`rede.orchestration.sft`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rede.console import make_console, print_error
from rede.errors import ConfigError, RedeError

console = make_console()
export_app = typer.Typer(help="Export what the ledger recorded.", no_args_is_help=True)


@export_app.command("sft")
def sft(
    ledger: Annotated[Path, typer.Option(help="Ledger file.", exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option(help="JSONL file to write (OpenAI chat format).")],
    capability: Annotated[
        list[str] | None, typer.Option(help="Only this capability (repeat for several).")
    ] = None,
    agent: Annotated[
        list[str] | None,
        typer.Option(help="Only examples for this agent (its steps, and those escalated from it)."),
    ] = None,
    min_agree: Annotated[
        int | None, typer.Option(min=1, help="Only steps on which this many agents agreed.")
    ] = None,
    min_score: Annotated[
        float | None, typer.Option(min=0, max=1, help="Only reviewed steps the critic scored so.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Only runs started on or after (ISO).")] = None,
    until: Annotated[str | None, typer.Option(help="Only runs started before (ISO).")] = None,
    network: Annotated[
        Path | None,
        typer.Option(
            help="Network YAML whose agents' own prompts render the examples.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    include_simulated: Annotated[
        bool, typer.Option(help="Keep simulated, scripted and replayed answers (to try the loop).")
    ] = False,
) -> None:
    """Each accepted step as a chat fine-tuning example; escalated steps train the agent they
    were escalated from, with the larger model's answer."""
    from rede.orchestration.ledger import SQLiteLedger
    from rede.orchestration.sft import Filters, export_sft, parse_date, summary

    try:
        filters = Filters(
            capabilities=set(capability or ()),
            agents=set(agent or ()),
            min_agree=min_agree,
            min_score=min_score,
            since=parse_date(since, "--since") if since else None,
            until=parse_date(until, "--until") if until else None,
            include_simulated=include_simulated,
            prompts=_prompts(network) if network else {},
        )
        done = export_sft(SQLiteLedger(ledger), filters)
        if not done.examples:
            reasons = ", ".join(f"{n} {why}" for why, n in done.dropped.most_common()) or "none"
            raise ConfigError(
                f"no accepted step to export from {ledger} ({done.runs} run(s); dropped: "
                f"{reasons}); nothing written"
            )
        done.write(out)
    except RedeError as exc:
        print_error(console, exc)
        raise typer.Exit(1) from None
    for line in summary(done):
        console.print(line, highlight=False)
    console.print(f"wrote {out}", highlight=False)


def _prompts(network: Path) -> dict[str, dict[str, str]]:
    from rede.assembly import Assembly
    from rede.config import NetworkConfig

    parts = Assembly(NetworkConfig.from_yaml(network))
    return {a.name: parts.prompts(a) for a in parts.config.agents}
