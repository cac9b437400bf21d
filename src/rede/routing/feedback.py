"""What happened to a run, read back for routing: the confidence a reply reports, and which
agents' outputs a run's answer came from (for verification feedback)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rede.errors import ConfigError
from rede.protocol.messages import Critique, Result


def reported_confidence(payload: Result | Critique) -> float | None:
    """The confidence a reply states, for the quality estimate; None when it states none
    (``confidence_method: none``: the 0.5 placeholder carries no information)."""
    if isinstance(payload, Result) and (payload.data or {}).get("confidence_method") == "none":
        return None
    return payload.confidence


def answering_agents(
    decisions: Iterable[Mapping[str, Any]],
    *,
    step: str | None = None,
    plan: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """From a run's decisions, the agent whose output each step kept: ``[{step, agent,
    capability}]``. A step's own capability is that of its first ``route`` (critiques come
    later); the agent is the cascade's ``answered`` one, else the last routed for that
    capability (after retries and refinements).

    Which steps: ``step`` if given; else the steps the answer came from: ``synthesis`` when
    the run had one, else the sinks of the plan (``plan``, or the last ``plan`` decision),
    else every step but planning and the questions agents asked each other."""
    own: dict[str, str] = {}
    routed: dict[str, str] = {}
    answered: dict[str, str] = {}
    asked: set[str] = set()
    recorded: Mapping[str, Any] | None = None
    for d in decisions:
        name, sid = d.get("name"), d.get("step")
        if name == "plan" and isinstance(d.get("plan"), Mapping):
            recorded = d["plan"]
        elif name == "route" and sid:
            cap = own.setdefault(sid, d["capability"])
            if d["capability"] == cap:
                routed[sid] = d["agent"]
        elif name == "answered" and sid:
            answered[sid] = d["agent"]
        elif name == "input_request" and sid:
            asked.add(sid)
    plan = plan if plan is not None else recorded
    if step is not None:
        if step not in routed:
            known = ", ".join(s for s in routed if own[s] != "plan") or "none"
            raise ConfigError(f"no step {step!r} was routed in this run; steps: {known}")
        wanted = [step]
    elif "synthesis" in routed:
        wanted = ["synthesis"]
    elif plan is not None and plan.get("steps"):
        deps = {d for s in plan["steps"] for d in s.get("depends_on", [])}
        wanted = [s["id"] for s in plan["steps"] if s["id"] not in deps and s["id"] in routed]
    else:
        wanted = [s for s in routed if own[s] != "plan" and not _is_question(s, asked)]
    return [{"step": s, "agent": answered.get(s, routed[s]), "capability": own[s]} for s in wanted]


def _is_question(step_id: str, asking: set[str]) -> bool:
    """Sub-steps for ``input_request`` are named ``<step>.ask<n>``."""
    head, sep, tail = step_id.rpartition(".ask")
    return bool(sep) and tail.isdigit() and head in asking


__all__ = ["answering_agents", "reported_confidence"]
