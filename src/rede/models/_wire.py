"""The OpenAI chat completions wire format, as servers really speak it, on top of the SDK's
own types: tool calls (whole and streamed in pieces), log-probabilities (the chat form and
llama.cpp's legacy one), the servers' error bodies, whose words say whether a request
overflowed the context or was refused as invalid, and the response hook that tells the SDK
not to retry a 5xx that says so."""

from __future__ import annotations

import json
import re
from typing import Any

import openai

from rede.errors import ConfigError
from rede.models._base import ModelRequest, ToolCall
from rede.models._structured import DIALECT_PARAMS, names_dialect

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


def _text(value: Any) -> str:
    """A function's ``arguments``: servers send a JSON text, a few (Ollama) the object."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def tool_calls(raw: Any) -> list[ToolCall]:
    """The ``tool_calls`` of a message; entries without a function name are skipped."""
    calls = []
    for item in raw if isinstance(raw, list) else []:
        function = getattr(item, "function", None)
        name = getattr(function, "name", None)
        if isinstance(name, str):
            arguments = _text(getattr(function, "arguments", None))
            calls.append(
                ToolCall(id=str(getattr(item, "id", "") or ""), name=name, arguments=arguments)
            )
    return calls


def add_tool_call_deltas(calls: dict[int, dict[str, str]], delta: Any) -> None:
    """Merge a stream chunk's ``tool_calls`` pieces (by ``index``) into ``calls``."""
    raw = getattr(delta, "tool_calls", None)
    for item in raw if isinstance(raw, list) else []:
        index = getattr(item, "index", None)
        call = calls.setdefault(
            index if isinstance(index, int) else 0, {"id": "", "name": "", "arguments": ""}
        )
        call["id"] = str(getattr(item, "id", None) or call["id"])
        function = getattr(item, "function", None)
        call["name"] += str(getattr(function, "name", None) or "")
        call["arguments"] += _text(getattr(function, "arguments", None))


def arguments_text(calls: list[ToolCall]) -> str:
    return "".join(c.arguments for c in calls)


def logprobs_of(choice: Any) -> list[float] | None:
    """Per-token log-probabilities of a choice (chat ``content`` or legacy ``token_logprobs``)."""
    raw = getattr(choice, "logprobs", None)
    if raw is None:
        return None
    content = getattr(raw, "content", None)
    if isinstance(content, list):
        values = [getattr(t, "logprob", None) for t in content]
    else:
        values = getattr(raw, "token_logprobs", None) or []
    out = [float(v) for v in values if isinstance(v, int | float)]
    return out or None


def error_text(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or json.dumps(error)[:300])
    return str(error)[:300]


def error_code(exc: openai.APIStatusError) -> str | None:
    body = exc.body
    error = body.get("error", body) if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def message_of(body: Any) -> str:
    """The server's own words in an error body, whatever its shape."""
    if isinstance(body, dict):
        return error_text(body.get("error") or body)
    return str(body)[:300] if body else ""


def server_message(exc: openai.APIStatusError) -> str:
    """The server's own words for an error the SDK raised."""
    return message_of(exc.body) or exc.message


def is_invalid_request(exc: openai.APIStatusError) -> bool:
    """A 5xx whose body says the request was invalid (llama-cpp-python answers its own
    validation errors with 500): retrying the same request cannot help."""
    return exc.status_code >= 500 and bool(INVALID_WORDS.search(server_message(exc)))


def sends_dialect(params: dict[str, Any]) -> bool:
    """Whether request parameters (or a JSON body) ask for a structured-output form."""
    return any(p in params for p in DIALECT_PARAMS) or "format" in (params.get("extra_body") or {})


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw[:300].decode(errors="replace")


async def mark_unretryable(response: Any) -> None:
    """An HTTP client response hook: a 5xx whose body says the request itself is wrong
    (invalid, too long for the context, or refusing the structured-output form it asked
    for) gets ``x-should-retry: false``, the SDK's own signal not to retry it. Sending the
    same request again cannot help, and dialect detection must cost one request per form."""
    if response.status_code < 500:
        return
    await response.aread()
    message = message_of(_json(response.content))
    sent = _json(response.request.content)
    refuses = isinstance(sent, dict) and sends_dialect(sent) and names_dialect(message)
    if INVALID_WORDS.search(message) or CONTEXT_WORDS.search(message) or refuses:
        response.headers["x-should-retry"] = "false"
