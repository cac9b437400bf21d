"""One interface for every model backend: messages in, text and usage out."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rede.protocol.messages import Usage

Source = Literal["real", "simulated", "scripted", "replay"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class ToolSpec(BaseModel):
    """A function the model may call: its name, what it does, and a JSON Schema of its
    arguments."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


class ToolCall(BaseModel):
    """A call the model asked for: the tool's name and its arguments as the model wrote them
    (a JSON text, not yet validated)."""

    model_config = ConfigDict(extra="forbid")
    id: str = ""
    name: str
    arguments: str = ""


class ModelRequest(BaseModel):
    """One chat completion request, independent of any backend."""

    model_config = ConfigDict(extra="forbid")
    messages: list[ChatMessage]
    json_schema: dict[str, Any] | None = None
    """Ask for JSON output matching this schema: servers that can constrain decoding to a
    schema are asked to (the ``openai`` backend's ``structured`` dialects)."""
    max_tokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0)
    stop: list[str] | None = None
    logprobs: bool = False
    tools: list[ToolSpec] = Field(default_factory=list)
    tool_choice: str | None = None
    """``auto``, ``none``, ``required``, or the name of one of ``tools`` to force that call."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Not sent to servers. Describes the call (capability, step id) for simulated and
    scripted backends and for accounting."""

    @classmethod
    def of(cls, prompt: str, system: str | None = None, **kw: Any) -> ModelRequest:
        msgs = [ChatMessage(role="system", content=system)] if system else []
        msgs.append(ChatMessage(role="user", content=prompt))
        return cls(messages=msgs, **kw)

    @property
    def prompt_text(self) -> str:
        return "\n\n".join(m.content for m in self.messages)


class ModelResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    usage: Usage
    logprobs: list[float] | None = None
    """Per-token log-probabilities of the completion, where the server returns them."""
    finish_reason: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    structured: str | None = None
    """How the request's JSON schema was sent to the server (a dialect of
    :mod:`rede.models._structured`: ``json_schema``, ``json_object_schema``, ...); None when
    the request had no schema or the backend constrains nothing."""


class StreamChunk(BaseModel):
    delta: str = ""
    response: ModelResponse | None = None
    """Set on the last chunk only: the whole text and the usage."""


class Price(BaseModel):
    """USD per 1,000 tokens."""

    model_config = ConfigDict(extra="forbid")
    input_per_1k: float = Field(0.0, ge=0)
    output_per_1k: float = Field(0.0, ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_1k + completion_tokens * self.output_per_1k) / 1000


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token) for when a server reports none.

    Usage built from it is marked ``estimated=True``."""
    return tokens_for_chars(len(text))


def tokens_for_chars(chars: int) -> int:
    """The estimate for a text of ``chars`` characters: ``ceil(chars / 4)``, at least 1 for a
    non-empty text; Rede's one token estimator."""
    return max(1, (chars + 3) // 4) if chars > 0 else 0


def truncate(text: str, max_tokens: int | None) -> tuple[str, bool]:
    """``text`` cut so that :func:`estimate_tokens` counts at most ``max_tokens`` of it, and
    whether it was cut: how backends that count by the estimate honour ``max_tokens``."""
    if max_tokens is None or estimate_tokens(text) <= max_tokens:
        return text, False
    return text[: max_tokens * 4], True


class ChatModel(abc.ABC):
    """A chat model backend. Subclasses implement :meth:`complete`; streaming is optional."""

    name: str
    source: Source
    price: Price

    @abc.abstractmethod
    async def complete(self, request: ModelRequest) -> ModelResponse: ...

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        """Yield text deltas, then a last chunk carrying the whole response."""
        response = await self.complete(request)
        yield StreamChunk(delta=response.text)
        yield StreamChunk(response=response)

    def prompt_tokens_bound(self, request: ModelRequest) -> int:
        """The most prompt tokens this backend will count for ``request``, before it is sent.

        Backends that count by :func:`estimate_tokens` (sim, scripted) know it exactly;
        a backend whose server counts with its own tokenizer overrides this with a bound."""
        return estimate_tokens(request.prompt_text)

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Backends without any keep the default."""

    def usage(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        latency_s: float,
        *,
        estimated: bool = False,
    ) -> Usage:
        return Usage(
            model=self.name,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=self.price.cost(prompt_tokens, completion_tokens),
            latency_s=latency_s,
            calls=1,
            estimated=estimated,
            source=self.source,
        )
