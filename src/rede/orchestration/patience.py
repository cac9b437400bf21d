"""Patience for a step whose capability has no live agent: spawn one from a template, wait
for one the network's configuration brings back (up to the step timeout), and, while a
supervisor says it is starting that agent again, as long as the run's deadline allows."""

from __future__ import annotations

import asyncio

from rede.errors import StepFailed
from rede.orchestration.run import StepRecord
from rede.orchestration.state import RunState
from rede.orchestration.tries import Tries


async def ensure_agent(s: RunState, rec: StepRecord, capability: str, tries: Tries) -> None:
    """Make sure a live agent serves ``capability``: spawn one from a template, or wait
    (on the registry's changes) up to the step timeout for one the network's
    configuration has to come back, and longer while a supervisor says it is starting one
    again; raise ``StepFailed`` saying so if none comes."""
    registry = s.services.registry
    spawned = await s.services.router.ensure(capability)
    if spawned is not None:
        s.decide(
            "spawn",
            step=rec.id,
            capability=capability,
            agent=spawned,
            reason=f"no live agent served {capability!r}; started {spawned} from its template",
        )
        return
    if registry.agents(capability):
        return
    timeout = s.limits.step_timeout_s
    _wait_decision(s, rec, capability, timeout)
    while True:
        try:
            await registry.wait_for(lambda reg: bool(reg.agents(capability)), timeout=timeout)
            return
        except TimeoutError:
            pass
        back = _coming_back(s, rec, capability, tries)
        if back is None:
            raise StepFailed(
                rec.id,
                f"no live agent serves {capability!r} and none came back within "
                f"{timeout:g}s (the step timeout, or the time its supervisor named); "
                f"failures: {'; '.join(tries.failures) or 'none'}",
            ) from None
        timeout = back


def _wait_decision(s: RunState, rec: StepRecord, capability: str, timeout: float) -> None:
    returning = s.services.registry.returning(capability)
    why = f"no live agent serves {capability!r} now"
    if returning:
        r = returning[0]
        due = s.services.registry.due_in(r)
        why += f"; its supervisor starts {r.agent} again in {due:.1f}s"
    s.decide(
        "wait_for_agent",
        step=rec.id,
        capability=capability,
        reason=f"{why}; waiting up to {timeout:g}s"
        + (" and longer while it is restarting" if returning else ""),
    )
    s.emit("waiting_for_agent", step=rec.id, capability=capability, timeout_s=timeout)


def _coming_back(s: RunState, rec: StepRecord, capability: str, tries: Tries) -> float | None:
    """How much longer to wait for an agent that a supervisor is starting again: until it
    is due and a step timeout more (it has to start and register), within the run's
    deadline; None when no supervisor said one is coming. A supervisor backing off past
    the run's deadline fails the step now, saying so."""
    registry = s.services.registry
    returning = registry.returning(capability)
    if not returning:
        return None
    r = returning[0]
    due = registry.due_in(r)
    left = time_left(s)
    if left is not None and due >= left:
        raise StepFailed(
            rec.id,
            f"no live agent serves {capability!r}: its supervisor starts {r.agent} again in "
            f"{due:.1f}s ({r.quick_exits} quick exits in a row), after the "
            f"run's deadline ({left:.1f}s left); failures: "
            f"{'; '.join(tries.failures) or 'none'}",
        )
    wait = due + s.limits.step_timeout_s
    wait = wait if left is None else min(wait, left)
    s.decide(
        "wait_for_agent",
        step=rec.id,
        capability=capability,
        reason=f"its supervisor is starting {r.agent} again (due in "
        f"{due:.1f}s); waiting up to {wait:.1f}s more",
    )
    s.emit(
        "waiting_for_agent", step=rec.id, capability=capability, timeout_s=wait, restarting=r.agent
    )
    return wait


def time_left(s: RunState) -> float | None:
    """Seconds left before the run's wall-time deadline, or None without one."""
    clock = s.clock
    when = clock.when() if clock is not None else None
    return None if when is None else when - asyncio.get_running_loop().time()
