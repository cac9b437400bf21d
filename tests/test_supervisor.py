"""The restart policy of ``rede up``: a :class:`Backoff` told how long each process ran,
:func:`keep_running` with real short-lived processes, and ``rede up`` itself with an agent
that crash-loops at start (a tool that cannot be loaded). No Redis: a network of only
ordinary agents never connects ``rede up`` itself to the bus, and the broken agent exits
before it does."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from rede.errors import ConfigError
from rede.scaling.restarts import Backoff, exit_status, keep_running

DEAD_BUS = "redis://127.0.0.1:1/0"
"""Never reached: the only agent fails on its YAML before it connects."""

RESTART = re.compile(r"agent broken exited with (-?\d+) after [\d.]+s; restarting in ([\d.]+)s")


# --------------------------------------------------------------------------- the policy


def test_quick_exits_double_the_wait_up_to_the_cap() -> None:
    backoff = Backoff(initial_s=1, max_s=10, quick_s=10)
    waits = [backoff.delay(ran_s=0.5) for _ in range(7)]
    assert waits == [1, 2, 4, 8, 10, 10, 10]
    assert backoff.quick_exits == 7


def test_a_long_run_resets_the_wait() -> None:
    backoff = Backoff(initial_s=1, max_s=60, quick_s=10)
    assert [backoff.delay(2) for _ in range(4)] == [1, 2, 4, 8]
    assert backoff.delay(10) == 1  # ran quick_s: up long enough, the loop is over
    assert backoff.quick_exits == 0
    assert [backoff.delay(9.9) for _ in range(3)] == [1, 2, 4]  # a new loop starts over


def test_the_wait_stays_at_the_cap_however_long_the_crash_loop() -> None:
    backoff = Backoff(initial_s=0.5, max_s=60)
    waits = [backoff.delay(0) for _ in range(10_000)]
    assert waits[:4] == [0.5, 1, 2, 4] and set(waits[8:]) == {60}


@pytest.mark.parametrize(("initial_s", "max_s"), [(2, 1), (0, 1)])
def test_an_impossible_backoff_is_refused(initial_s: float, max_s: float) -> None:
    with pytest.raises(ConfigError, match="--restart-s must be at most --restart-max-s"):
        Backoff(initial_s=initial_s, max_s=max_s)


def test_exit_status_names_the_signal_that_killed_a_process() -> None:
    assert exit_status(1) == "exited with 1"
    assert exit_status(-signal.SIGKILL) == "was killed by SIGKILL"


# --------------------------------------------------------------------------- keep_running


async def test_keep_running_waits_longer_after_each_quick_exit_and_reports_why() -> None:
    """Real processes that exit at once, with a clock the test controls: each runs 1 s,
    so each exit is quick; the reports give the exit code, the run time and growing waits."""
    lines: list[str] = []
    fourth = asyncio.Event()
    ticks = iter(range(0, 1000))

    def report(line: str) -> None:
        lines.append(line)
        if len(lines) == 4:
            fourth.set()

    task = asyncio.create_task(
        keep_running(
            "broken",
            [sys.executable, "-c", "raise SystemExit(3)"],
            backoff=Backoff(initial_s=0.01, max_s=0.04, quick_s=5),
            report=report,
            clock=lambda: float(next(ticks)),  # one tick a call: every process "ran" 1 s
        )
    )
    async with asyncio.timeout(30):
        await fourth.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert lines[:4] == [
        "agent broken exited with 3 after 1.0s; restarting in 0.01s",
        "agent broken exited with 3 after 1.0s; restarting in 0.02s (2 quick exits in a row)",
        "agent broken exited with 3 after 1.0s; restarting in 0.04s (3 quick exits in a row)",
        "agent broken exited with 3 after 1.0s; restarting in 0.04s (4 quick exits in a row)",
    ]


async def test_cancelling_keep_running_ends_its_wait_at_once() -> None:
    """Cancelled during a 60 s wait, it returns well within 10 s."""
    waiting = asyncio.Event()
    task = asyncio.create_task(
        keep_running(
            "broken",
            [sys.executable, "-c", "raise SystemExit(3)"],
            backoff=Backoff(initial_s=60),
            report=lambda line: waiting.set(),
        )
    )
    async with asyncio.timeout(30):
        await waiting.wait()
    task.cancel()
    async with asyncio.timeout(10):
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


# --------------------------------------------------------------------------- rede up


def broken_network(tmp_path: Path) -> Path:
    path = tmp_path / "network.yaml"
    path.write_text(
        "name: crashing\n"
        "agents:\n"
        '  - {name: broken, capabilities: [write], tool: "nosuchmodule:fn"}\n'
        "bus: {insecure: true}\n"  # the agent's crash is the point here, not signing
    )
    return path


def agents_of(network: Path) -> set[int]:
    """Live processes whose command line names this network file (Linux /proc): the
    ``rede agent`` processes of one test, whoever their parent is now."""
    pids = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"agent" in args and str(network).encode() in args:
            pids.add(int(cmdline.parent.name))
    return pids


async def start_up(network: Path, *options: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rede",
        "up",
        str(network),
        "--bus",
        DEAD_BUS,
        *options,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "500"},  # one report, one line
    )


async def restarts(up: asyncio.subprocess.Process, count: int) -> list[tuple[int, float]]:
    """Read ``rede up``'s stderr until ``count`` restart reports: (exit code, wait) each."""
    assert up.stderr is not None
    found: list[tuple[int, float]] = []
    async with asyncio.timeout(60):
        while len(found) < count:
            line = (await up.stderr.readline()).decode()
            assert line, f"rede up stopped early with {await up.wait()}"
            if match := RESTART.search(line):
                found.append((int(match[1]), float(match[2])))
    return found


async def stop(up: asyncio.subprocess.Process) -> int:
    """SIGTERM, then the exit code: within 15 s, or the test fails."""
    up.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(15):
            await up.communicate()
    finally:
        if up.returncode is None:
            up.kill()
            await up.wait()
    return up.returncode


async def test_rede_up_backs_off_an_agent_that_crash_loops(tmp_path: Path) -> None:
    """Each quick exit doubles the wait, up to --restart-max-s; SIGTERM stops it all."""
    network = broken_network(tmp_path)
    up = await start_up(network, "--restart-s", "0.1", "--restart-max-s", "0.4")
    try:
        assert await restarts(up, 4) == [(1, 0.1), (1, 0.2), (1, 0.4), (1, 0.4)]
    finally:
        code = await stop(up)
    assert code == 0
    assert agents_of(network) == set()


async def test_rede_up_stops_at_once_while_waiting_to_restart(tmp_path: Path) -> None:
    """SIGTERM during a 60 s wait: ``rede up`` exits cleanly within 15 s, no child left."""
    network = broken_network(tmp_path)
    up = await start_up(network, "--restart-s", "60")
    try:
        assert await restarts(up, 1) == [(1, 60)]
        assert agents_of(network) == set()  # the agent has exited; `rede up` is waiting
    finally:
        code = await stop(up)
    assert code == 0
    assert agents_of(network) == set()
