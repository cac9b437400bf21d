"""The OpenAI-compatible API: ``/v1/models`` and ``/v1/chat/completions``.

A network is one model; its id is the network's name. The network answers the whole
conversation; ``usage`` is the sum over every model call of the run, and the run id comes
back in the ``X-Rede-Run-Id`` header and as ``rede.run_id`` in the body. Streamed responses
use OpenAI's chunk format and end with ``data: [DONE]``; the run's progress goes out as SSE
comment lines (``: rede {...}``), which every SSE client ignores.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from rede.server.http import APIError, error_body
from rede.server.runs import RunManager, ServedRun, _usage

RUN_HEADER = "X-Rede-Run-Id"
NO_RETRY = {"x-should-retry": "false"}
"""A failed run failed on its own terms; OpenAI's SDKs retry 5xx unless told not to."""


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's request; sampling fields (temperature, max_tokens, ...) are accepted and
    left to the network's own configuration."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None


def _text(message: ChatMessage, index: int) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    texts = []
    for part in message.content:
        if part.type != "text" or part.text is None:
            raise APIError(
                400,
                f"messages[{index}] has a content part of type {part.type!r}; "
                "a network takes text only",
                "unsupported_content",
                param=f"messages[{index}].content",
            )
        texts.append(part.text)
    return "\n".join(texts)


def conversation_text(messages: list[ChatMessage]) -> str:
    """The request a network answers: the last user message, after the conversation so far
    when there is one."""
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
    if last_user is None:
        raise APIError(
            400,
            "the conversation has no user message to answer",
            "no_user_message",
            param="messages",
        )
    question = _text(messages[last_user], last_user)
    if not question.strip():
        raise APIError(
            400,
            f"messages[{last_user}], the last user message, is empty",
            "empty_message",
            param=f"messages[{last_user}].content",
        )
    before = [
        f"{m.role.capitalize()}: {text}"
        for i, m in enumerate(messages)
        if i != last_user and (text := _text(m, i)).strip()
    ]
    if not before:
        return question
    return "Conversation so far:\n" + "\n".join(before) + f"\n\nAnswer this: {question}"


def _run_failed(run: ServedRun) -> APIError:
    if run.status == "cancelled":
        return APIError(
            500,
            f"run {run.id} was cancelled: {run.error}",
            "run_cancelled",
            headers={RUN_HEADER: run.id, **NO_RETRY},
        )
    return APIError(
        500,
        f"run {run.id} failed: {run.error}",
        "run_failed",
        headers={RUN_HEADER: run.id, **NO_RETRY},
    )


def router(runs: RunManager, on_disconnect: str) -> APIRouter:
    api = APIRouter(tags=["OpenAI-compatible"])

    def model_card(name: str) -> dict[str, Any]:
        net = runs.networks[name]
        return {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "rede",
            "description": net.config.description,
        }

    @api.get("/v1/models", summary="The networks served, each as a model")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card(n) for n in runs.networks]}

    @api.get("/v1/models/{model}", summary="One network as a model")
    async def get_model(model: str) -> dict[str, Any]:
        if model not in runs.networks:
            raise APIError(404, f"the model {model!r} does not exist", "model_not_found")
        return model_card(model)

    @api.post(
        "/v1/chat/completions",
        summary="The network answers the conversation (plain or streamed)",
        response_model=None,
    )
    async def chat(body: ChatCompletionRequest, request: Request) -> Any:
        run = runs.start(body.model, conversation_text(body.messages), source="openai")
        headers = {RUN_HEADER: run.id}
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                _stream(runs, run, include_usage, on_disconnect),
                media_type="text/event-stream",
                headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        if not await _wait(run, request):
            if on_disconnect == "cancel":
                runs.cancel_nowait(run.id, "the client disconnected")
            return JSONResponse({}, 499)  # nobody reads it
        if run.status != "ok":
            raise _run_failed(run)
        return JSONResponse(_completion(run), headers=headers)

    return api


async def _wait(run: ServedRun, request: Request) -> bool:
    """Wait for the run; False if the client disconnected first."""
    if run.done:
        return True
    finished = asyncio.ensure_future(run.wait())
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({finished, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        finished.cancel()
        gone.cancel()
    return run.done


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _completion(run: ServedRun) -> dict[str, Any]:
    assert run.result is not None
    return {
        "id": f"chatcmpl-{run.id}",
        "object": "chat.completion",
        "created": int(run.created),
        "model": run.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": run.result.answer},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": _openai_usage(run),
        "rede": _rede_facts(run),
    }


def _openai_usage(run: ServedRun) -> dict[str, int]:
    u = run.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }


def _rede_facts(run: ServedRun) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "status": run.status,
        "partial": bool(run.result and run.result.partial),
        "missing": [m.step for m in run.result.missing] if run.result else [],
        "usage": _usage(run.usage),
        "simulated": bool(run.result and run.result.simulated),
    }


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _stream(
    runs: RunManager, run: ServedRun, include_usage: bool, on_disconnect: str
) -> AsyncIterator[str]:
    base = {
        "id": f"chatcmpl-{run.id}",
        "object": "chat.completion.chunk",
        "created": int(run.created),
        "model": run.model,
    }
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return _sse({**base, "choices": [choice], **extra})

    try:
        yield chunk({"role": "assistant", "content": ""})
        async for event in run.follow():
            if event.name == "run_closed":
                break
            yield f": rede {json.dumps(event.wire(), separators=(',', ':'), default=str)}\n\n"
        if run.status == "ok" and run.result is not None:
            yield chunk({"content": run.result.answer})
            last = {
                **base,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}],
                "rede": _rede_facts(run),
                **extra,
            }
            yield _sse(last)
            if include_usage:
                yield _sse({**base, "choices": [], "usage": _openai_usage(run)})
        else:
            failed = _run_failed(run)
            yield _sse(error_body(500, failed.message, failed.code))
        yield "data: [DONE]\n\n"
    finally:
        if not run.done and on_disconnect == "cancel":
            runs.cancel_nowait(run.id, "the client disconnected mid-stream")
