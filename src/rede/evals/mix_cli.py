"""``rede bench mix``: one network (or model) on the mixed GSM8K + MATH-L5 + CRUXEval workload.

Thin: builds the workload and the system, trains the dispatcher's classifier on the dev
split (whatever ``--split`` asks for) and calls :func:`rede.evals.mix.run_mix`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rede.console import make_console
from rede.errors import ConfigError, RedeError
from rede.evals.classifier import DomainClassifier, check_domains, dispatch_tool
from rede.evals.mix import DOMAINS, MixedWorkload, run_mix, write_atomically
from rede.evals.mix_summary import MixSummary
from rede.evals.report import slug
from rede.evals.systems import SOURCE_WORDS, ModelSystem, NetworkSystem, System

console = make_console()
err = make_console(stderr=True)
SHARED = Path("../shared/data")
DISPATCH_TOOL = "dispatch"
"""The tool name a routed network's ``plan`` agent names; ``rede bench mix`` gives it."""


def train_classifier(workload: MixedWorkload) -> DomainClassifier:
    """The dispatcher's classifier, trained on the dev split's request texts only."""
    items = workload.items("dev")
    return DomainClassifier.train(
        [workload.prompt(it) for it in items],
        [it.domain for it in items],
        trained_on=f"dev split (seed {workload.seed}): {len(items)} requests",
    )


def build_system(
    workload: MixedWorkload, network: Path | None, model: str | None, ledger: Path | None = None
) -> tuple[System, DomainClassifier | None]:
    """The system to run; a routed network gets the dispatcher's classifier as its tool, and
    records its runs in ``ledger`` (SQLite, for ``rede trace``) where given."""
    if (network is None) == (model is None):
        raise ConfigError("give --network FILE (a mix network YAML) or --model SPEC")
    if model is not None:
        return ModelSystem.from_spec(model, max_tokens=4096), None
    assert network is not None
    options = {"ledger": ledger} if ledger is not None else {}
    probe = NetworkSystem(network, **options)
    if not any(a.tool == DISPATCH_TOOL for a in probe.config.agents):
        return probe, None
    classifier = train_classifier(workload)
    served = {c for a in probe.config.agents for c in a.capabilities}
    check_domains(classifier, served, f"network {probe.config.name!r}")
    tool = dispatch_tool(classifier, DISPATCH_TOOL)
    return NetworkSystem(network, tools=[tool], **options), classifier


def mix(
    network: Annotated[
        Path | None, typer.Option("--network", help="Mix network YAML (e.g. examples/mix-*.yaml)")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Model spec: replay:FOLDER holding its recordings of all three"
        ),
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="dev (to choose on) or test (to report)")
    ] = "test",
    gsm8k: Annotated[Path, typer.Option("--gsm8k", help="GSM8K folder")] = SHARED
    / "gsm8k-zeroeval",
    math: Annotated[Path, typer.Option("--math", help="MATH-L5 folder")] = SHARED
    / "zeroeval-math-l5",
    crux: Annotated[Path, typer.Option("--crux", help="CRUXEval folder")] = SHARED
    / "zeroeval-crux",
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="First N questions")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1)] = 16,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Results folder (default: bench/mix-<system>-<split>)"),
    ] = None,
    ledger: Annotated[
        Path | None,
        typer.Option("--ledger", help="Record every run in this SQLite ledger (rede trace)"),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")] = False,
) -> None:
    """The mixed workload (GSM8K, MATH level 5, CRUXEval interleaved, no labels) through one
    system; a routed network's dispatcher classifies each request (trained on dev)."""
    try:
        if split not in ("dev", "test"):
            raise ConfigError(f"unknown split {split!r}; choose dev or test")
        workload = MixedWorkload.from_paths(gsm8k, math, crux)
        system, classifier = build_system(workload, network, model, ledger)
    except RedeError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    folder = out or Path("bench") / f"mix-{slug(system.name)}-{split}"

    async def work() -> MixSummary:
        try:
            return await run_mix(
                system, workload, split=split, out=folder, limit=limit,  # type: ignore[arg-type]
                concurrency=concurrency, progress=not quiet, console=err,
            )  # fmt: skip
        finally:
            await system.aclose()

    try:
        summary = asyncio.run(work())
    except RedeError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if classifier is not None:
        write_atomically(folder / "classifier.json", classifier.to_json() + "\n")
    print_summary(summary, folder)
    if summary.errors > summary.failed_misrouted:
        raise typer.Exit(1)  # failures other than misrouted questions: not a clean run


def print_summary(s: MixSummary, folder: Path) -> None:
    table = Table(title=f"mixed workload ({s.split} split): {s.system}")
    for column in ("domain", "n", "accuracy %", "$ / 1k q", "model calls / q", "escalated %"):
        table.add_column(column, justify="left" if column == "domain" else "right")
    table.add_column("misrouted", justify="right")
    rows = [(d, s.by_domain[d]) for d in DOMAINS if d in s.by_domain]
    for name, f in rows:
        table.add_row(
            name, str(f.n), f"{f.accuracy:.2f}", f"{f.cost_usd_per_1k:.3f}",
            f"{f.model_calls_per_task:.2f}", f"{f.escalated_pct:.1f}",
            "" if f.misrouted is None else str(f.misrouted),
        )  # fmt: skip
    misrouted = "" if s.misrouted_pct is None else f"{s.misrouted_pct:.2f}%"
    table.add_row(
        "[bold]all[/bold]", str(s.n), f"[bold]{s.accuracy:.2f}[/bold]", f"{s.cost_usd_per_1k:.3f}",
        f"{s.model_calls_per_task:.2f}", f"{s.escalated_pct:.1f}", misrouted,
    )  # fmt: skip
    console.print(table)
    console.print(f"source: [bold]{SOURCE_WORDS.get(s.source, s.source)}[/bold]")
    routed = "n/a (no dispatcher)" if s.misrouted_pct is None else f"{s.misrouted_pct:.2f}%"
    console.print(f"misrouted: {routed}")
    if s.failed_misrouted:
        err.print(
            f"[yellow]{s.failed_misrouted} misrouted question(s) reached a specialist with no "
            "recording of their dataset: counted wrong (and misrouted)[/yellow]"
        )
    if s.errors > s.failed_misrouted:
        err.print(
            f"[yellow]{s.errors - s.failed_misrouted} question(s) failed and count as wrong; "
            f"their errors are in {folder}/<domain>.jsonl[/yellow]"
        )
    console.print(f"results: {folder}/summary.json")


__all__ = ["DISPATCH_TOOL", "build_system", "mix", "train_classifier"]
