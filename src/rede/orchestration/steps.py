"""The plan loop: every step of a plan run as soon as the steps it depends on have ended.

``graphlib.TopologicalSorter`` says which steps are ready. Several ready at once run as
tasks, concurrently, and each puts its outcome on a queue as it ends, so the loop wakes one
turn of the event loop later (``asyncio.wait`` on the tasks takes two: the task's done
callback, then the waiter). A step that is the only one able to run until it ends (the next
link of a chain, a join) runs in the loop itself: no task to start, none to wake the loop.
Results flow as context to the steps that depend on them; the first failed step ends the run
(the others are cancelled).
"""

from __future__ import annotations

import asyncio
import graphlib
from collections.abc import Awaitable, Callable

from rede.orchestration.plan import Plan, Step
from rede.protocol.messages import ContextItem, Result

RunStep = Callable[[Step, list[ContextItem]], Awaitable[Result]]
Ended = asyncio.Queue[tuple[str, Result | BaseException]]


async def run_steps(
    plan: Plan, restored: Callable[[str], Result | None], run_step: RunStep
) -> dict[str, Result]:
    """Run ``plan``'s steps with ``run_step``; a step ``restored`` finds (a resumed run's
    finished step) is not run again. Returns every step's result, by step id."""
    sorter = graphlib.TopologicalSorter(plan.graph())
    sorter.prepare()
    outputs: dict[str, Result] = {}
    running: dict[str, asyncio.Task[None]] = {}
    ended: Ended = asyncio.Queue()
    steps: dict[str, Step] = {}
    for st in plan.steps:  # looked up by id once per run, not searched per step and context
        steps.setdefault(st.id, st)
    try:
        while sorter.is_active():
            ready = []
            for step_id in sorter.get_ready():
                kept = restored(step_id)
                if kept is not None:  # finished before the run was resumed
                    outputs[step_id] = kept
                    sorter.done(step_id)
                    continue
                step = steps.get(step_id) or plan.step(step_id)
                context = [context_item(steps[d], outputs[d]) for d in step.depends_on]
                ready.append((step, context))
            if len(ready) == 1 and not running:  # the only step that can run until it ends
                step, context = ready[0]
                outputs[step.id] = await run_step(step, context)
                sorter.done(step.id)
                continue
            for step, context in ready:
                running[step.id] = asyncio.create_task(_step_into(ended, run_step, step, context))
            if not running:
                continue
            step_id, outcome = await ended.get()
            del running[step_id]
            if isinstance(outcome, BaseException):
                raise outcome  # a failed step ends the run
            outputs[step_id] = outcome
            sorter.done(step_id)
    finally:
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
    return outputs


async def _step_into(
    ended: Ended, run_step: RunStep, step: Step, context: list[ContextItem]
) -> None:
    """Run a step and put its result, or its error, on ``ended``."""
    try:
        result = await run_step(step, context)
    except BaseException as exc:
        ended.put_nowait((step.id, exc))
        if not isinstance(exc, Exception):
            raise  # cancelled: the task ends cancelled too
        return
    ended.put_nowait((step.id, result))


def context_item(step: Step, result: Result) -> ContextItem:
    """A finished step's result as context for the steps that depend on it."""
    return ContextItem(
        step_id=step.id, capability=step.capability, content=result.output, data=result.data
    )


__all__ = ["context_item", "run_steps"]
