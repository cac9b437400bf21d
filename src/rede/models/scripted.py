"""A deterministic model for tests: a Python function (or a table of rules) writes each reply.

It records every request and how many calls were in flight at once, so tests can assert
what was asked and that independent steps really ran concurrently."""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from rede.models._base import (
    ChatModel,
    ModelRequest,
    ModelResponse,
    Price,
    estimate_tokens,
    truncate,
)

Handler = Callable[[ModelRequest], str | Awaitable[str]]


class ScriptedModel(ChatModel):
    """``ScriptedModel(handler)``: ``handler(request)`` returns (or awaits) the reply text.

    ``ScriptedModel.from_rules({"regex": "reply", ...}, default="...")`` answers with the
    reply of the first regex that matches the prompt."""

    source = "scripted"

    def __init__(
        self,
        handler: Handler,
        *,
        name: str = "scripted",
        price: Price | None = None,
        delay_s: float = 0.0,
    ) -> None:
        self.name = name
        self.price = price or Price()
        self._handler = handler
        self.delay_s = delay_s
        self.requests: list[ModelRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0

    @classmethod
    def from_rules(
        cls, rules: Mapping[str, str], *, default: str | None = None, **kw: Any
    ) -> ScriptedModel:
        compiled = [(re.compile(p, re.S), reply) for p, reply in rules.items()]

        def handler(request: ModelRequest) -> str:
            text = request.prompt_text
            for pattern, reply in compiled:
                if pattern.search(text):
                    return reply
            if default is None:
                raise LookupError(f"no scripted rule matches prompt: {text[:200]!r}")
            return default

        return cls(handler, **kw)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            out = self._handler(request)
            text = await out if inspect.isawaitable(out) else out
        finally:
            self.in_flight -= 1
        assert isinstance(text, str)
        text, cut = truncate(text, request.max_tokens)
        usage = self.usage(
            estimate_tokens(request.prompt_text),
            estimate_tokens(text),
            self.delay_s,
            estimated=True,
        )
        return ModelResponse(text=text, usage=usage, finish_reason="length" if cut else "stop")
