"""The record of one run: plan, steps, calls, usage, envelopes, decisions and answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from rede.config import StepPolicy
from rede.errors import UnknownStep
from rede.orchestration.plan import Plan
from rede.protocol.messages import Envelope, Usage


class CallRecord(BaseModel):
    """One task sent to one agent and its reply."""

    agent: str
    capability: str
    tier: int = 0
    status: Literal["ok", "failed"]
    usage: Usage
    confidence: float = 0.0
    error: str | None = None


class MissingStep(BaseModel):
    """A step of the plan whose output a partial answer lacks, and why."""

    step: str
    capability: str
    error: str


class StepFailure(MissingStep):
    """A failed plan step and what the run did about it: the ``step_failed`` decision."""

    policy: StepPolicy
    """The step's policy (see :class:`~rede.config.StepFailureConfig`)."""
    source: str
    """Where it came from: ``required``, ``person``, ``step``, ``capability`` or ``network``."""
    action: StepPolicy
    """What the run did: ``replan``, ``continue`` (also a ``replan`` with none left) or
    ``fail``."""
    reason: str = ""
    """Why the action differs from the policy, when it does."""


class StepRecord(BaseModel):
    id: str
    capability: str
    instruction: str
    depends_on: list[str] = Field(default_factory=list)
    kind: str = "step"
    """``plan``, ``step``, ``synthesis`` or ``input`` (a question one agent asked another)."""
    status: Literal["pending", "running", "ok", "failed"] = "running"
    agent: str | None = None
    tier: int = 0
    output: str = ""
    confidence: float = 0.0
    usage: Usage = Field(default_factory=Usage)
    """Everything the step consumed: every attempt, critique and refinement."""
    calls: list[CallRecord] = Field(default_factory=list)
    critiques: list[dict[str, Any]] = Field(default_factory=list)
    rounds: int = 0
    started_at: float | None = None
    """Seconds since the run started."""
    ended_at: float | None = None
    error: str | None = None
    """Why the step failed."""

    @property
    def model_time_s(self) -> float:
        return self.usage.latency_s


class RunResult(BaseModel):
    run_id: str
    request: str
    status: Literal["running", "ok", "failed"] = "running"
    error: str | None = None
    answer: str = ""
    partial: bool = False
    """The answer lacks the output of the plan steps in ``missing`` (they failed and the
    run went on without them: ``on_step_failure``); the answer says so at its end."""
    missing: list[MissingStep] = Field(default_factory=list)
    confidence: float = 0.0
    plan: Plan | None = None
    steps: list[StepRecord] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    envelopes: list[Envelope] = Field(default_factory=list)
    decisions: list[dict[str, Any]] = Field(default_factory=list)
    started_at: datetime | None = None
    wall_time_s: float = 0.0
    critical_path: list[str] = Field(default_factory=list)
    critical_path_s: float = 0.0
    """Model time along the longest dependency chain: planning, plan steps, synthesis."""

    @property
    def simulated(self) -> bool:
        return any(c.usage.source == "simulated" for s in self.steps for c in s.calls)

    @property
    def sources(self) -> set[str]:
        return {c.usage.source for s in self.steps for c in s.calls}

    def step(self, step_id: str) -> StepRecord:
        """The step of that id; :class:`~rede.errors.UnknownStep` names the ids there are."""
        found = next((s for s in self.steps if s.id == step_id), None)
        if found is None:
            raise UnknownStep(step_id, [s.id for s in self.steps], f"run {self.run_id}")
        return found

    def summary(self) -> dict[str, Any]:
        """The run without its envelopes, for ``--json`` and reports."""
        return {
            **self.model_dump(mode="json", exclude={"envelopes"}),
            "messages": len(self.envelopes),
            "simulated": self.simulated,
            "sources": sorted(self.sources),
        }


def critical_path(run: RunResult) -> tuple[list[str], float]:
    """The chain of steps with the most model time, and that time."""
    by_id = {s.id: s for s in run.steps if s.kind == "step"}
    finish: dict[str, tuple[float, list[str]]] = {}

    def walk(step_id: str) -> tuple[float, list[str]]:
        if step_id in finish:
            return finish[step_id]
        step = by_id[step_id]
        best: tuple[float, list[str]] = (0.0, [])
        for dep in step.depends_on:
            if dep in by_id:
                cand = walk(dep)
                if cand[0] > best[0] or not best[1]:
                    best = cand
        finish[step_id] = (best[0] + step.model_time_s, [*best[1], step_id])
        return finish[step_id]

    chain_time, chain = max(
        (walk(s) for s in by_id), default=(0.0, []), key=lambda t: (t[0], len(t[1]))
    )
    before = [s for s in run.steps if s.kind == "plan"]
    after = [s for s in run.steps if s.kind == "synthesis"]
    total = chain_time + sum(s.model_time_s for s in before + after)
    return [s.id for s in before] + chain + [s.id for s in after], total
