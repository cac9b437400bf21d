"""Reports of a simulation: a rich table for the terminal, ``report.json`` and ``report.md``.
Each one says that the models are simulated."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from rede.sim.metrics import SystemMetrics
from rede.sim.runner import SimReport, SystemReport


def _pct(v: float | None) -> str:
    return "—" if v is None or math.isnan(v) else f"{v:.0%}"


def _s(v: float | None) -> str:
    return "—" if v is None or math.isnan(v) else f"{v:.3f}"


def _x(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}x"


ROWS: list[tuple[str, Callable[[SystemMetrics], str]]] = [
    ("accuracy (all parts right)", lambda m: _pct(m.accuracy)),
    ("part accuracy", lambda m: _pct(m.part_accuracy)),
    ("success rate", lambda m: _pct(m.success_rate)),
    ("success under faults", lambda m: _pct(m.success_under_faults)),
    ("runs exposed to faults", lambda m: str(m.exposed_tasks)),
    ("recovered (re-routed/retried)", lambda m: str(m.recovered_tasks)),
    ("latency p50 (s)", lambda m: _s(m.latency_p50_s)),
    ("latency p95 (s)", lambda m: _s(m.latency_p95_s)),
    ("latency / critical path (p50)", lambda m: _x(m.overhead_p50)),
    ("cost per task ($)", lambda m: f"{m.cost_per_task_usd:.6f}"),
    ("tokens per task", lambda m: f"{m.tokens_per_task:.0f}"),
    ("messages per task", lambda m: f"{m.messages_per_task:.1f}"),
    ("bytes per task", lambda m: f"{m.bytes_per_task:,.0f}"),
    ("decomposition vs ideal", lambda m: f"{m.decomposition:.2f}"),
    (
        "  capability / step / edge F1",
        lambda m: (
            f"{m.capability_f1:.2f} / {m.step_f1:.2f} / "
            + ("n/a" if m.edge_f1 is None else f"{m.edge_f1:.2f}")
        ),
    ),
    ("tasks", lambda m: str(m.tasks)),
    ("wall time (s)", lambda m: f"{m.wall_s:.2f}"),
]


def _effects(fault: dict[str, object]) -> str:
    effects = fault.get("effects") or {}
    assert isinstance(effects, dict)
    text = ", ".join(f"{k} {v}" for k, v in effects.items()) or "none"
    if fault.get("error"):
        text += f" (error: {fault['error']})"
    return text


def _exposure(fault: dict[str, object]) -> str:
    if not fault.get("triggered"):
        return "never triggered"
    if "tasks_exposed" not in fault:
        return "—"
    return (
        f"{fault['tasks_answered']}/{fault['tasks_exposed']} answered, "
        f"{fault['tasks_recovered']} re-routed"
    )


def render(console: Console, report: SimReport) -> None:
    console.print(
        f"[bold]rede sim[/bold] {report.scenario}: [yellow]SIMULATED models[/yellow] "
        f"(time scale {report.time_scale:g}, seed {report.seed}, "
        f"{report.workload.tasks} {report.workload.kind} tasks, "
        f"{report.concurrency} in flight)"
    )
    table = Table(title=f"{report.scenario} — simulated models", title_style="bold")
    table.add_column("metric")
    for system in report.systems:
        table.add_column(system.name, justify="right")
    for label, cell in ROWS:
        table.add_row(label, *(cell(s.metrics) for s in report.systems))
    console.print(table)
    for system in report.systems:
        if system.faults:
            console.print(_fault_table(system))
        failures = _failures(system)
        if failures:
            console.print(f"[red]failed runs of {system.name}:[/red]")
            for line in failures:
                console.print(f"  {line}", markup=False)
    console.print(f"[dim]{report.note}[/dim]")


def _fault_table(system: SystemReport) -> Table:
    table = Table(title=f"faults injected into {system.name}", title_style="bold")
    for col in FAULT_COLUMNS:
        table.add_column(col)
    for row in _fault_rows(system):
        table.add_row(*row)
    return table


FAULT_COLUMNS = ("fault", "target", "what", "trigger", "at (s)", "effects", "runs during it")


def _fault_rows(system: SystemReport) -> list[list[str]]:
    rows = []
    for f in system.faults:
        started = f.get("started_s")
        rows.append(
            [
                str(f["kind"]),
                str(f["target"]),
                str(f["what"]),
                str(f["trigger"]),
                "—" if not isinstance(started, float | int) else f"{started:.2f}",
                _effects(f),
                _exposure(f),
            ]
        )
    return rows


def _failures(system: SystemReport, limit: int = 5) -> list[str]:
    failed = [t for t in system.tasks if t.status != "ok"]
    lines = [f"{t.task_id}: {t.error or 'failed'}" for t in failed[:limit]]
    if len(failed) > limit:
        lines.append(f"... and {len(failed) - limit} more")
    return lines


def markdown(report: SimReport) -> str:
    lines = [
        f"# rede sim: {report.scenario}",
        "",
        f"> **Simulated models.** {report.note}",
        "",
    ]
    if report.description:
        lines += [report.description.strip(), ""]
    lines += [
        f"Time scale {report.time_scale:g}, seed {report.seed}, {report.workload.tasks} "
        f"{report.workload.kind} tasks, {report.concurrency} in flight.",
        "",
        "| metric | " + " | ".join(s.name for s in report.systems) + " |",
        "|---|" + "---:|" * len(report.systems),
    ]
    for label, cell in ROWS:
        lines.append(
            f"| {label.strip()} | " + " | ".join(cell(s.metrics) for s in report.systems) + " |"
        )
    for system in report.systems:
        lines += ["", f"## {system.name} ({system.network}, bus {system.bus})", ""]
        lines += [f"- {a}" for a in system.agents]
        if system.faults:
            lines += ["", "| " + " | ".join(FAULT_COLUMNS) + " |", "|---" * 7 + "|"]
            lines += ["| " + " | ".join(row) + " |" for row in _fault_rows(system)]
        failures = _failures(system)
        if failures:
            lines += ["", "Failed runs:", ""] + [f"- {line}" for line in failures]
    return "\n".join(lines) + "\n"


def write(report: SimReport, out: Path) -> list[Path]:
    """Write ``report.json`` and ``report.md`` into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    data = report.model_dump(mode="json")
    path_json = out / "report.json"
    path_json.write_text(json.dumps(data, indent=2, allow_nan=False, default=str) + "\n")
    path_md = out / "report.md"
    path_md.write_text(markdown(report))
    return [path_json, path_md]
