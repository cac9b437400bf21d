"""The Dispatcher: classifies a request and decomposes it into a validated Plan.

- A request that needs one step skips decomposition: plain arithmetic goes straight to an
  ``arithmetic`` agent, and a network without a ``plan`` capability runs the request as one
  step of its main capability (reviewed by the critic when the network has one).
- Otherwise the ``plan`` capability (a planner agent, routed like any step, so its cost and
  envelopes are recorded) writes a JSON plan against the schema. The plan is validated; an
  invalid one is sent back to the planner with the validation error, up to ``plan_repairs``
  times; after that the run falls back to a single-step plan and records why.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from rede.config import META_CAPABILITIES, LimitsConfig
from rede.errors import PlanError, UnknownCapability
from rede.orchestration.plan import (
    Plan,
    Step,
    parse_plan,
    plan_output_schema,
    plan_prompt_schema,
)
from rede.protocol.messages import Result

ARITHMETIC = re.compile(
    r"^\s*(?:what\s+is|compute|calculate|evaluate)?\s*[-+*/%().\d\s]*\d"
    r"[-+*/%().\d\s]*\??\s*$",
    re.I,
)
ANSWER_PREFERENCE = ("write", "writer", "answer", "research", "researcher")
STRUCTURED_PLAN_STEPS = 6
"""At most this many steps (or ``max_plan_steps`` if lower) in the schema a planner's server
is asked to constrain a plan to: small models plan better with few steps, and that schema
lists every plan length."""


class PlanCaller(Protocol):
    async def __call__(self, instruction: str, metadata: dict[str, Any]) -> Result: ...


Recorder = Callable[..., None]


def main_capability(capabilities: Iterable[str]) -> str:
    caps = sorted(set(capabilities) - META_CAPABILITIES)
    for pref in ANSWER_PREFERENCE:
        if pref in caps:
            return pref
    if not caps:
        where = (
            "the network: it has only plan/critique/synthesise agents"
            if capabilities
            else "the network: no live agent serves anything (are its agents running?)"
        )
        raise UnknownCapability("(any non-meta capability)", capabilities, where=where)
    return caps[0]


class Dispatcher:
    def __init__(self, limits: LimitsConfig) -> None:
        self.limits = limits

    def classify(self, request: str, capabilities: set[str]) -> Plan | None:
        """A one-step plan when the request needs no decomposition, else None."""
        if (
            "arithmetic" in capabilities
            and ARITHMETIC.match(request)
            and re.search(r"\d\s*[-+*/%]", request)
        ):
            return Plan(
                intent="direct:arithmetic",
                steps=[Step(id="compute", capability="arithmetic", instruction=request)],
            )
        if "plan" not in capabilities:
            # No planner: the request is one step, checked by the critic if the network has one.
            return self.single_step(
                request, capabilities, intent="direct", review="critique" in capabilities
            )
        return None

    def single_step(
        self, request: str, capabilities: set[str], intent: str, *, review: bool = False
    ) -> Plan:
        cap = main_capability(capabilities)
        step = Step(id="answer", capability=cap, instruction=request, review=review)
        return Plan(intent=intent, steps=[step])

    def planner_metadata(self, request: str, usable: set[str]) -> dict[str, Any]:
        """What a planner's task carries: the capabilities a step may use, the plan's schema
        for its prompt, and the stricter one its server constrains decoding to."""
        # critique is not a step of its own: a step asks for it with "review": true
        steps_may_use = usable - {"critique"}
        size = min(self.limits.max_plan_steps, STRUCTURED_PLAN_STEPS)
        return {
            "capabilities": sorted(steps_may_use),
            "schema": plan_prompt_schema(steps_may_use, max_steps=size),
            "output_schema": plan_output_schema(steps_may_use, max_steps=size),
            "request": request,
        }

    async def plan(
        self,
        request: str,
        capabilities: set[str],
        call_planner: Callable[..., Awaitable[Result]],
        record: Recorder,
    ) -> Plan:
        direct = self.classify(request, capabilities)
        if direct is not None:
            record(
                "plan",
                source="classifier",
                intent=direct.intent,
                plan=direct.model_dump(),
                reason="request needs one step",
            )
            return direct
        usable = capabilities - {"plan"}
        metadata = self.planner_metadata(request, usable)
        instruction = "Decompose the request into a plan."
        errors: list[str] = []
        plan = await self._from_planner(
            instruction, metadata, usable, call_planner, record, errors, source="planner"
        )
        if plan is not None:
            return plan
        fallback = self.single_step(request, capabilities, intent="fallback")
        record(
            "plan_fallback",
            reason=f"no valid plan after {len(errors)} attempt(s)",
            errors=errors,
            plan=fallback.model_dump(),
        )
        return fallback

    async def replan(
        self,
        request: str,
        capabilities: set[str],
        call_planner: Callable[..., Awaitable[Result]],
        record: Recorder,
        why: str,
        facts: dict[str, Any],
    ) -> Plan | None:
        """A repaired plan after steps failed (``why`` tells the planner which and what to
        keep; ``facts`` go in its task's metadata), validated and repaired like a first
        plan; None if no valid plan came."""
        usable = capabilities - {"plan"}
        metadata = {**self.planner_metadata(request, usable), **facts}
        errors: list[str] = []
        return await self._from_planner(
            why, metadata, usable, call_planner, record, errors, source="replanner"
        )

    async def _from_planner(
        self,
        instruction: str,
        metadata: dict[str, Any],
        usable: set[str],
        call_planner: Callable[..., Awaitable[Result]],
        record: Recorder,
        errors: list[str],
        *,
        source: str,
    ) -> Plan | None:
        """The planner's plan, sent back with the validation error up to ``plan_repairs``
        times; None if none is valid (``errors`` says why). A replanner's repairs still
        carry what it was asked."""
        asked = instruction
        for attempt in range(self.limits.plan_repairs + 1):
            result = await call_planner(instruction, metadata)
            if result.status != "ok":
                errors.append(f"planner failed: {result.error}")
                record("plan_invalid", attempt=attempt, error=errors[-1])
                continue
            try:
                plan = parse_plan(result.output, usable, max_steps=self.limits.max_plan_steps)
            except (PlanError, UnknownCapability) as exc:
                errors.append(str(exc))
                record(
                    "plan_invalid",
                    attempt=attempt,
                    error=str(exc),
                    reply=result.output[:2000],
                    structured=(result.data or {}).get("structured"),
                )
                metadata = {**metadata, "repair_of": result.output[:4000], "error": str(exc)}
                fix = (
                    f"Your previous plan was invalid: {exc}. Reply with a corrected JSON plan only."
                )
                instruction = fix if source == "planner" else f"{asked}\n{fix}"
                continue
            if source == "planner":  # a repaired plan's decision is its caller's, once fitted
                record(
                    "plan",
                    source=source,
                    intent=plan.intent,
                    plan=plan.model_dump(),
                    repairs=attempt,
                    structured=(result.data or {}).get("structured"),
                )
            return plan
        return None
