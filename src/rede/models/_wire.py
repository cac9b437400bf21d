"""The OpenAI chat completions wire format as servers really speak it, on top of the
``openai`` client's own types: tool calls (whole and streamed in pieces), log-probabilities
(the chat form and llama.cpp's legacy one), answers checked for what Rede needs (a body that
is not a completion is a :class:`ModelResponseError` naming what was missing), and the
servers' error bodies, whose words say whether a request overflowed the context or was
refused as invalid, with the response hook that tells the client not to retry a 5xx that
says so.

``where`` in the functions below names the server and model in messages
(``http://host/v1/chat/completions (model 'x')``)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import openai
from openai.types.chat import ChatCompletionChunk
from pydantic import BaseModel

from rede.errors import (
    ConfigError,
    ContextLengthExceeded,
    InvalidModelRequest,
    ModelError,
    ModelResponseError,
    ModelUnavailable,
)
from rede.models._base import ModelRequest, ToolCall, estimate_tokens
from rede.models._structured import DIALECT_PARAMS, names_dialect

CONTEXT_WORDS = re.compile(
    r"context[ _](length|window|size)|maximum context|exceeds? (the )?(model'?s? )?context"
    r"|too many tokens|prompt is too long",
    re.I,
)
DIALECT_REJECTION_STATUS = frozenset({400, 415, 422, 500, 501})
"""Statuses with which servers refuse a structured-output form they do not know."""
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


def refuses_dialect(status: int, message: str, params: dict[str, Any]) -> bool:
    """Whether an error answer is the server refusing the structured-output form it was sent."""
    return (
        sends_dialect(params)
        and status in DIALECT_REJECTION_STATUS
        and names_dialect(message)
        and not CONTEXT_WORDS.search(message)
    )


def request_is_wrong(status: int, message: str, params: dict[str, Any]) -> bool:
    """Whether an error answer says the request itself is wrong (invalid, too long for the
    context, or refusing its structured-output form): sending it again cannot help."""
    return bool(INVALID_WORDS.search(message) or CONTEXT_WORDS.search(message)) or (
        refuses_dialect(status, message, params)
    )


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw[:300].decode(errors="replace")


async def mark_unretryable(response: Any) -> None:
    """An HTTP client response hook: a 5xx whose body says the request itself is wrong gets
    ``x-should-retry: false``, the ``openai`` client's own signal not to retry it (which it
    would: llama-cpp-python answers its validation errors and the structured-output forms it
    does not know with HTTP 500). Dialect detection so costs one request per refused form."""
    if response.status_code < 500:
        return
    await response.aread()
    sent = _json(response.request.content)
    message = message_of(_json(response.content))
    if request_is_wrong(response.status_code, message, sent if isinstance(sent, dict) else {}):
        response.headers["x-should-retry"] = "false"


# --------------------------------------------------------------------------- answers


def malformed(where: str, what: str, data: Any = None) -> ModelResponseError:
    seen = ""
    if isinstance(data, BaseModel):
        keys = data.model_fields_set | set(data.model_extra or {})
        seen = f" (it has: {', '.join(sorted(keys)) or 'nothing'})"
    return ModelResponseError(
        f"{where} answered with something that is not a chat completion: {what}{seen}"
    )


def not_an_object(where: str, data: Any) -> ModelResponseError:
    """The error for a body the client could not make a completion of."""
    if isinstance(data, str):  # the client hands back bodies it cannot read as text
        return malformed(where, f"the body is not JSON: {data[:200]!r}")
    return malformed(where, f"the body is a JSON {type(data).__name__}, not an object")


def first_choice(
    where: str, data: Any, part: str
) -> tuple[Any, str, str | None, list[float] | None]:
    """``(message or delta, text, finish_reason, logprobs)`` of a completion's (or a
    chunk's) ``choices[0]``; ``part`` is ``message`` or ``delta``."""
    error = getattr(data, "error", None)
    if data.choices is None and error is not None:
        raise ModelError(f"{where} answered with an error: {error_text(error)}")
    if not isinstance(data.choices, list) or not data.choices:
        raise malformed(where, "no 'choices'", data)
    choice = data.choices[0]
    if not isinstance(choice, BaseModel):
        raise malformed(where, "'choices[0]' is not an object")
    body = getattr(choice, part, None)
    if part == "delta" and body is None:
        body = {}  # some servers send the finishing chunk without a delta
    elif not isinstance(body, BaseModel):
        raise malformed(where, f"'choices[0]' has no '{part}'", choice)
    content = getattr(body, "content", None)
    if part == "message" and not isinstance(content, str) and not body.tool_calls:
        raise malformed(where, "'choices[0].message' has no 'content'", body)
    finish = choice.finish_reason
    text = content if isinstance(content, str) else ""
    return body, text, finish if isinstance(finish, str) else None, logprobs_of(choice)


async def chunks(
    where: str, events: Any, until: float | None = None, total_s: float = 0.0
) -> AsyncIterator[ChatCompletionChunk]:
    """The chunks of the client's stream; what breaks it becomes Rede's errors. ``until``
    (the loop's time) is the stream's deadline: a chunk still awaited then ends it with
    :class:`ModelUnavailable` naming the deadline (``total_s`` after the stream began), as
    the HTTP client's timeout counts each read on its own and a drip never trips it."""
    iterator = aiter(events)
    while True:
        scope = asyncio.timeout_at(until)
        try:
            async with scope:
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except openai.APIConnectionError as exc:
            raise ModelUnavailable(
                f"the stream from {where} broke: {exc.__cause__ or exc!r}"
            ) from exc
        except openai.APIError as exc:  # an error event in the stream
            raise ModelError(f"{where} sent an error mid-stream: {exc.message}") from exc
        except json.JSONDecodeError as exc:
            raise malformed(where, f"a stream event is not JSON: {exc.doc[:200]!r}") from None
        except Exception as exc:  # the transport's own errors, where the client lets them out
            if scope.expired():
                raise ModelUnavailable(
                    f"the stream from {where} was still coming {total_s:g} s after it began: "
                    "its deadline (total_timeout_s) passed; raise total_timeout_s in the "
                    "model's config for longer answers, or check the server"
                ) from None
            raise ModelUnavailable(f"the stream from {where} broke: {exc!r}") from exc
        if not isinstance(chunk, ChatCompletionChunk):
            raise malformed(where, "a stream event is not a JSON object")
        yield chunk


def request_params(
    model: str,
    request: ModelRequest,
    *,
    stream: bool,
    seed: int | None,
    unsupported: set[str],
) -> dict[str, Any]:
    """The chat completions parameters for a request (less those the server rejected)."""
    params: dict[str, Any] = {
        "model": model,
        "messages": [m.model_dump() for m in request.messages],
    }
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.max_tokens is not None:
        params["max_tokens"] = request.max_tokens
    if request.stop:
        params["stop"] = request.stop
    if request.logprobs:
        params["logprobs"] = True
        # llama-cpp-python returns log-probabilities only when asked for alternatives too
        params["top_logprobs"] = 1
    params.update(tool_params(request))
    if seed is not None:
        params["seed"] = seed
    if stream:
        params["stream"] = True
        params["stream_options"] = {"include_usage": True}
    for name in unsupported:
        params.pop(name, None)
    return params


# --------------------------------------------------------------------------- refusals


def rejection(
    exc: openai.APIStatusError, where: str, structured: str, refuses_dialect: bool
) -> ModelError:
    """Rede's error for an answer that refuses the request (the client did not retry it):
    ``refuses_dialect`` when it refuses the structured-output form sent as ``structured``."""
    message = server_message(exc)
    said = f"{where} rejected the request with HTTP {exc.status_code}"
    if refuses_dialect:
        return InvalidModelRequest(
            f"{said}: {message}; it does not take structured output as "
            f"{structured!r}: set 'structured' to the form this server takes "
            "(json_schema, json_object_schema, ollama_format, json_object, none) or to "
            "auto to detect it"
        )
    if CONTEXT_WORDS.search(message) or error_code(exc) == "context_length_exceeded":
        return ContextLengthExceeded(
            f"{said}: the prompt and max_tokens do not fit the model's context window "
            f"({message}); send less context (shorter or fewer dependency results), "
            "lower max_tokens, or serve the model with a larger context (llama.cpp: "
            "--n_ctx / -c, vLLM: --max-model-len, Ollama: num_ctx)"
        )
    if exc.status_code >= 500 and is_invalid_request(exc):
        return InvalidModelRequest(
            f"{said}, which this server uses for requests it cannot parse: {message}; "
            "the request is not retried (check the model name and the options sent: "
            "temperature, max_tokens, stop, logprobs, structured)"
        )
    if 400 <= exc.status_code < 500 and exc.status_code not in (401, 403, 404):
        return InvalidModelRequest(f"{said}: {message}")
    return ModelError(f"{said}: {message}")


# --------------------------------------------------------------------------- token counts


def prompt_bound(request: ModelRequest) -> int:
    """The most prompt tokens a server can count for ``request``, known before it is sent.

    A byte-level tokenizer never makes more tokens than the text has UTF-8 bytes; the chat
    template adds a few markers per message; a schema or tools may be rendered into the
    prompt. Loose (about 4x a typical count), but a bound: budgets reserve by it."""
    extra = json.dumps(request.json_schema) if request.json_schema else ""
    if request.tools:
        extra += json.dumps([tool.model_dump() for tool in request.tools])
    return len((request.prompt_text + extra).encode()) + 8 * len(request.messages) + 16


def counted_tokens(raw: Any, request: ModelRequest, text: str) -> tuple[int, int, bool]:
    """(prompt, completion, estimated): the server's counts when it reports them, else the
    estimate, with the completion never counted past the ``max_tokens`` the server kept to."""
    prompt = getattr(raw, "prompt_tokens", None)
    completion = getattr(raw, "completion_tokens", None)
    if isinstance(prompt, int) and isinstance(completion, int) and prompt >= 0 and completion >= 0:
        return prompt, completion, False
    estimated = estimate_tokens(text)
    if request.max_tokens is not None:
        estimated = min(estimated, request.max_tokens)
    return estimate_tokens(request.prompt_text), estimated, True
