"""Durable runs: a run's checkpoint, written to the ledger as it goes, and read back to
resume the run in another orchestrator.

The checkpoint holds what a resumed run must not do again: the plan, every finished step with
its result and record, the calls whose usage is already booked (by ``step/attempt``), and what
the run waits for from a person. A resumed run plans nothing already planned, runs no
finished step and books no call twice; the step that was in flight is sent again under the
same idempotency keys (``run/step/attempt/capability``), so an agent that already answered
replies with its kept answer instead of calling its model again (see
:mod:`rede.runtime.once`).

Who runs a run is a *lease* in the ledger (:meth:`~rede.orchestration.ledger.Ledger.claim_run`),
renewed by its orchestrator every third of ``durable.lease_s``; a run whose lease lapsed is an
orphan (``Ledger.orphans``) that ``rede resume`` or ``rede serve`` takes over.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from rede.orchestration.plan import Plan
from rede.orchestration.run import StepRecord
from rede.protocol.messages import Result, Usage

RESTORABLE = frozenset({"step", "synthesis"})
"""Kinds of step whose kept result a resumed run uses instead of running them."""


class DoneStep(BaseModel):
    record: StepRecord
    result: Result


class Wait(BaseModel):
    """Something a run waits for from a person."""

    id: str
    """``plan``, ``step:<id>`` or ``input:<step>:<n>``: the same when the run is resumed."""
    kind: Literal["plan", "step", "input"]
    step: str
    prompt: str
    show: str = ""
    """What the person is asked to judge: the plan, the step's output, the question."""
    since: float
    timeout_s: float | None = None


class RunCheckpoint(BaseModel):
    run_id: str
    network: str = ""
    request: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    status: Literal["running", "waiting", "ok", "failed"] = "running"
    started_at: datetime | None = None
    plan: Plan | None = None
    done: dict[str, DoneStep] = Field(default_factory=dict)
    accounted: list[str] = Field(default_factory=list)
    """``step/attempt`` of every call whose usage is in ``usage``."""
    usage: Usage = Field(default_factory=Usage)
    calls: int = 0
    waiting: dict[str, Wait] = Field(default_factory=dict)
    answer: str = ""
    error: str | None = None
    resumes: int = 0
    replans: int = 0
    """Repaired plans asked for after a step failed (``plan`` is the latest)."""

    def restored(self, step_id: str) -> Result | None:
        """The kept result of a finished plan step or synthesis, if there is one."""
        done = self.done.get(step_id)
        if done is None or done.record.kind not in RESTORABLE:
            return None
        return done.result


__all__ = ["RESTORABLE", "DoneStep", "RunCheckpoint", "Wait"]
