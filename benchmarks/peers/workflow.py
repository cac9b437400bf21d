"""The benchmark's workflow, shared by every framework: the request, the prompts, and the
deterministic model that answers them.

The workflow: a planner splits the request into two sub-questions; two researchers answer one
each, independently (they may run in parallel); a writer drafts the answer from both
findings; a critic asks for one revision; the writer revises; the critic approves the
revision (where the framework runs the review as a loop); the revision is the final answer.

Every framework uses the role texts below as its agents' prompts (system messages, CrewAI
backstories, Rede prompt templates), so the model sees the same instructions everywhere as
far as each framework allows. :func:`respond` is the model: the server calls it for every
chat completion. It answers by role, read from the prompt, never by framework, so each
framework gets the same texts back and the critic asks for exactly one revision everywhere:

- planner: two lines ``SQ1: ...`` and ``SQ2: ...`` (a JSON plan when JSON output is asked
  for, as Rede's dispatcher does);
- researcher: findings for the sub-question named by ``sub-question SQ1`` / ``SQ2``;
- writer: a draft, or a revision (starting ``Revised answer:``) once the conversation holds
  a critique (``REVISE:``);
- critic: ``REVISE: ...`` for a draft, ``APPROVED`` for a revision (a JSON critique when JSON
  output is asked for);
- speaker selection (AutoGen's ``SelectorGroupChat``): the participant the workflow needs
  next, classified as role ``other`` (not an agent hop).

This module uses the standard library only: it is imported by the server (project venv) and
by the peers (their own venv).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

Ask = Callable[[str], Awaitable[str]]
"""What every framework's ``open_workflow`` yields: ``await ask(request)`` -> final answer."""

REQUEST = (
    "Should a five-person startup use Redis Streams or Apache Kafka for its event pipeline? "
    "Give a recommendation with reasons."
)
SUB_QUESTIONS = (
    "What do Redis Streams offer a small team for an event pipeline, and what do they cost to run?",
    "What does Apache Kafka offer a small team for an event pipeline, and what does it cost "
    "to run?",
)

PLANNER = (
    "You are the planner of a small research team. Split the user's request into exactly two "
    "independent research sub-questions that together cover it."
)
PLANNER_FORMAT = "Reply with two lines: 'SQ1: <question>' and 'SQ2: <question>'."
RESEARCHER = (
    "You are a researcher in a small research team. Answer the research sub-question you are "
    "given with concrete, checkable facts, in a few sentences."
)
WRITER = (
    "You are the writer of a small research team. Using the researchers' findings, write the "
    "answer to the user's request: clear, well structured, no padding. When the critic asks "
    "for changes, revise your draft accordingly."
)
CRITIC = (
    "You are the critic of a small research team. Review the writer's latest draft against "
    "the user's request."
)
CRITIC_FORMAT = (
    "If it needs changes, reply 'REVISE: <what to change>'. If it is ready, reply 'APPROVED'."
)


def research_instruction(index: int, question: str | None = None) -> str:
    """What researcher ``index`` (1 or 2) is asked: its sub-question by label (and text)."""
    label = f"Research sub-question SQ{index}"
    return f"{label}: {question}" if question else f"{label} of the plan."


def parse_sub_questions(plan_text: str) -> list[str]:
    """The sub-questions of a planner's reply (``SQ1: ...`` lines), in order."""
    return [m.group(2).strip() for m in re.finditer(r"^\s*SQ(\d):\s*(.+)$", plan_text, re.M)]


# --------------------------------------------------------------------------- the model

REVISE_MARK = "REVISE:"
REVISED_MARK = "Revised answer:"
APPROVED = "APPROVED"
FINDINGS = (
    "Redis Streams: an append-only log inside Redis with consumer groups (XADD, XREADGROUP, "
    "XACK) and pending-entry recovery (XAUTOCLAIM). One small Redis node handles tens of "
    "thousands of events per second; retention is bounded by memory unless trimmed. Most "
    "teams already run Redis, so the added operational cost is close to zero.",
    "Apache Kafka: a replicated, partitioned log with long retention on disk, consumer "
    "groups, exactly-once transactions and a large connector ecosystem. A production "
    "cluster needs three brokers (KRaft mode) and monitoring; managed offerings start at a "
    "few hundred dollars a month. It pays off at high volume or when replay over weeks "
    "matters.",
)
DRAFT = (
    "Recommendation: start with Redis Streams.\n\n"
    "1. Fit: consumer groups, acknowledgements and recovery of stuck messages cover an event "
    "pipeline for a five-person team.\n"
    "2. Cost: it reuses the Redis the team already runs; Kafka needs a three-broker cluster "
    "or a managed service.\n"
    "3. When to move: long replay windows, many independent consumers or very high volume "
    "favour Kafka."
)
CRITIQUE = "REVISE: add a concrete monthly cost comparison and the trigger for migrating."
REVISION = (
    f"{REVISED_MARK} start with Redis Streams.\n\n"
    "1. Fit: consumer groups, acknowledgements and recovery of stuck messages cover an event "
    "pipeline for a five-person team.\n"
    "2. Cost: about $0 extra on an existing Redis node, against roughly $300-600 a month for "
    "a small managed Kafka cluster or three self-run brokers plus monitoring.\n"
    "3. Migrate when: retention beyond what memory holds, replay over weeks, or sustained "
    "volume above ~50k events/s; the consumer-group model carries over to Kafka."
)

ROLE = re.compile(r"You are (?:the |a )?(planner|researcher|writer|critic)\b", re.I)
SELECTOR = re.compile(r"select the next role from (\[[^\]]*\])")
"""AutoGen's ``SelectorGroupChat`` asks the model which participant speaks next."""
SPEAKER = re.compile(r"^(\w+): ", re.M)
BRANCH = re.compile(r"sub-question SQ([12])\b")
ROLES = ("planner", "researcher", "writer", "critic")


def message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def classify(request: dict[str, Any]) -> tuple[str, int | None]:
    """``(role, branch)`` of a chat completion request: the role named by its first message
    (``"other"`` when none, such as a framework's own selector call), and for a researcher
    which sub-question (1 or 2) it works on."""
    shown = messages(request)
    if not shown:
        return "other", None
    first = message_text(shown[0].get("content"))
    if SELECTOR.search(first):
        return "selector", None
    match = ROLE.search(first)
    if match is None:
        return "other", None
    role = match.group(1).lower()
    branch = None
    if role == "researcher":
        # the researcher's own instruction: its system message or its latest user message
        own = [first, *(message_text(m.get("content")) for m in shown[-1:])]
        for text in own:
            found = BRANCH.search(text)
            if found:
                branch = int(found.group(1))
                break
    return role, branch


def _conversation(request: dict[str, Any]) -> str:
    """Everything but system messages: what the agent was shown of the team's work."""
    return "\n".join(
        message_text(m.get("content"))
        for m in request.get("messages") or []
        if isinstance(m, dict) and m.get("role") != "system"
    )


def _wants_json(request: dict[str, Any]) -> bool:
    fmt = request.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")


def next_speaker(prompt: str) -> str:
    """A speaker-selection call (AutoGen's ``SelectorGroupChat``): the participant the
    workflow needs next, read from the transcript in the prompt."""
    match = SELECTOR.search(prompt)
    candidates = re.findall(r"'(\w+)'", match.group(1)) if match else []
    transcript = prompt[match.end() :] if match else prompt
    wanted = ["planner", "researcher_1", "researcher_2", "writer", "critic"]
    spoken = [name for name in SPEAKER.findall(transcript) if name in wanted]
    pending = [name for name in wanted if name not in spoken]
    if pending:
        choice = pending[0]
    else:  # the review loop: the writer answers the critic, the critic the writer
        choice = "critic" if spoken[-1] == "writer" else "writer"
    return choice if not candidates or choice in candidates else candidates[0]


def rede_plan() -> str:
    """The planner's reply when asked for a JSON plan (Rede's dispatcher)."""
    steps = [
        {"id": f"research-{i}", "capability": "research", "instruction": research_instruction(i, q)}
        for i, q in enumerate(SUB_QUESTIONS, 1)
    ]
    steps.append(
        {
            "id": "write",
            "capability": "write",
            "instruction": "Write the answer to the user's request from the findings.",
            "depends_on": ["research-1", "research-2"],
            "review": True,
        }
    )
    return json.dumps({"intent": "compose", "steps": steps})


def answer(role: str, branch: int | None, request: dict[str, Any]) -> str:
    """The text a role answers with (before any framework's reply format)."""
    shown = _conversation(request)
    if role == "planner":
        return "\n".join(f"SQ{i}: {q}" for i, q in enumerate(SUB_QUESTIONS, 1))
    if role == "researcher":
        index = branch or 1
        return f"Findings for SQ{index}: {FINDINGS[index - 1]}"
    if role == "writer":
        return REVISION if REVISE_MARK in shown else DRAFT
    if role == "critic":
        return APPROVED if REVISED_MARK in shown else CRITIQUE
    if role == "selector":
        return next_speaker("\n".join(message_text(m.get("content")) for m in messages(request)))
    return "OK"


def messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request.get("messages") or [] if isinstance(m, dict)]


def respond(request: dict[str, Any]) -> str:
    """The deterministic model: the server's responder for every framework."""
    role, branch = classify(request)
    text = answer(role, branch, request)
    if _wants_json(request):
        if role == "planner":
            return rede_plan()
        if role == "critic":
            accepted = text == APPROVED
            return json.dumps(
                {
                    "score": 0.9 if accepted else 0.4,
                    "accepted": accepted,
                    "issues": [] if accepted else [CRITIQUE],
                    "advice": "" if accepted else CRITIQUE.removeprefix(REVISE_MARK).strip(),
                    "confidence": 0.8,
                }
            )
    return text
