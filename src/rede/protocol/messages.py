"""The Rede protocol, version ``rede/1``: one envelope, a payload chosen by ``kind``.

Everything that travels on a bus is an :class:`Envelope`. Its ``payload`` is one of the
payload models below, told apart by their ``kind`` field (a pydantic discriminated union).
``ENVELOPE_ADAPTER`` is the single way envelopes are turned into bytes and back; the
:class:`~rede.codec.Codec` wraps it with a size limit and optional signing.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

PROTOCOL_VERSION = "rede/1"


def new_id(prefix: str = "") -> str:
    """A short random id, optionally prefixed (``run-3f2a...``)."""
    return f"{prefix}{os.urandom(8).hex()}"  # as random as uuid4's first 64 bits, 4x cheaper


_INSTANCE = re.compile(r"-[0-9a-f]{16}")


def owns(name: str, sender: str) -> bool:
    """Whether ``sender`` is ``name`` itself or one of its instances, ``new_id(f"{name}-")``
    (``researcher-3f2a...``, but not ``researcher-fast-3f2a...``)."""
    if sender == name:
        return True
    return sender.startswith(name) and bool(_INSTANCE.fullmatch(sender[len(name) :]))


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


# --------------------------------------------------------------------------- shared parts


class Usage(_Model):
    """What one model call (or a sum of them) consumed."""

    model: str = ""
    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    cost_usd: float = Field(0.0, ge=0)
    latency_s: float = Field(0.0, ge=0)
    calls: int = Field(0, ge=0)
    estimated: bool = False
    """True when token counts were estimated because the server reported none."""
    source: Literal["real", "simulated", "scripted", "replay", "tool", "mixed", "none"] = "none"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        models = {m for m in (self.model, other.model) if m}
        sources = {s for s in (self.source, other.source) if s != "none"}
        return Usage(
            model=models.pop() if len(models) == 1 else ("mixed" if models else ""),
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
            latency_s=self.latency_s + other.latency_s,
            calls=self.calls + other.calls,
            estimated=self.estimated or other.estimated,
            source=sources.pop() if len(sources) == 1 else ("mixed" if sources else "none"),
        )


class ContextItem(_Model):
    """A piece of context handed to a step: usually the result of a dependency."""

    step_id: str | None = None
    capability: str | None = None
    content: str
    data: dict[str, Any] | None = None


class Budget(_Model):
    """What one task may spend, set by the orchestrator from what its caps have left.

    An agent keeps within it: ``max_tokens`` counts prompt and completion together (the
    agent caps the completion at what its prompt leaves), ``max_cost_usd`` is priced at the
    agent's own prices. None: no bound."""

    max_tokens: int | None = Field(None, gt=0)
    max_cost_usd: float | None = Field(None, ge=0)


class AgentCard(_Model):
    """What the Registry knows of one running agent instance."""

    id: str
    name: str
    capabilities: list[str]
    model: str = ""
    kind: Literal["llm", "tool"] = "llm"
    price_in_per_1k: float = Field(0.0, ge=0)
    price_out_per_1k: float = Field(0.0, ge=0)
    context_window: int = Field(8192, gt=0)
    quality: float = Field(0.5, ge=0, le=1)
    """Declared prior for the agent's quality; routing blends it with observed outcomes."""
    tier: int = 0
    """Escalation tier for cascades: 0 is the cheapest."""
    latency_s: float = Field(0.0, ge=0)
    success_rate: float = Field(1.0, ge=0, le=1)
    load: int = Field(0, ge=0)
    concurrency: int = Field(1, ge=1)
    """Tasks it works on at once; more wait on the bus for a slot (``load`` counts both)."""
    last_heartbeat: datetime = Field(default_factory=utcnow)
    simulated: bool = False


# --------------------------------------------------------------------------- payloads


class Task(_Model):
    kind: Literal["task"] = "task"
    capability: str
    instruction: str
    request: str = ""
    """The user's original request, so a specialist sees the whole job."""
    context: list[ContextItem] = Field(default_factory=list)
    budget: Budget = Field(default_factory=Budget)
    required_confidence: float = Field(0.0, ge=0, le=1)
    acceptance: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = None
    """The same for a task sent again after its orchestrator was replaced (a resumed run):
    an agent that already answered it, or is answering it, replies with that answer instead
    of calling its model again."""
    timeout_s: float | None = Field(None, gt=0)
    """How long the agent may work on it, counted from when it starts (the step timeout):
    a task waiting for the agent's slot is not timed by it; ``deadline`` bounds both."""


class Result(_Model):
    kind: Literal["result"] = "result"
    status: Literal["ok", "failed"] = "ok"
    output: str = ""
    data: dict[str, Any] | None = None
    confidence: float = Field(0.0, ge=0, le=1)
    usage: Usage = Field(default_factory=Usage)
    error: str | None = None


class InputRequest(_Model):
    kind: Literal["input_request"] = "input_request"
    capability: str
    question: str


class InputReply(_Model):
    kind: Literal["input_reply"] = "input_reply"
    answer: str
    confidence: float = Field(0.0, ge=0, le=1)
    usage: Usage = Field(default_factory=Usage)
    error: str | None = None


class Critique(_Model):
    kind: Literal["critique"] = "critique"
    score: float = Field(ge=0, le=1)
    accepted: bool
    issues: list[str] = Field(default_factory=list)
    advice: str = ""
    confidence: float = Field(0.0, ge=0, le=1)
    usage: Usage = Field(default_factory=Usage)
    data: dict[str, Any] | None = None
    """About the call, as on a result: ``structured`` (how the critique's schema was sent to
    the model server, if it was)."""


class Heartbeat(_Model):
    kind: Literal["heartbeat"] = "heartbeat"
    card: AgentCard
    stopping: bool = False
    """Sent once when an agent shuts down cleanly, so the registry drops it at once."""


class Event(_Model):
    kind: Literal["event"] = "event"
    name: str
    data: dict[str, Any] = Field(default_factory=dict)


class ErrorPayload(_Model):
    kind: Literal["error"] = "error"
    code: str
    message: str
    raw: str | None = None
    """For dead letters: the start of the offending bytes, decoded leniently."""


class BidRequest(_Model):
    """A call for bids on one step (``routing.strategy: auction``), fanned out to every agent
    serving the capability; bids go to the envelope's ``reply_to`` before its ``deadline``."""

    kind: Literal["bid_request"] = "bid_request"
    capability: str
    instruction: str = ""
    required_confidence: float = Field(0.0, ge=0, le=1)
    prompt_tokens: int = Field(0, ge=0)
    """The orchestrator's estimate of the task's size, so bidders price the same work."""
    completion_tokens: int = Field(0, ge=0)
    task_timeout_s: float | None = Field(None, gt=0)
    """The winner must finish within this many seconds of the award."""


class Bid(_Model):
    """One agent's offer for a step: what it would cost, how sure it is, how busy it is."""

    kind: Literal["bid"] = "bid"
    agent: str
    """The bidder's agent name (replicas share it); must match a live card of the sender."""
    price_usd: float = Field(ge=0)
    confidence: float = Field(ge=0, le=1)
    queue: int = Field(0, ge=0)
    """Tasks the bidding replica has in hand now."""
    concurrency: int = Field(1, ge=1)
    eta_s: float | None = Field(None, ge=0)
    """When the bidder expects to finish, if it knows (the deadline it can meet)."""


Payload = Annotated[
    Task
    | Result
    | InputRequest
    | InputReply
    | Critique
    | Heartbeat
    | Event
    | ErrorPayload
    | BidRequest
    | Bid,
    Field(discriminator="kind"),
]

Kind = Literal[
    "task",
    "result",
    "input_request",
    "input_reply",
    "critique",
    "heartbeat",
    "event",
    "error",
    "bid_request",
    "bid",
]


class Envelope(_Model):
    """Every message on the bus. Frozen: one envelope object may be held by its sender, the
    ledger and (on the in-process bus) every receiver, so none may change it for the others;
    ``model_copy(update=...)`` makes a changed one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal["rede/1"] = PROTOCOL_VERSION
    id: str = Field(default_factory=new_id)
    run_id: str = ""
    step_id: str | None = None
    parent_id: str | None = None
    sender: str
    reply_to: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    deadline: datetime | None = None
    attempt: int = Field(0, ge=0)
    payload: Payload
    kid: str | None = None
    """The signer's key id on a bus with per-agent keys (:mod:`rede.protocol.identity`)."""
    sig: str | None = None

    @property
    def kind(self) -> str:
        return self.payload.kind

    def reply(self, payload: Any, *, sender: str, **fields: Any) -> Envelope:
        """An envelope answering this one: same run, step and attempt; parent is this id."""
        return Envelope(
            run_id=self.run_id,
            step_id=self.step_id,
            parent_id=self.id,
            sender=sender,
            attempt=self.attempt,
            payload=payload,
            **fields,
        )


ENVELOPE_ADAPTER: TypeAdapter[Envelope] = TypeAdapter(Envelope)


def protocol_schema() -> dict[str, Any]:
    """The JSON Schema of the ``rede/1`` envelope (what ``rede schema`` prints)."""
    schema = Envelope.model_json_schema()
    schema["$id"] = "https://rede.dev/schema/rede-1.json"
    schema["title"] = "Rede envelope (rede/1)"
    return schema


__all__ = [
    "ENVELOPE_ADAPTER",
    "PROTOCOL_VERSION",
    "AgentCard",
    "Bid",
    "BidRequest",
    "Budget",
    "ContextItem",
    "Critique",
    "Envelope",
    "ErrorPayload",
    "Event",
    "Heartbeat",
    "InputReply",
    "InputRequest",
    "Kind",
    "Payload",
    "Result",
    "Task",
    "Usage",
    "new_id",
    "protocol_schema",
    "utcnow",
]
