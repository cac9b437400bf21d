"""Fine-tuning data from the ledger: each accepted step as a chat example.

For every step a model answered and the run accepted, one example in the OpenAI chat
fine-tuning format (``{"messages": [user prompt, assistant answer]}``, one JSON object a line):
the prompt is the one the agent's template renders for the step's task (the bundled
templates, or the network's own with ``prompts``), the answer the accepted output, with its
``CONFIDENCE:`` line where the template asks for one.

An escalated step (cascade) is an example *for the agent it was escalated from*: the small
agent's prompt, with the larger agent's accepted answer as the target. A step decided by
cross-agent agreement is an example for each agent that voted, with the answer the vote
settled on (escalated for those that voted otherwise); examples with the same prompt and
answer are written once. So escalations today become a small model's training data tomorrow.

What is kept and why not is counted (:class:`Export`). Filters: capabilities, agents (the
examples for one specialist), the votes agreeing (``min_agree``, steps decided by
cross-agent agreement only), the critic's score of the accepted round (``min_score``,
reviewed steps only), and the run's date. Results of tools, MCP servers and remote agents are
no model's answer and are never kept; simulated, scripted or replayed ones only with
``include_simulated`` (for trying the loop on the demo network).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rede.agents.specialists import LLMSpecialist
from rede.errors import ConfigError
from rede.models.scripted import ScriptedModel
from rede.orchestration.ledger import Entry, Ledger
from rede.protocol.messages import Envelope, Result, Task

NOT_REAL = frozenset({"simulated", "scripted", "replay"})
NOT_MODELS = frozenset({"tool", "none"})


@dataclass
class Filters:
    capabilities: set[str] = field(default_factory=set)
    agents: set[str] = field(default_factory=set)
    min_agree: int | None = None
    min_score: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    include_simulated: bool = False
    prompts: dict[str, dict[str, str]] = field(default_factory=dict)
    """By agent name: its own prompt templates by capability (the network's YAML)."""


@dataclass
class Example:
    capability: str
    agent: str
    """The agent the example trains: the one escalated from, for escalated steps."""
    messages: list[dict[str, str]]
    escalated: bool = False
    source: str = "real"
    """Where the answer came from: ``real``, or ``simulated``/``scripted``/``replay``."""


@dataclass
class Export:
    examples: list[Example] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    runs: int = 0

    @property
    def kept(self) -> Counter[str]:
        return Counter(e.capability for e in self.examples)

    def write(self, path: str | Path) -> None:
        lines = (json.dumps({"messages": e.messages}, ensure_ascii=False) for e in self.examples)
        Path(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


@dataclass
class _Attempt:
    task: Task
    result: Result
    agent: str
    step: str


def _agent_of(sender: str | None) -> str:
    """An agent's name from its instance id (``name-<hex>``)."""
    name, _, suffix = (sender or "").rpartition("-")
    return name if name and suffix.isalnum() else sender or ""


def _attempts(entries: list[Entry]) -> dict[tuple[str, str], list[_Attempt]]:
    """Every ok result of a run, by (step, capability), in order."""
    tasks: dict[str, Envelope] = {}
    out: dict[tuple[str, str], list[_Attempt]] = {}
    for e in entries:
        if e.kind != "envelope" or e.name not in ("sent:task", "received:result"):
            continue
        env = Envelope.model_validate(e.data)
        if isinstance(env.payload, Task):
            tasks[env.id] = env
            continue
        sent = tasks.get(env.parent_id or "")
        if sent is None or not isinstance(env.payload, Result) or env.payload.status != "ok":
            continue
        task = sent.payload
        assert isinstance(task, Task)
        key = (sent.step_id or "", task.capability)
        out.setdefault(key, []).append(_Attempt(task, env.payload, _agent_of(env.sender), key[0]))
    return out


def _decisions(entries: list[Entry], name: str, step: str) -> list[dict[str, Any]]:
    return [
        e.data
        for e in entries
        if e.kind == "decision" and e.name == name and e.data.get("step") == step
    ]


def export_sft(ledger: Ledger, filters: Filters | None = None) -> Export:
    """The examples of every run in ``ledger`` that pass ``filters``, and what was dropped."""
    f = filters or Filters()
    out = Export()
    seen: set[str] = set()
    for run_id in ledger.runs():
        entries = ledger.entries(run_id)
        if not entries:
            continue
        out.runs += 1
        started = datetime.fromtimestamp(entries[0].at).astimezone()
        if (f.since and started < f.since) or (f.until and started > f.until):
            out.dropped["outside the dates"] += 1
            continue
        if any(e.kind == "decision" and e.name == "run_failed" for e in entries):
            out.dropped["run failed"] += 1
            continue
        for (step, cap), tries in _attempts(entries).items():
            if cap == "critique":
                continue
            why, examples = _judge(entries, step, cap, tries, f)
            if not examples:
                out.dropped[why] += 1
            for example in examples:
                key = json.dumps(example.messages)
                if key not in seen:  # agents sharing a template and answer: one example
                    seen.add(key)
                    out.examples.append(example)
    return out


def _judge(
    entries: list[Entry], step: str, cap: str, tries: list[_Attempt], f: Filters
) -> tuple[str, list[Example]]:
    """Why a step gives no example, or its examples: one for the agent that answered, or
    for each agent that voted on it (cross-agent agreement), or for the agent it was
    escalated from, each with the accepted answer as the target."""
    if f.capabilities and cap not in f.capabilities:
        return "another capability", []
    accepted, trainees = _accepted(entries, step, tries)
    source = accepted.result.usage.source
    if source in NOT_MODELS:
        return "a tool's result, not a model's", []
    if source in NOT_REAL and not f.include_simulated:
        return f"{source} (see --include-simulated)", []
    if f.agents:
        trainees = {a: esc for a, esc in trainees.items() if a in f.agents}
        if not trainees:
            return "another agent", []
    why = _fails_quality(entries, step, f)
    if why:
        return why, []
    examples = []
    for agent, escalated in trainees.items():
        asked = next(t for t in tries if t.agent == agent)
        messages = _messages(asked.task, accepted.result, f.prompts.get(agent, {}))
        examples.append(Example(cap, agent, messages, escalated, source))
    return "", examples


def _accepted(
    entries: list[Entry], step: str, tries: list[_Attempt]
) -> tuple[_Attempt, dict[str, bool]]:
    """The accepted attempt of a step, and the agents to train on it (-> escalated?)."""
    agreement = [d for d in _decisions(entries, "agreement", step) if "answer" in d]
    votes = {d["agent"]: d.get("answer") for d in _decisions(entries, "vote", step)}
    if agreement and votes:
        final = agreement[-1]["answer"]
        agreeing = [t for t in tries if votes.get(t.agent) == final]
        if agreeing:
            asked = {t.agent for t in tries}
            return agreeing[-1], {a: v != final for a, v in votes.items() if a in asked}
    escalations = _decisions(entries, "escalate", step)
    if escalations and any(t.agent == escalations[0]["from_agent"] for t in tries):
        return tries[-1], {escalations[0]["from_agent"]: True}
    return tries[-1], {tries[-1].agent: False}


def _fails_quality(entries: list[Entry], step: str, f: Filters) -> str:
    """Why a step misses ``min_agree`` or ``min_score``; empty when it passes."""
    if f.min_agree is not None:
        agreement = [d for d in _decisions(entries, "agreement", step) if "agree" in d]
        if not agreement:
            return "no agreement recorded"
        if agreement[-1]["agree"] < f.min_agree:
            return f"fewer than {f.min_agree} agreed"
    if f.min_score is not None:
        scores = [d["score"] for d in _decisions(entries, "accepted", step)]
        if not scores:
            return "no critic's acceptance"
        if scores[-1] < f.min_score:
            return f"critic score under {f.min_score:g}"
    return ""


def _messages(task: Task, result: Result, prompts: dict[str, str]) -> list[dict[str, str]]:
    renderer = LLMSpecialist(ScriptedModel(lambda r: ""), prompts)  # renders, never calls
    request = renderer._request(task)
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    answer = result.output
    if "CONFIDENCE:" in renderer.prompt(task.capability).template:
        answer = f"{answer}\nCONFIDENCE: {result.confidence:.2f}"
    return [*messages, {"role": "assistant", "content": answer}]


def parse_date(text: str, what: str) -> datetime:
    try:
        return datetime.fromisoformat(text).astimezone()
    except ValueError:
        raise ConfigError(f"{what} {text!r} is not a date (use 2026-12-01 or ISO 8601)") from None


def summary(export: Export) -> Iterator[str]:
    """Lines a person reads: what was kept, by capability, and what was dropped, by reason."""
    escalated = sum(e.escalated for e in export.examples)
    yield (
        f"{len(export.examples)} example(s) from {export.runs} run(s)"
        + (f" ({escalated} from escalated steps)" if escalated else "")
    )
    for cap, n in sorted(export.kept.items()):
        yield f"  kept {n} {cap}"
    unreal = Counter(e.source for e in export.examples if e.source in NOT_REAL)
    for source, n in sorted(unreal.items()):
        yield f"  of these, {n} {source}: not a real model's answer"
    for why, n in export.dropped.most_common():
        yield f"  dropped {n}: {why}"


__all__ = ["Example", "Export", "Filters", "export_sft", "parse_date", "summary"]
