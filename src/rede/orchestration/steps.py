"""The plan loop: every step of a plan run as soon as the steps it depends on have ended.

``graphlib.TopologicalSorter`` says which steps are ready. Several ready at once run as
tasks, concurrently, and each puts its outcome on a queue as it ends, so the loop wakes one
turn of the event loop later (``asyncio.wait`` on the tasks takes two: the task's done
callback, then the waiter). A step that is the only one able to run until it ends (the next
link of a chain, a join) runs in the loop itself: no task to start, none to wake the loop.
Results flow as context to the steps that depend on them.

A step that fails (:class:`~rede.errors.StepFailed`) is handed to ``on_failure``, which says
what to do (see :mod:`rede.orchestration.failures`): ``continue`` (its failed result is its
output: dependants get the failure as context), ``replan`` (no new step starts; once the
steps in flight have ended, :class:`Replan` is raised naming the failed steps) or ``fail``
(the error ends the loop and the other steps are cancelled). Without ``on_failure`` every
failure is ``fail``.
"""

from __future__ import annotations

import asyncio
import graphlib
from collections.abc import Awaitable, Callable

from rede.config import StepPolicy
from rede.errors import StepFailed
from rede.orchestration.plan import Plan, Step
from rede.protocol.messages import ContextItem, Result

RunStep = Callable[[Step, list[ContextItem]], Awaitable[Result]]
OnFailure = Callable[[Step, StepFailed], StepPolicy]
Ended = asyncio.Queue[tuple[str, Result | BaseException]]


class Replan(Exception):
    """Steps failed under the ``replan`` policy: the plan loop stopped for a repaired plan."""

    def __init__(self, failed: list[str]) -> None:
        super().__init__(f"replan after {', '.join(failed)} failed")
        self.failed = failed


async def run_steps(
    plan: Plan,
    restored: Callable[[str], Result | None],
    run_step: RunStep,
    on_failure: OnFailure | None = None,
) -> dict[str, Result]:
    """Run ``plan``'s steps with ``run_step``; a step ``restored`` finds (a resumed run's
    finished or failed-and-continued step) is not run again. Returns every step's result,
    by step id (a failed result for a step that failed and was continued)."""
    sorter = graphlib.TopologicalSorter(plan.graph())
    sorter.prepare()
    outputs: dict[str, Result] = {}
    running: dict[str, asyncio.Task[None]] = {}
    ended: Ended = asyncio.Queue()
    steps: dict[str, Step] = {}
    for st in plan.steps:  # looked up by id once per run, not searched per step and context
        steps.setdefault(st.id, st)
    replan: list[str] = []
    try:
        while sorter.is_active():
            ready = [] if replan else _ready(sorter, steps, outputs, restored)
            if len(ready) == 1 and not running:  # the only step that can run until it ends
                step, context = ready[0]
                outcome: Result | BaseException = await _outcome(run_step, step, context)
            else:
                for step, context in ready:
                    running[step.id] = asyncio.create_task(
                        _step_into(ended, run_step, step, context)
                    )
                if not running:
                    if replan:
                        break
                    continue
                step_id, outcome = await ended.get()
                del running[step_id]
                step = steps[step_id]
            if isinstance(outcome, BaseException):
                outcome = _handled(step, outcome, on_failure, replan)
                if outcome is None:
                    continue
            outputs[step.id] = outcome
            sorter.done(step.id)
    finally:
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
    if replan:
        raise Replan(replan)
    return outputs


def _ready(
    sorter: graphlib.TopologicalSorter[str],
    steps: dict[str, Step],
    outputs: dict[str, Result],
    restored: Callable[[str], Result | None],
) -> list[tuple[Step, list[ContextItem]]]:
    """The steps ready to run, with their context; restored steps are done at once."""
    ready = []
    for step_id in sorter.get_ready():
        kept = restored(step_id)
        if kept is not None:  # finished before the run was resumed
            outputs[step_id] = kept
            sorter.done(step_id)
            continue
        step = steps[step_id]
        ready.append((step, [context_item(steps[d], outputs[d]) for d in step.depends_on]))
    return ready


def _handled(
    step: Step, exc: BaseException, on_failure: OnFailure | None, replan: list[str]
) -> Result | None:
    """A failed step's outcome under its policy: its failed result (``continue``), None
    (``replan``: noted in ``replan``), or the error raised (``fail``, or not a step's
    failure)."""
    if on_failure is None or not isinstance(exc, StepFailed):
        raise exc
    action = on_failure(step, exc)
    if action == "fail":
        raise exc
    if action == "replan":
        replan.append(step.id)
        return None
    return Result(status="failed", error=exc.reason)


async def _outcome(run_step: RunStep, step: Step, context: list[ContextItem]) -> Result | Exception:
    try:
        return await run_step(step, context)
    except Exception as exc:
        return exc


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
    """A finished step's result as context for the steps that depend on it; a failed step's
    (one the run went on without) says that it failed, and why."""
    if result.status == "failed":
        return ContextItem(
            step_id=step.id,
            capability=step.capability,
            content=f"(step {step.id} [{step.capability}] failed: {result.error}; "
            "its output is missing: answer without it and say what is missing)",
            data={"failed": True, "error": result.error},
        )
    return ContextItem(
        step_id=step.id, capability=step.capability, content=result.output, data=result.data
    )


__all__ = ["Replan", "context_item", "run_steps"]
