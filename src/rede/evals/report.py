"""``compare``: the same BIG-Bench Hard tasks through several systems, one report.

Each system runs into its own folder under ``OUT`` (resumable, as :func:`run_bbh`), then
``OUT/report.md`` tabulates per task and on average: accuracy, latency, cost, tokens and
messages, and ``OUT/report.png`` charts the accuracies. The report states for every system
where its answers came from (real, simulated, replayed or scripted), so a simulated number
is never read as a real one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from rede.errors import ConfigError
from rede.evals.bbh import BBH, Mode
from rede.evals.harness import BenchSummary, TaskScore, run_bbh
from rede.evals.systems import SOURCE_WORDS, System

REPORT_MD = "report.md"
REPORT_PNG = "report.png"


@dataclass(frozen=True, slots=True)
class Comparison:
    summaries: list[BenchSummary]
    folders: list[Path]
    markdown: Path
    chart: Path | None
    """``None`` when matplotlib is not installed (``pip install 'rede[charts]'``)."""


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "system"


async def compare(
    systems: Sequence[System],
    data: BBH,
    *,
    out: Path,
    tasks: Sequence[str] | str | None = None,
    limit: int | None = None,
    mode: Mode = "cot",
    concurrency: int = 8,
    progress: bool = True,
    console: Console | None = None,
) -> Comparison:
    """Run every system on the same examples, then write the report and the chart."""
    if not systems:
        raise ConfigError("compare needs at least one system")
    names = data.resolve(tasks)
    folders: list[Path] = []
    used: set[str] = set()
    for system in systems:
        base = slug(system.name)
        name, k = base, 2
        while name in used:
            name, k = f"{base}-{k}", k + 1
        used.add(name)
        folders.append(out / name)
    summaries = [
        await run_bbh(
            system,
            data,
            out=folder,
            tasks=names,
            limit=limit,
            mode=mode,
            concurrency=concurrency,
            progress=progress,
            console=console,
        )
        for system, folder in zip(systems, folders, strict=True)
    ]
    return write_report(summaries, folders, out)


def write_report(summaries: list[BenchSummary], folders: list[Path], out: Path) -> Comparison:
    out.mkdir(parents=True, exist_ok=True)
    chart: Path | None = out / REPORT_PNG
    try:
        _chart(summaries, chart)  # type: ignore[arg-type]
    except ImportError:
        chart = None
    md = out / REPORT_MD
    md.write_text(render_markdown(summaries, folders, out, chart), encoding="utf-8")
    return Comparison(summaries, folders, md, chart)


def _fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def render_markdown(
    summaries: list[BenchSummary], folders: list[Path], out: Path, chart: Path | None
) -> str:
    first = summaries[0]
    tasks = list(first.tasks)
    heads = [s.system for s in summaries]
    lines = [
        "# BIG-Bench Hard comparison",
        "",
        f"Mode: `{first.mode}` ({'chain of thought' if first.mode == 'cot' else 'answer only'}"
        f"), {len(tasks)} task{'s' if len(tasks) != 1 else ''}, "
        + (f"the first {first.limit} examples of each" if first.limit else "every example")
        + f", data `{first.data}`. Exact-match accuracy in percent.",
        "",
        "## Systems and where their answers come from",
        "",
        "| System | Source | Call sources | Results |",
        "|---|---|---|---|",
    ]
    for s, folder in zip(summaries, folders, strict=True):
        rel = folder.relative_to(out) if folder.is_relative_to(out) else folder
        words = SOURCE_WORDS.get(s.source, s.source).split(": ", 1)[-1]
        lines.append(
            f"| {s.system} | **{s.source}**: {words} | {', '.join(s.sources) or '-'} | `{rel}/` |"
        )
    if any(s.source == "simulated" for s in summaries):
        lines += ["", "Simulated systems are models of cost and quality, not real models."]
    if any(s.tokens_estimated for s in summaries):
        lines += ["", "Token counts marked `~` are estimates (the backend reported none)."]
    lines += ["", "## Summary", ""]
    lines += _table(
        ["", *heads],
        [
            ["Average accuracy (task files)", *[_fmt_pct(s.average) for s in summaries]],
            [
                "Average accuracy (paper's way: task sizes averaged first)",
                *[_fmt_pct(s.paper_average) for s in summaries],
            ],
            ["Examples", *[str(s.n) for s in summaries]],
            ["Failed examples", *[str(s.errors) for s in summaries]],
            ["Mean latency per example (s)", *[f"{s.mean_latency_s:.3f}" for s in summaries]],
            ["Mean tokens per example", *[_tokens(s, s.mean_tokens) for s in summaries]],
            ["Mean cost per example (USD)", *[f"{s.mean_cost_usd:.6f}" for s in summaries]],
            ["Mean messages per example", *[f"{s.mean_messages:.1f}" for s in summaries]],
        ],
    )
    metrics: list[tuple[str, Callable[[BenchSummary, TaskScore], str]]] = [
        ("Accuracy (%)", lambda s, t: f"{t.accuracy:.1f}"),
        ("Mean latency per example (s)", lambda s, t: f"{t.mean_latency_s:.3f}"),
        ("Cost per task (USD, all its examples)", lambda s, t: f"{t.cost_usd:.6f}"),
        ("Tokens per task (all its examples)", lambda s, t: _tokens(s, t.tokens)),
        ("Messages per task (all its examples)", lambda s, t: str(t.messages)),
    ]
    for title, cell in metrics:
        lines += ["", f"## {title}", ""]
        rows = [
            [task, *[cell(s, s.tasks[task]) if task in s.tasks else "-" for s in summaries]]
            for task in tasks
        ]
        lines += _table(["Task", *heads], rows)
    if chart is not None:
        lines += ["", f"![accuracy per task]({chart.name})"]
    else:
        lines += ["", "(No chart: matplotlib is not installed; `pip install 'rede[charts]'`.)"]
    return "\n".join(lines) + "\n"


def _tokens(s: BenchSummary, value: float) -> str:
    text = f"{value:,.0f}"
    return f"~{text}" if s.tokens_estimated else text


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def _chart(summaries: list[BenchSummary], path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas

    tasks = list(summaries[0].tasks)
    labels = [*tasks, "average"]
    width = 0.8 / len(summaries)
    fig = Figure(figsize=(max(6.0, 0.45 * len(labels) * max(1, len(summaries)) + 2), 5))
    ax = fig.subplots()
    for i, s in enumerate(summaries):
        values = [s.tasks[t].accuracy if t in s.tasks else 0.0 for t in tasks] + [s.average]
        xs = [x + (i - (len(summaries) - 1) / 2) * width for x in range(len(labels))]
        ax.bar(xs, values, width, label=f"{s.system} ({s.source})")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"BIG-Bench Hard ({summaries[0].mode})")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, dpi=120, bbox_inches="tight")


__all__ = ["Comparison", "compare", "render_markdown", "slug", "write_report"]
