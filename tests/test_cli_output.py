"""What the ``rede`` command prints off a terminal (a pipe, a log, CI) does not depend on the
terminal's width nor on how long a path is: an error is one line, a table cell is never cut,
and a usage error is an ``error:`` line like every other."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.table import Table
from typer.testing import CliRunner

from rede.cli.app import app
from rede.console import make_console, print_error

runner = CliRunner()
DEEP = "a-folder-name-that-is-long-" * 8  # about 216 characters of path


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 40-column terminal, as COLUMNS tells every process started from it."""
    monkeypatch.setenv("COLUMNS", "40")


def deep_path(tmp_path: Path) -> Path:
    folder = tmp_path / DEEP
    folder.mkdir()
    return folder


def test_an_error_off_a_terminal_is_one_line_at_any_width(narrow: None, tmp_path: Path) -> None:
    not_a_ledger = deep_path(tmp_path) / "team.yaml"
    not_a_ledger.write_text("name: team\n")
    run = runner.invoke(app, ["trace", "--ledger", str(not_a_ledger)])
    assert run.exit_code == 1
    lines = run.output.strip().splitlines()
    assert len(lines) == 1, run.output
    assert lines[0].startswith(f"error: {not_a_ledger} is not a Rede ledger")


def test_a_message_with_line_breaks_and_brackets_is_printed_whole_on_one_line() -> None:
    out = io.StringIO()
    print_error(make_console(file=out), "first line\n  second [bold]line[/bold]")
    assert out.getvalue() == "error: first line\\n  second [bold]line[/bold]\n"


def test_a_table_off_a_terminal_keeps_every_cell_whole(narrow: None) -> None:
    out = io.StringIO()
    table = Table()
    table.add_column("run")
    table.add_column("request")
    run_id, request = "run-" + "f" * 60, "a request of many words " * 6
    table.add_row(run_id, request.strip())
    make_console(file=out).print(table)
    assert run_id in out.getvalue() and request.strip() in out.getvalue()


def test_runs_lists_whole_ids_and_a_deep_ledger_path(narrow: None, tmp_path: Path) -> None:
    ledger = deep_path(tmp_path) / "ledger.db"
    demo = runner.invoke(app, ["demo", "--fast", "--ledger", str(ledger)])
    assert demo.exit_code == 0, demo.output
    listed = runner.invoke(app, ["runs", "--ledger", str(ledger)])
    assert listed.exit_code == 0, listed.output
    assert f"runs in {ledger}" in listed.output
    run_id = next(w for w in demo.output.split() if w.startswith("run-"))
    assert run_id in listed.output and "…" not in listed.output


def test_a_usage_error_is_one_error_line_naming_where_help_is(narrow: None) -> None:
    run = runner.invoke(app, ["run", "--no-such-option"], prog_name="rede")
    assert run.exit_code == 2
    assert run.output.strip().splitlines() == [
        "error: No such option: --no-such-option (see rede run -h)"
    ]


def test_help_on_a_narrow_terminal_shows_every_option_whole(narrow: None) -> None:
    run = runner.invoke(app, ["run", "--help"], prog_name="rede", terminal_width=40)
    assert run.exit_code == 0
    for option in ("--base-url", "--api-key", "--ledger", "--fast"):
        assert option in run.output
    assert "…" not in run.output
    assert max(len(line) for line in run.output.splitlines()) <= 40


def test_the_installed_command_prints_one_error_line_into_a_pipe(tmp_path: Path) -> None:
    """The real process, its stderr a pipe, COLUMNS=40: what a log or grep sees."""
    missing = deep_path(tmp_path) / "nope.db"
    proc = subprocess.run(
        [sys.executable, "-m", "rede", "trace", "--ledger", str(missing)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "40"},
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: no ledger at {missing}; run something first or pass --ledger"
    ]


def test_every_command_prints_through_rede_consoles() -> None:
    """A plain ``rich.console.Console()`` lays out at COLUMNS off a terminal and cuts cells:
    every console of the package comes from :func:`rede.console.make_console`."""
    import ast

    package = Path(__file__).resolve().parents[1] / "src" / "rede"
    plain = [
        f"{path.relative_to(package)}:{node.lineno}"
        for path in package.rglob("*.py")
        if path.name != "console.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Console"
    ]
    assert not plain, plain
