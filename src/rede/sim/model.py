"""The grounded simulated model: a :class:`~rede.models.sim.SimModel` that answers a
workload's parts from its answer key, with the quality, speed and price of its profile.

Only a task id travels with a run (``metadata["sim_task"]``); the answer key stays in this
process, so the bytes on the bus are those of a real run, not of the simulation's scaffolding.

How a call is answered (everything is drawn from the call's deterministic random stream):

- ``plan``: the task's ideal plan, with probability ``quality(plan)``. Otherwise one slip a
  small planner makes: two parts merged into one step, a part routed to the wrong capability,
  a dependency dropped, or (first attempt only) an invalid plan that the Dispatcher repairs.
  Capabilities the network lacks are replaced by one it has.
- any other capability (``critique`` excepted, which scores the draft's quality mark): the
  step *covers* the parts whose question is in its instruction, or every part when none is
  (a step that writes the whole answer). For each covered part the model either carries the
  value it finds in its context (``- id: value`` lines from earlier steps), keeping it with
  probability ``0.85 + 0.15 * quality(step capability)``, or works it out itself: correct with
  probability ``quality(part capability)``, times ``RECOVERY`` when a part it depends on came
  out wrong. A revision after a critique takes each value from the sources again (fixing what
  was lost in carrying) and keeps the previous draft's where the sources have none.
  Errors and confidence are calibrated as :class:`~rede.models.sim.SimModel`'s are: a part's
  latent difficulty is shared by every model, so models miss the same parts, wrong values
  coincide at the measured rate, and confidence detects errors no better than agreement does.
"""

from __future__ import annotations

import json
import random
from typing import Any

from rede.config import META_CAPABILITIES
from rede.models._base import ModelRequest
from rede.models.sim import SimModel, SimProfile
from rede.sim.workload import Part, SimTask, normalise, parse_answers

TASK_KEY = "sim_task"
"""Run metadata naming the workload task a run answers."""
RECOVERY = 0.2
"""Chance factor for a right result derived from a wrong input."""
PREVIOUS_DRAFT = "Previous draft:\n"
"""How the orchestrator hands a draft back for revision (see ``Orchestrator._review``)."""
_FALLBACK = ("research", "answer", "write", "researcher", "writer")


class AnswerKey:
    """The workload's tasks by id, shared by every grounded model of one system."""

    def __init__(self, tasks: list[SimTask]) -> None:
        self.tasks = {t.id: t for t in tasks}

    def find(self, metadata: dict[str, Any]) -> SimTask | None:
        key = metadata.get(TASK_KEY)
        return self.tasks.get(key) if isinstance(key, str) else None


class GroundedSimModel(SimModel):
    def __init__(
        self,
        name: str,
        profile: SimProfile,
        key: AnswerKey,
        *,
        seed: int = 0,
        time_scale: float = 1.0,
    ) -> None:
        super().__init__(name, profile, seed=seed, time_scale=time_scale)
        self.key = key

    @classmethod
    def grounded(
        cls,
        profile: str,
        key: AnswerKey,
        *,
        seed: int = 0,
        time_scale: float = 1.0,
        overrides: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> GroundedSimModel:
        base = SimModel.from_profile(profile, overrides=overrides, name=name)
        return cls(base.name, base.profile, key, seed=seed, time_scale=time_scale)

    def write(
        self, request: ModelRequest, rng: random.Random, capability: str, quality: float
    ) -> str:
        task = self.key.find(request.metadata)
        if task is None or capability == "critique":
            return super().write(request, rng, capability, quality)
        if capability == "plan":
            return self._grounded_plan(request, rng, quality, task)
        return self._grounded_answer(request, rng, capability, task)

    # ------------------------------------------------------------------ plans

    def _grounded_plan(
        self, request: ModelRequest, rng: random.Random, quality: float, task: SimTask
    ) -> str:
        caps = set(request.metadata.get("capabilities", [])) - {"plan"}
        usable = sorted(caps - META_CAPABILITIES)
        fallback = next((c for c in _FALLBACK if c in caps), usable[0] if usable else "answer")
        steps = [s.model_dump(exclude_defaults=True) for s in task.ideal_plan.steps]
        for s in steps:
            s.setdefault("depends_on", [])
            if s["capability"] not in caps:
                s["capability"] = fallback
        if rng.random() >= quality:
            repairing = bool(request.metadata.get("repair_of"))
            self._slip(rng, steps, usable, allow_invalid=not repairing)
        return json.dumps({"intent": "compose", "steps": steps})

    @staticmethod
    def _slip(
        rng: random.Random, steps: list[dict[str, Any]], usable: list[str], allow_invalid: bool
    ) -> None:
        """One mistake of a small planner, among those that apply to this plan."""
        deps = {s["id"]: set(s["depends_on"]) for s in steps}

        def reaches(a: str, b: str) -> bool:  # does a depend on b, directly or not?
            return b in deps[a] or any(reaches(d, b) for d in deps[a] if d in deps)

        indep = [
            (a, b)
            for i, a in enumerate(steps)
            for b in steps[i + 1 :]
            if not reaches(a["id"], b["id"]) and not reaches(b["id"], a["id"])
        ]
        options = [
            name
            for name, applies in (
                ("merge", bool(indep)),
                ("misroute", len(usable) > 1),
                ("drop_edge", any(deps.values())),
                ("invalid", allow_invalid and len(steps) > 1),
            )
            if applies
        ]
        if not options:
            return
        slip = rng.choice(options)
        if slip == "merge":  # b's work is folded into a; whoever needed b now needs a
            a, b = rng.choice(indep)
            a["instruction"] = f"{a['instruction']} {b['instruction']}"
            a["depends_on"] = sorted(set(a["depends_on"]) | set(b["depends_on"]))
            steps.remove(b)
            for s in steps:
                if b["id"] in s["depends_on"]:
                    s["depends_on"] = sorted((set(s["depends_on"]) - {b["id"]}) | {a["id"]})
        elif slip == "misroute":
            s = rng.choice(steps)
            s["capability"] = rng.choice([c for c in usable if c != s["capability"]])
        elif slip == "drop_edge":
            s = rng.choice([s for s in steps if s["depends_on"]])
            dropped = rng.choice(s["depends_on"])
            s["depends_on"] = [d for d in s["depends_on"] if d != dropped]
        elif rng.random() < 0.5 or not reaches(steps[-1]["id"], steps[0]["id"]):
            steps[0]["capability"] = steps[0]["capability"][:-1] + "z"  # a misspelt capability
        else:
            steps[0]["depends_on"] = [*steps[0]["depends_on"], steps[-1]["id"]]  # a cycle

    # ------------------------------------------------------------------ answers

    def _grounded_answer(
        self, request: ModelRequest, rng: random.Random, capability: str, task: SimTask
    ) -> str:
        instruction = normalise(str(request.metadata.get("instruction", "")))
        covered = [p for p in task.parts if normalise(p.question) in instruction]
        covered = covered or list(task.parts)
        ids = {p.id for p in task.parts}
        prompt = request.prompt_text
        draft_at = prompt.find(PREVIOUS_DRAFT)
        keep = 0.85 + 0.15 * self.profile.quality_for(capability)
        if draft_at >= 0:  # a revision: sources win over the previous draft, which fills gaps
            sources = parse_answers(prompt[:draft_at], ids)
            carried = {**parse_answers(prompt[draft_at:], ids), **sources}
            keep = 1.0 if sources else keep
        else:
            carried = parse_answers(prompt, ids)
        values: dict[str, str] = {}

        def resolve(part: Part) -> str:
            if part.id in values:
                return values[part.id]
            if part.id in carried and rng.random() < keep:
                values[part.id] = carried[part.id]
                return values[part.id]
            inputs_ok = all(resolve(task.part(d)) == task.part(d).truth for d in part.depends_on)
            q = self.profile.quality_for(part.capability) * (1.0 if inputs_ok else RECOVERY)
            key = f"{task.id}|{part.id}|{part.question}|{part.truth}"
            right = self.is_right(key, q, rng)
            values[part.id] = part.truth if right else self.wrong_answer(key, part.wrong, rng)
            return values[part.id]

        lines = []
        confidence = 1.0
        right = 0
        for part in covered:
            value = resolve(part)
            ok = value == part.truth
            right += ok
            confidence = min(confidence, self._confidence(rng, ok, part.capability))
            lines.append(f"- {part.id}: {value}")
        return (
            f"{self._tag()} Worked through {len(covered)} part(s) for {capability}.\n"
            + "\n".join(lines)
            + f"\n[sim quality {right / len(covered):.2f}]\nCONFIDENCE: {confidence:.2f}"
        )

    def _confidence(self, rng: random.Random, correct: bool, capability: str) -> float:
        return self.stated_confidence(rng, correct, self.profile.quality_for(capability))
