"""``rede bench``: benchmark a model or a network on BIG-Bench Hard, or compare several.

Thin: each command builds systems and calls :func:`rede.evals.run_bbh` or
:func:`rede.evals.compare`, which a user can call from Python too."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from rede.console import make_console, print_error
from rede.errors import ConfigError, RedeError
from rede.evals.bbh import BBH
from rede.evals.datasets import BENCHMARKS
from rede.evals.harness import BenchSummary, run_bbh
from rede.evals.mix_cli import mix
from rede.evals.qa import QASummary, run_qa
from rede.evals.report import compare, slug
from rede.evals.systems import SOURCE_WORDS, ModelSystem, NetworkSystem, System
from rede.evals.zeroeval import ZEROEVAL_BENCHMARKS

bench_app = typer.Typer(
    help="Benchmark models and networks on BIG-Bench Hard, GSM8K, MMLU-Pro, MATH level 5, "
    "CRUXEval and a mixed workload (accuracy, "
    "latency, tokens, cost, calls, escalations, messages).",
    no_args_is_help=True,
    add_completion=False,
)
console = make_console()
err = make_console(stderr=True)

STOP = ["\n\nQ:"]
"""Where a few-shot completion ends: the model starting the next question."""

T = TypeVar("T")


class ModeChoice(StrEnum):
    cot = "cot"
    direct = "direct"


DataOpt = Annotated[
    Path,
    typer.Option(
        "--data", help="BIG-Bench Hard folder with tasks/ and cot-prompts/", show_default=False
    ),
]
TasksOpt = Annotated[
    str | None, typer.Option("--tasks", help="Comma-separated task names (default: all)")
]
LimitOpt = Annotated[
    int | None, typer.Option("--limit", min=1, help="Only the first N examples of each task")
]
ModeOpt = Annotated[
    ModeChoice, typer.Option("--mode", help="cot (chain of thought) or direct (answer only)")
]
ConcurrencyOpt = Annotated[
    int, typer.Option("--concurrency", min=1, help="Examples answered at once")
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option("--base-url", help="OpenAI-compatible server for openai: specs and networks"),
]
MaxTokensOpt = Annotated[
    int, typer.Option("--max-tokens", min=1, help="Completion limit per example")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")]


def _fail(message: str) -> typer.Exit:
    print_error(err, message)
    return typer.Exit(1)


def _model_system(
    spec: str, base_url: str | None, max_tokens: int, stop: list[str] | None = STOP
) -> ModelSystem:
    backend = spec.partition(":")[0]
    options: dict[str, str] = {}
    if base_url is not None:
        if backend != "openai":
            raise ConfigError(f"--base-url applies to openai:NAME specs, not {spec!r}")
        options["base_url"] = base_url
    return ModelSystem.from_spec(spec, options=options, max_tokens=max_tokens, stop=stop)


def _system(item: str, base_url: str | None, max_tokens: int) -> System:
    """A network YAML path, or a model spec (``replay:PATH``, ``sim:7b``, ``openai:NAME``)."""
    path = Path(item)
    if item.endswith((".yaml", ".yml")) or (path.is_file() and ":" not in item):
        return NetworkSystem(path, base_url=base_url)
    if ":" not in item:
        raise ConfigError(
            f"{item!r} is neither a network YAML file nor a model spec; give a path to a "
            "network .yaml or a spec such as replay:PATH, sim:7b, openai:NAME"
        )
    return _model_system(item, base_url, max_tokens)


def _run(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return asyncio.run(work())
    except RedeError as exc:
        raise _fail(str(exc)) from None


async def _closing(systems: list[System], work: Awaitable[T]) -> T:
    try:
        return await work
    finally:
        for system in systems:
            await system.aclose()


def _print_summary(summary: BenchSummary, out: Path) -> None:
    table = Table(title=f"BIG-Bench Hard ({summary.mode}): {summary.system}")
    table.add_column("task")
    table.add_column("n", justify="right")
    table.add_column("accuracy %", justify="right")
    table.add_column("failed", justify="right")
    for task, score in summary.tasks.items():
        table.add_row(task, str(score.n), f"{score.accuracy:.1f}", str(score.errors or ""))
    table.add_row("[bold]average[/bold]", str(summary.n), f"[bold]{summary.average:.1f}[/bold]", "")
    if summary.paper_average is not None and len(summary.tasks) > 1:
        table.add_row(
            "average, paper's way (sizes averaged first)", "", f"{summary.paper_average:.1f}", ""
        )
    console.print(table)
    console.print(f"source: [bold]{SOURCE_WORDS.get(summary.source, summary.source)}[/bold]")
    console.print(
        f"per example: {summary.mean_latency_s:.3f} s, "
        f"{'~' if summary.tokens_estimated else ''}{summary.mean_tokens:.0f} tokens, "
        f"${summary.mean_cost_usd:.6f}, {summary.mean_messages:.1f} messages"
    )
    if summary.errors:
        err.print(
            f"[yellow]{summary.errors} example(s) failed and count as wrong; their errors are "
            f"in {out}/<task>.jsonl; run the same command again to retry them[/yellow]"
        )
    console.print(f"results: {out}/summary.json")


@bench_app.command("bbh")
def bbh(
    data: DataOpt,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Model spec (replay:PATH, sim:7b, openai:NAME); with --network and "
            "--base-url, the server's model name",
        ),
    ] = None,
    network: Annotated[
        Path | None, typer.Option("--network", help="Network YAML to benchmark")
    ] = None,
    tasks: TasksOpt = None,
    limit: LimitOpt = None,
    mode: ModeOpt = ModeChoice.cot,
    concurrency: ConcurrencyOpt = 8,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Results folder (default: bench/bbh-<system>-<mode>)"),
    ] = None,
    base_url: BaseUrlOpt = None,
    max_tokens: MaxTokensOpt = 512,
    quiet: QuietOpt = False,
) -> None:
    """Run BIG-Bench Hard through one model or one network; resumable (same --out)."""
    try:
        if network is None and model is None:
            raise ConfigError("give --model SPEC (e.g. replay:PATH, sim:7b) or --network FILE")
        if network is not None and model is not None and base_url is None:
            raise ConfigError(
                "give --model SPEC or --network FILE, not both (with --network, --model "
                "names the server's model and needs --base-url)"
            )
        bench = BBH(data)
        names = bench.resolve(tasks)
        system: System = (
            NetworkSystem(network, base_url=base_url, model=model)
            if network is not None
            else _model_system(model or "", base_url, max_tokens)
        )
    except RedeError as exc:
        raise _fail(str(exc)) from None
    folder = out or Path("bench") / f"bbh-{slug(system.name)}-{mode.value}"
    summary = _run(
        lambda: _closing(
            [system],
            run_bbh(
                system,
                bench,
                out=folder,
                tasks=names,
                limit=limit,
                mode=mode.value,
                concurrency=concurrency,
                progress=not quiet,
                console=err,
            ),
        )
    )
    _print_summary(summary, folder)
    if summary.errors:
        raise typer.Exit(1)  # the scores count failed examples as wrong: not a clean run


def _qa(
    bench_name: str,
    data: Path,
    model: str | None,
    network: Path | None,
    limit: int | None,
    concurrency: int,
    out: Path | None,
    base_url: str | None,
    max_tokens: int,
    quiet: bool,
) -> None:
    try:
        if (network is None) == (model is None) and not (network and base_url):
            raise ConfigError(
                "give --model SPEC (e.g. replay:PATH) or --network FILE"
                + (" (with --network, --model needs --base-url)" if network and model else "")
            )
        bench = {**BENCHMARKS, **ZEROEVAL_BENCHMARKS}[bench_name](data)
        system: System = (
            NetworkSystem(network, base_url=base_url, model=model)
            if network is not None
            else _model_system(model or "", base_url, max_tokens, stop=None)
        )
    except RedeError as exc:
        raise _fail(str(exc)) from None
    folder = out or Path("bench") / f"{bench_name}-{slug(system.name)}"
    summary = _run(
        lambda: _closing(
            [system],
            run_qa(
                system,
                bench,
                out=folder,
                limit=limit,
                concurrency=concurrency,
                progress=not quiet,
                console=err,
            ),
        )
    )
    _print_qa(summary, folder)
    if summary.errors:
        raise typer.Exit(1)


def _print_qa(summary: QASummary, out: Path) -> None:
    console.print(
        f"[bold]{summary.benchmark}[/bold] {summary.system}: accuracy "
        f"[bold]{summary.accuracy:.2f}%[/bold] of {summary.n}"
    )
    console.print(f"source: [bold]{SOURCE_WORDS.get(summary.source, summary.source)}[/bold]")
    approx = "~" if summary.tokens_estimated else ""
    console.print(
        f"per question: ${summary.cost_usd_per_task:.6f}, {summary.calls_per_task:.2f} calls, "
        f"{approx}{summary.tokens_per_task:.0f} tokens, {summary.escalated_pct:.1f}% escalated"
    )
    if len(summary.by_agent) > 1:
        table = Table(title="by agent")
        for column in ("agent", "calls / question", "USD / question"):
            table.add_column(column, justify="left" if column == "agent" else "right")
        for agent, fig in summary.by_agent.items():
            table.add_row(agent, f"{fig.calls_per_task:.3f}", f"{fig.cost_usd_per_task:.6f}")
        console.print(table)
    if summary.errors:
        err.print(
            f"[yellow]{summary.errors} question(s) failed and count as wrong; their errors are "
            f"in {out}/{summary.benchmark}.jsonl; run the same command again to retry them"
            "[/yellow]"
        )
    console.print(f"results: {out}/summary.json")


QAModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Model spec (replay:PATH to recorded outputs, openai:NAME, sim:7b); with "
        "--network and --base-url, the server's model name",
    ),
]
QANetworkOpt = Annotated[Path | None, typer.Option("--network", help="Network YAML to benchmark")]
QALimitOpt = Annotated[
    int | None, typer.Option("--limit", min=1, help="Only the first N questions")
]
QAOutOpt = Annotated[
    Path | None,
    typer.Option("--out", help="Results folder (default: bench/<benchmark>-<system>)"),
]


QA_COMMANDS = {
    "gsm8k": (
        "Folder with the GSM8K test.jsonl (e.g. ../shared/data/gsm8k-zeroeval)",
        "GSM8K with ZeroEval's prompt and scoring; resumable (same --out).",
    ),
    "mmlu-pro": (
        "MMLU-Pro questions: a JSON list (test set or model_outputs_*.json) or a folder of them",
        "MMLU-Pro with its chain-of-thought prompt (zero-shot) and its scoring; resumable.",
    ),
    "math-l5": (
        "ZeroEval's MATH level 5 outputs: the folder (e.g. ../shared/data/zeroeval-math-l5) "
        "or one model's file (its questions only)",
        "MATH level 5 with ZeroEval's prompt and scoring; resumable (same --out).",
    ),
    "crux": (
        "ZeroEval's CRUXEval outputs: the folder (e.g. ../shared/data/zeroeval-crux) or one "
        "model's file",
        "CRUXEval (output prediction) with ZeroEval's prompt and scoring; resumable.",
    ),
}


QA_MAX_TOKENS = {"math-l5": 4096, "crux": 4096}
"""Completion limits other than 1,024: what ZeroEval's runs allowed (its ``max_tokens``)."""


def _qa_command(name: str, data_help: str, doc: str) -> None:
    """Register ``rede bench NAME``: the same options for every question-answer benchmark."""

    def command(
        data: Path,
        model: QAModelOpt = None,
        network: QANetworkOpt = None,
        limit: QALimitOpt = None,
        concurrency: ConcurrencyOpt = 8,
        out: QAOutOpt = None,
        base_url: BaseUrlOpt = None,
        max_tokens: MaxTokensOpt = QA_MAX_TOKENS.get(name, 1024),
        quiet: QuietOpt = False,
    ) -> None:
        _qa(name, data, model, network, limit, concurrency, out, base_url, max_tokens, quiet)

    command.__doc__ = doc
    # annotations are strings here (postponed evaluation): give --data its help as an object
    command.__annotations__["data"] = Annotated[
        Path, typer.Option("--data", help=data_help, show_default=False)
    ]
    bench_app.command(name)(command)


for _name, (_data_help, _doc) in QA_COMMANDS.items():
    _qa_command(_name, _data_help, _doc)

bench_app.command("mix")(mix)


@bench_app.command("compare")
def compare_cmd(
    systems: Annotated[
        list[str],
        typer.Argument(
            help="Model specs (replay:PATH, sim:7b, openai:NAME) or network YAML files",
            show_default=False,
        ),
    ],
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="Report folder", show_default=False)],
    tasks: TasksOpt = None,
    limit: LimitOpt = None,
    mode: ModeOpt = ModeChoice.cot,
    concurrency: ConcurrencyOpt = 8,
    base_url: BaseUrlOpt = None,
    max_tokens: MaxTokensOpt = 512,
    quiet: QuietOpt = False,
) -> None:
    """Run the same tasks through several systems; write OUT/report.md and OUT/report.png."""
    try:
        bench = BBH(data)
        names = bench.resolve(tasks)
        built = [_system(item, base_url, max_tokens) for item in systems]
    except RedeError as exc:
        raise _fail(str(exc)) from None
    result = _run(
        lambda: _closing(
            built,
            compare(
                built,
                bench,
                out=out,
                tasks=names,
                limit=limit,
                mode=mode.value,
                concurrency=concurrency,
                progress=not quiet,
                console=err,
            ),
        )
    )
    table = Table(title=f"BIG-Bench Hard ({mode.value}) comparison")
    table.add_column("system")
    table.add_column("source")
    table.add_column("average %", justify="right")
    table.add_column("s / example", justify="right")
    table.add_column("USD / example", justify="right")
    table.add_column("messages / example", justify="right")
    for s in result.summaries:
        table.add_row(
            s.system,
            s.source,
            f"{s.average:.1f}",
            f"{s.mean_latency_s:.3f}",
            f"{s.mean_cost_usd:.6f}",
            f"{s.mean_messages:.1f}",
        )
    console.print(table)
    console.print(f"report: {result.markdown}")
    if result.chart is not None:
        console.print(f"chart: {result.chart}")
    failed = {s.system: s.errors for s in result.summaries if s.errors}
    if failed:
        err.print(
            "[yellow]failed examples (counted as wrong): "
            + ", ".join(f"{name} {n}" for name, n in failed.items())
            + f"; their errors are in {out}/<system>/<task>.jsonl; run the same command "
            "again to retry them[/yellow]"
        )
        raise typer.Exit(1)


__all__ = ["bench_app"]
