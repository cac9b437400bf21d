"""Keeping one agent process running: the restart policy (:class:`Backoff`), which exits are a
crash loop and which are kills from outside, and :func:`keep_running`, which reports and
announces every restart (see :mod:`rede.scaling.supervisor`)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from rede.backoff import doubling
from rede.children import dying_with_parent
from rede.errors import ConfigError, RedeError

Report = Callable[[str], None]
"""Where a supervisor says what it does: one line at a time."""


@dataclass
class Backoff:
    """When to start an exited process again: the restart policy of one supervised agent.

    :meth:`delay` is told how long each process ran, and answers the wait before the next
    start: ``initial_s`` after a process that ran ``quick_s`` or longer (which also ends a
    crash loop), and after the first quick exit; doubled for each further quick exit in a
    row, up to ``max_s``. Pure: the caller measures run times, with whatever clock."""

    initial_s: float = 1.0
    max_s: float = 60.0
    quick_s: float = 10.0
    quick_exits: int = field(default=0, init=False)
    """Exits within ``quick_s`` of their start in a row, the last one included."""

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ConfigError(
                f"a restart backoff must start above 0 and at most its cap, not at "
                f"{self.initial_s:g}s with a cap of {self.max_s:g}s "
                "(--restart-s must be at most --restart-max-s)"
            )

    def delay(self, ran_s: float, *, killed: bool = False) -> float:
        """The wait before starting again a process that exited after ``ran_s`` seconds.

        ``killed``: it was killed from outside (SIGKILL, SIGTERM, ...: an operator, the OOM
        killer, a chaos test), which says nothing of the process itself: no crash-loop
        verdict, it starts again after ``initial_s`` and ends a crash loop."""
        quick = ran_s < self.quick_s and not killed
        self.quick_exits = self.quick_exits + 1 if quick else 0
        return doubling(self.initial_s, self.quick_exits - 1, self.max_s)


OUTSIDE_KILLS = frozenset(
    {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT}
)
"""Signals someone else sends a process. SIGSEGV, SIGABRT, SIGBUS ... are its own crash."""


def killed_from_outside(code: int) -> bool:
    """Whether a return code says the process was killed by an outside signal."""
    return code < 0 and -code in OUTSIDE_KILLS  # a Signals member equals its number


def exit_status(code: int) -> str:
    """``exited with 1``, or ``was killed by SIGKILL`` for a negative return code."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with {code}"


Announce = Callable[[str, float, int], Awaitable[None]]
"""Tells the network that an agent will be started again: name, seconds until then, quick
exits in a row (:func:`rede.runtime.registry.restarting`)."""


async def keep_running(
    name: str,
    command: Sequence[str],
    *,
    backoff: Backoff,
    report: Report,
    clock: Callable[[], float] = time.monotonic,
    announce: Announce | None = None,
) -> None:
    """Run ``command`` and start it again after it exits, waiting as ``backoff`` says,
    until cancelled. Every restart is reported (the exit status, how long the process ran
    and the wait) and announced, so that runs waiting for the agent know it is coming back
    and when. Cancelling stops the process (SIGTERM, then SIGKILL) or the wait, at once."""
    while True:
        started = clock()
        proc = await asyncio.create_subprocess_exec(*command, preexec_fn=dying_with_parent())
        try:
            code = await proc.wait()
        finally:
            await terminate(proc)
        ran_s = clock() - started
        wait_s = backoff.delay(ran_s, killed=killed_from_outside(code))
        crash_loop = (
            f" ({backoff.quick_exits} quick exits in a row)" if backoff.quick_exits > 1 else ""
        )
        report(
            f"agent {name} {exit_status(code)} after {ran_s:.1f}s; "
            f"restarting in {wait_s:g}s{crash_loop}"
        )
        if announce is not None:
            await _announce(announce, name, wait_s, backoff.quick_exits, report)
        await asyncio.sleep(wait_s)


async def _announce(
    announce: Announce, name: str, wait_s: float, quick_exits: int, report: Report
) -> None:
    try:
        await announce(name, wait_s, quick_exits)
    except RedeError as exc:  # the bus is down: the restart goes ahead unannounced
        report(f"could not announce the restart of agent {name}: {exc}")


async def terminate(proc: asyncio.subprocess.Process, grace_s: float = 10.0) -> None:
    """SIGTERM, wait up to ``grace_s``, then SIGKILL; returns once it has exited."""
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        async with asyncio.timeout(grace_s):
            await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
