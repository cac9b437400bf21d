"""``rede sim SCENARIO``: run a simulation scenario and report. Thin: it calls
:func:`rede.sim.run_scenario`.

Mounted on the main app as ``app.command("sim")(sim_command)``; ``sim_app`` runs it alone."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from rede.console import make_console, print_error
from rede.errors import RedeError
from rede.sim.report import render, write
from rede.sim.runner import run_scenario
from rede.sim.scenario import Scenario, bundled_scenarios, load_scenario

console = make_console()
err = make_console(stderr=True)


def sim_command(
    scenario: Annotated[
        str | None,
        typer.Argument(help="A scenario YAML, or the name of a bundled one (see --list)."),
    ] = None,
    bus: Annotated[
        str | None,
        typer.Option(help="Bus URL: memory:// (default) or redis://HOST:6379/0."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Write report.json and report.md into this folder."),
    ] = None,
    time_scale: Annotated[
        float | None,
        typer.Option(min=0, help="Override the scenario's scale of simulated latency."),
    ] = None,
    tasks: Annotated[
        int | None, typer.Option(min=1, help="Override the number of workload tasks.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="Tasks in flight at once.")] = None,
    system: Annotated[
        list[str] | None,
        typer.Option(help="Run only this system of the scenario (repeat for several)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON instead of tables.")
    ] = False,
    list_: Annotated[
        bool, typer.Option("--list", help="List the bundled scenarios and exit.")
    ] = False,
) -> None:
    """Run a simulation scenario: a workload with known answers on networks of SIMULATED
    models, on the real bus and orchestrator, with faults injected; report accuracy, latency,
    cost, traffic, resilience and decomposition quality."""
    if list_:
        for name, path in bundled_scenarios().items():
            try:
                description = Scenario.from_yaml(path).description.strip().split("\n")[0]
            except RedeError as exc:
                description = f"(invalid: {exc})"
            console.print(f"[cyan]{name}[/cyan]  {description}")
        return
    if scenario is None:
        print_error(err, "name a scenario file or a bundled scenario (--list)")
        raise typer.Exit(2)
    try:
        loaded = load_scenario(scenario)
        with err.status(f"{loaded.name}: starting (simulated models)") as status:

            def progress(name: str, done: int, total: int) -> None:
                status.update(f"{loaded.name}: {name} {done}/{total} tasks (simulated models)")

            report = asyncio.run(
                run_scenario(
                    loaded,
                    bus_url=bus,
                    time_scale=time_scale,
                    tasks=tasks,
                    seed=seed,
                    concurrency=concurrency,
                    systems=system,
                    progress=progress,
                )
            )
    except RedeError as exc:
        print_error(err, exc)
        raise typer.Exit(1) from None
    if as_json:
        console.print_json(json.dumps(report.model_dump(mode="json"), default=str))
    else:
        render(console, report)
    if out is not None:
        paths = write(report, out)
        (err if as_json else console).print(
            f"wrote {', '.join(str(p) for p in paths)} (reports of simulated models)"
        )


sim_app = typer.Typer(add_completion=False, help="Rede simulation environment (simulated models).")
sim_app.command(name="sim")(sim_command)


if __name__ == "__main__":
    sim_app()
