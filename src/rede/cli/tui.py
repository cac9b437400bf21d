"""The live terminal view of a run (rich): the plan as it runs, then the answer and totals."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from rede.console import make_console
from rede.orchestration.failures import once_each
from rede.orchestration.run import RunResult
from rede.protocol.messages import Event

STATE_STYLE = {
    "paused": "magenta",
    "waiting": "dim",
    "running": "yellow",
    "ok": "green",
    "failed": "red",
}


FAILED_NOTE = {
    "replan": "replanning around it",
    "continue": "continued without it",
    "fail": "failed the run",
}
"""What the live view says the run did with a failed step (``on_step_failure``)."""


class _Row:
    def __init__(self, step: str, capability: str) -> None:
        self.step = step
        self.capability = capability
        self.agent = ""
        self.state = "waiting"
        self.tokens = 0
        self.cost = 0.0
        self.started: float | None = None
        self.ended: float | None = None
        self.rounds = 0
        self.note = ""


class LiveView:
    """An observer for ``Network.ask``: call it with events; use it as a context manager."""

    def __init__(
        self, console: Console | None = None, *, simulated: bool = False, title: str = "Rede run"
    ) -> None:
        self.console = console or make_console()
        self.simulated = simulated
        self.title = title
        self.rows: dict[str, _Row] = {}
        self.t0 = time.perf_counter()
        self.max_parallel = 0
        self._live = Live(
            self._render(), console=self.console, refresh_per_second=12, transient=False
        )

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.update(self._render())
        self._live.__exit__(None, None, None)
        self.console.print()

    def _row(self, step: str, capability: str = "") -> _Row:
        base = step
        if base not in self.rows:
            self.rows[base] = _Row(base, capability)
        return self.rows[base]

    def __call__(self, event: Event) -> None:
        d: dict[str, Any] = event.data
        now = time.perf_counter() - self.t0
        if event.name == "plan_ready":
            for s in d["plan"]["steps"]:
                self._row(s["id"], s["capability"])
        elif event.name == "step_started":
            row = self._row(d["step"], d["capability"])
            if d["capability"] == row.capability or not row.agent:
                row.agent = d["agent"]
            row.state = "running"
            if row.started is None:
                row.started = now
            if d["capability"] == "critique":
                row.note = f"critique by {d['agent']}"
            elif d.get("attempt", 0) > 0 and d["capability"] == row.capability:
                row.note = f"attempt {d['attempt'] + 1}"
        elif event.name == "critique":
            row = self._row(d["step"])
            verdict = "accepted" if d["accepted"] else "refine"
            row.note = f"critic {d['score']:.2f}: {verdict}"
        elif event.name == "waiting_for_human":
            row = self._row(d["step"], "plan" if d["kind"] == "plan" else "")
            row.state = "paused"
            verb = "reply" if d["kind"] == "input" else "approve"
            row.note = f"waits for a person: rede {verb} {d['run_id']}"
        elif event.name == "human_answered":
            row = self._row(d["step"])
            row.note = "approved" if d.get("approved", True) else "rejected"
            if row.state == "paused":
                row.state = "ok" if d["step"] == "plan" else "running"
        elif event.name == "step_failed":
            row = self._row(d["step"], d["capability"])
            row.state = "failed"
            row.note = f"{FAILED_NOTE.get(d['action'], d['action'])}: {once_each(d['error'])}"
        elif event.name == "step_finished":
            row = self._row(d["step"])
            row.state = d["status"]
            row.ended = now
            row.rounds = d.get("rounds", 0)
            usage = d.get("usage") or {}
            if usage.get("source") == "simulated":
                self.simulated = True  # agents in other processes: only their results tell
            row.tokens = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
            row.cost = usage.get("cost_usd", 0.0)
        running = sum(1 for r in self.rows.values() if r.state == "running")
        self.max_parallel = max(self.max_parallel, running)
        self._live.update(self._render())

    def _render(self) -> Panel:
        wide = self.console.is_terminal  # off a terminal, as wide as the content
        table = Table(expand=wide, show_edge=False)
        for col in ("step", "capability", "agent", "state", "tokens", "cost $", "time s", "notes"):
            table.add_column(
                col,
                justify="right" if col in ("tokens", "cost $", "time s") else "left",
                no_wrap=col != "notes",
                overflow="ellipsis",
            )
        now = time.perf_counter() - self.t0
        for row in self.rows.values():
            state: Any = Text(row.state, style=STATE_STYLE.get(row.state, ""))
            if row.state == "running":
                state = Spinner("dots", text=Text("running", style="yellow"))
            elapsed = ""
            if row.started is not None:
                elapsed = f"{(row.ended or now) - row.started:.2f}"
            notes = row.note + (f" · {row.rounds} refine round(s)" if row.rounds else "")
            table.add_row(
                Text(row.step),
                Text(row.capability),
                Text(row.agent),
                state,
                str(row.tokens or ""),
                f"{row.cost:.6f}" if row.cost else "",
                elapsed,
                Text(notes),
            )
        running = sum(1 for r in self.rows.values() if r.state == "running")
        sub = f"{running} step(s) running now · peak parallel {self.max_parallel}"
        if self.simulated:
            sub += " · SIMULATED models (sim backend), not real LLM output"
        return Panel(table, title=self.title, subtitle=sub, expand=wide)


def render_result(console: Console, result: RunResult, *, label: str = "") -> None:
    """The answer and the run's figures; ``label`` says what models wrote it (simulated
    models are always said to be)."""
    label = " (simulated models)" if result.simulated else (f" ({label})" if label else "")
    answer = Text(result.answer or "(no answer)")
    title = f"{'Partial answer' if result.partial else 'Answer'}{label}"
    if console.is_terminal:
        style = "red" if result.status != "ok" else "yellow" if result.partial else "green"
        console.print(Panel(answer, title=title, border_style=style))
    else:  # a pipe or a log: the answer as plain lines, never boxed at a guessed width
        console.print(f"{title}:", style="bold", highlight=False)
        console.print(answer, soft_wrap=True)
    u = result.usage
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("run", result.run_id)
    summary.add_row("status", result.status + (f": {result.error}" if result.error else ""))
    if result.partial:
        lacks = ", ".join(f"{m.step} ({m.capability})" for m in result.missing)
        summary.add_row("partial", f"the answer lacks step(s) that failed: {lacks}")
    est = " (estimated)" if u.estimated else ""
    summary.add_row(
        "tokens",
        f"{u.total_tokens} ({u.prompt_tokens} prompt + {u.completion_tokens} completion){est}",
    )
    summary.add_row("cost", f"${u.cost_usd:.6f}")
    summary.add_row("model calls", str(u.calls))
    summary.add_row("messages", str(len(result.envelopes)))
    summary.add_row("wall time", f"{result.wall_time_s:.2f} s")
    summary.add_row(
        "critical path",
        f"{' -> '.join(result.critical_path)} ({result.critical_path_s:.2f} s of model time)",
    )
    summary.add_row("sources", ", ".join(sorted(result.sources)) or "none")
    console.print(Group(summary))


def failure_detail(data: dict[str, Any]) -> str:
    """A ``step_failed`` decision as a person reads it: what was done, why, then the error."""
    why = f"{data.get('policy')} from {data.get('source')}"
    if data.get("reason"):
        why += f"; {data['reason']}"
    return f"action={data.get('action')} ({why}), error={once_each(str(data.get('error')))}"[:240]
