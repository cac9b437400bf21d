"""Plans: a DAG of steps, validated before anything runs.

A plan from a model is data, never instructions: it is parsed against the schema, then
checked for duplicate ids, unknown dependencies, unknown capabilities, cycles (the error
names the cycle) and size. An invalid plan is repaired or re-asked, never run as is.
"""

from __future__ import annotations

import functools
import graphlib
import json
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rede.agents.specialists import parse_json_object
from rede.config import StepPolicy
from rede.errors import PlanError, UnknownCapability, UnknownStep
from rede.protocol.codec import describe_validation_error

RESERVED_STEP_IDS = frozenset({"plan", "synthesis"})
"""The ids of the orchestrator's own steps in a run record."""


class Step(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    capability: str
    instruction: str = Field(min_length=1)
    depends_on: list[str] = Field(default_factory=list)
    acceptance: str | None = None
    review: bool = False
    """A critic reviews the output; the step is refined until accepted or the round limit."""
    required_confidence: float = Field(0.0, ge=0, le=1)
    approve: bool = False
    """A person approves the step's output before dependants see it (see
    :mod:`rede.orchestration.human`)."""
    output_schema: dict[str, Any] | None = None
    """A JSON Schema the step's output should match: the agent's model server is asked to
    constrain decoding to it (structured outputs). Not offered to planners."""
    required: bool = False
    """The answer cannot do without this step: if it fails, the run fails (whatever the
    network's ``on_step_failure``)."""
    on_failure: StepPolicy | None = None
    """``replan``, ``continue`` or ``fail`` if this step fails; None: the network's policy
    (``on_step_failure``, by capability, then its default)."""

    @field_validator("depends_on")
    @classmethod
    def _once_each(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))  # a dependency named twice is one dependency

    def task_metadata(self) -> dict[str, Any] | None:
        """What the step adds to its task's metadata."""
        return {"output_schema": self.output_schema} if self.output_schema else None


class Plan(BaseModel):
    model_config = ConfigDict(extra="ignore")
    intent: str = "compose"
    steps: list[Step] = Field(min_length=1)

    def step(self, step_id: str) -> Step:
        """The step of that id; :class:`~rede.errors.UnknownStep` names the ids there are."""
        found = next((s for s in self.steps if s.id == step_id), None)
        if found is None:
            raise UnknownStep(step_id, [s.id for s in self.steps], "the plan")
        return found

    def graph(self) -> dict[str, set[str]]:
        return {s.id: set(s.depends_on) for s in self.steps}

    def sinks(self) -> list[Step]:
        """Steps no other step depends on: the plan's outputs."""
        needed = {d for s in self.steps for d in s.depends_on}
        return [s for s in self.steps if s.id not in needed]


def kept_and_renamed(plan: Plan, finished: dict[str, Step], used: set[str], tag: str) -> Plan:
    """A repaired ``plan`` fitted to the run so far: a step with the id and capability of one
    in ``finished`` is that step (its instruction and result kept: a small planner need not
    copy instructions word for word); any other step whose id the run has ``used`` gets a
    fresh one (``<id>-<tag>``), and dependencies follow."""
    names: dict[str, str] = {}
    kept: dict[str, Step] = {}
    taken = set(used)
    for st in plan.steps:
        old = finished.get(st.id)
        if old is not None and old.capability == st.capability:
            names[st.id], kept[st.id] = st.id, old
            continue
        name, n = st.id, 1
        while name in taken:
            name, n = f"{st.id[:48]}-{tag}{n if n > 1 else ''}", n + 1
        names[st.id] = name
        taken.add(name)
    steps = [
        kept.get(st.id, st).model_copy(
            update={"id": names[st.id], "depends_on": [names[d] for d in st.depends_on]}
        )
        for st in plan.steps
    ]
    return plan.model_copy(update={"steps": steps})


@functools.cache
def _plan_schema_json() -> str:
    return json.dumps(Plan.model_json_schema())


def plan_schema() -> dict[str, Any]:
    """The JSON Schema a planner's reply must match (built once; a fresh copy per call)."""
    result: dict[str, Any] = json.loads(_plan_schema_json())
    return result


def step_ids(n: int) -> list[str]:
    """The ids a planner is asked to give its steps, in order: ``s1`` .. ``sn``."""
    return [f"s{i}" for i in range(1, n + 1)]


def plan_prompt_schema(capabilities: Iterable[str], *, max_steps: int) -> dict[str, Any]:
    """The plan's JSON Schema as the planner's prompt shows it: short, for small contexts."""
    ids = step_ids(max_steps)
    step = {
        "type": "object",
        "properties": {
            "id": {"enum": ids},
            "capability": {"enum": sorted(capabilities)},
            "instruction": {"type": "string"},
            "depends_on": {"type": "array", "items": {"enum": ids}},
            "review": {"type": "boolean"},
        },
        "required": ["id", "capability", "instruction", "depends_on", "review"],
    }
    return {
        "type": "object",
        "properties": {
            "intent": {"type": "string"},
            "steps": {"type": "array", "items": step, "minItems": 1, "maxItems": max_steps},
        },
        "required": ["intent", "steps"],
    }


def plan_output_schema(capabilities: Iterable[str], *, max_steps: int) -> dict[str, Any]:
    """The schema a server constrains a planner's reply to (structured outputs).

    It says more than :func:`plan_prompt_schema`, so that a plan decoded under it is valid by
    construction: step ``i`` has the id ``s<i>`` and may depend only on earlier steps (known
    ids, no duplicates, no cycle, no reserved id), its capability is one the network serves,
    sizes are bounded, and every object is closed. ``steps`` is therefore one fixed-length
    tuple (``prefixItems``) per plan length, each step described once in ``$defs``. Only
    keywords that llama.cpp's grammar enforces are used (it ignores ``minimum``/``maximum``
    on numbers). :func:`validate_plan` still checks every reply, whatever the server did."""
    caps = sorted(capabilities)
    ids = step_ids(max_steps)
    defs: dict[str, Any] = {}
    for i, step_id in enumerate(ids):
        earlier = ids[:i]
        depends_on = (
            {"type": "array", "items": {"enum": earlier}, "maxItems": i, "uniqueItems": True}
            if earlier
            else {"const": []}
        )
        defs[step_id] = {
            "type": "object",
            "properties": {
                "id": {"const": step_id},
                "capability": {"enum": caps},
                "instruction": {"type": "string", "minLength": 1, "maxLength": 160},
                "depends_on": depends_on,
                "review": {"type": "boolean"},
            },
            "required": ["id", "capability", "instruction", "depends_on", "review"],
            "additionalProperties": False,
        }
    lengths = [
        {
            "type": "array",
            "prefixItems": [{"$ref": f"#/$defs/{step_id}"} for step_id in ids[:n]],
            "minItems": n,
            "maxItems": n,
            "items": False,
        }
        for n in range(1, max_steps + 1)
    ]
    return {
        "type": "object",
        "properties": {
            "intent": {"type": "string", "maxLength": 40},
            "steps": {"anyOf": lengths},
        },
        "required": ["intent", "steps"],
        "additionalProperties": False,
        "$defs": defs,
    }


def validate_plan(plan: Plan, capabilities: Iterable[str], *, max_steps: int) -> Plan:
    known = set(capabilities)
    if len(plan.steps) > max_steps:
        raise PlanError(f"plan has {len(plan.steps)} steps; the limit is {max_steps}")
    ids = [s.id for s in plan.steps]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise PlanError(f"duplicate step ids: {', '.join(dupes)}")
    reserved = sorted(RESERVED_STEP_IDS.intersection(ids))
    if reserved:
        raise PlanError(
            f"step id(s) {', '.join(reserved)} are the run's own planning and synthesis "
            "steps: give the step another id"
        )
    for step in plan.steps:
        if step.capability not in known:
            raise UnknownCapability(step.capability, known, where=f"step {step.id!r}")
        if step.capability == "critique":
            raise PlanError(
                f"step {step.id!r} has capability 'critique', which only reviews other steps: "
                'set "review": true on the step whose output a critic should check'
            )
        missing = [d for d in step.depends_on if d not in ids]
        if missing:
            raise PlanError(
                f"step {step.id!r} depends on unknown step(s): {', '.join(map(repr, missing))}"
            )
    try:
        graphlib.TopologicalSorter(plan.graph()).prepare()
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        raise PlanError(f"plan has a dependency cycle: {' -> '.join(cycle)}") from None
    return plan


def parse_plan(text: str, capabilities: Iterable[str], *, max_steps: int) -> Plan:
    """Parse a planner's reply and validate it. Raises PlanError/UnknownCapability."""
    try:
        data = parse_json_object(text)
    except ValueError as exc:
        raise PlanError(f"planner reply is not a JSON plan: {exc}") from None
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        raise PlanError(
            f"planner reply does not match the plan schema: {describe_validation_error(exc)}"
        ) from None
    return validate_plan(plan, capabilities, max_steps=max_steps)
