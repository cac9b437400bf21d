"""The OpenAI chat completions wire format, as servers really speak it: tool calls (whole
and streamed in pieces), log-probabilities, and the servers' error bodies, whose words say
whether a request overflowed the context or was refused as invalid."""

from __future__ import annotations

import json
import re
from typing import Any

import openai

from rede.errors import ConfigError
from rede.models._base import ModelRequest, ToolCall

CONTEXT_WORDS = re.compile(
    r"context[ _](length|window|size)|maximum context|exceeds? (the )?(model'?s? )?context"
    r"|too many tokens|prompt is too long",
    re.I,
)
INVALID_WORDS = re.compile(
    r"validation error|validationerror|invalid request|invalid_request|unprocessable", re.I
)


def tool_params(request: ModelRequest) -> dict[str, Any]:
    """``tools`` and ``tool_choice`` of a request; a named choice forces that function."""
    params: dict[str, Any] = {}
    if request.tools:
        params["tools"] = [
            {"type": "function", "function": tool.model_dump()} for tool in request.tools
        ]
    if request.tool_choice in ("auto", "none", "required"):
        params["tool_choice"] = request.tool_choice
    elif request.tool_choice is not None:
        if request.tool_choice not in {t.name for t in request.tools}:
            raise ConfigError(
                f"tool_choice {request.tool_choice!r} names no tool of the request "
                f"(tools: {', '.join(t.name for t in request.tools) or 'none'})"
            )
        params["tool_choice"] = {"type": "function", "function": {"name": request.tool_choice}}
    return params


def tool_calls(raw: Any) -> list[ToolCall]:
    """The ``tool_calls`` of a message; entries without a function name are skipped."""
    calls = []
    for item in raw if isinstance(raw, list) else []:
        function = item.get("function") if isinstance(item, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            arguments = function.get("arguments")
            calls.append(
                ToolCall(
                    id=str(item.get("id") or ""),
                    name=function["name"],
                    arguments=arguments if isinstance(arguments, str) else json.dumps(arguments),
                )
            )
    return calls


def add_tool_call_deltas(calls: dict[int, dict[str, str]], delta: Any) -> None:
    """Merge a stream chunk's ``tool_calls`` pieces (by ``index``) into ``calls``."""
    raw = delta.get("tool_calls") if isinstance(delta, dict) else None
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        call = calls.setdefault(
            int(item.get("index") or 0), {"id": "", "name": "", "arguments": ""}
        )
        call["id"] = str(item.get("id") or call["id"])
        function = item.get("function") or {}
        call["name"] += str(function.get("name") or "")
        call["arguments"] += str(function.get("arguments") or "")


def arguments_text(calls: list[ToolCall]) -> str:
    return "".join(c.arguments for c in calls)


def logprobs_of(choice: dict[str, Any]) -> list[float] | None:
    """Per-token log-probabilities of a choice (chat ``content`` or legacy ``token_logprobs``)."""
    raw = choice.get("logprobs")
    if not isinstance(raw, dict):
        return None
    content = raw.get("content")
    if isinstance(content, list):
        values = [t.get("logprob") for t in content if isinstance(t, dict)]
    else:
        values = raw.get("token_logprobs") or []
    out = [float(v) for v in values if isinstance(v, int | float)]
    return out or None


def error_text(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or json.dumps(error)[:300])
    return str(error)[:300]


def error_code(exc: openai.APIStatusError) -> str | None:
    body = exc.body
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def is_invalid_request(exc: openai.APIStatusError) -> bool:
    """A 5xx whose body says the request was invalid (llama-cpp-python answers its own
    validation errors with 500): retrying the same request cannot help."""
    return exc.status_code >= 500 and bool(INVALID_WORDS.search(server_message(exc)))


def server_message(exc: openai.APIStatusError) -> str:
    """The server's own words for an error, whatever the shape of its error body."""
    body = exc.body
    if isinstance(body, dict):
        return error_text(body.get("error") or body)
    if isinstance(body, str) and body:
        return body[:300]
    return exc.message
