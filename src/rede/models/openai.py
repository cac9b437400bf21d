"""Any OpenAI-compatible chat completions server: vLLM, Ollama, llama.cpp, TGI, a cloud API.

The official ``openai`` client carries the requests; Rede owns what happens around them:

- retries with exponential backoff (and the server's ``Retry-After``) on 429, 5xx, the
  transient 408/409/425 (as the official SDK does), timeouts and refused connections, then
  :class:`~rede.errors.ModelUnavailable` naming the URL, the model, the last status and the
  number of attempts (the client's own retries are off);
- other 4xx answers become :class:`~rede.errors.ModelError` with the server's message;
- bodies that are not completions become :class:`~rede.errors.ModelResponseError` naming
  what was missing;
- structured outputs when a request has a JSON schema, in the server's dialect
  (:mod:`rede.models._structured`): fixed by ``structured``, or detected once per server
  (``auto``: ``json_schema``, then ``json_object_schema``, ``json_object``, ``none`` on
  errors that name the parameter) and remembered in a shared :class:`DialectMemory`; the
  dialect used is on every :class:`ModelResponse` (``structured``);
- a prompt that does not fit the context window becomes :class:`ContextLengthExceeded`;
  a request the server calls invalid, whatever its status (llama-cpp-python answers its
  own validation errors with HTTP 500), becomes :class:`InvalidModelRequest`, not retried;
- usage from the server, or estimated (and marked so) when the server reports none.

With ``REDE_LOOPBACK_ONLY=1`` in the environment (the test suite sets it) a model refuses any
base URL that is not loopback, so no test reaches a real API by accident.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import openai

from rede.errors import (
    ConfigError,
    ContextLengthExceeded,
    InvalidModelRequest,
    ModelError,
    ModelResponseError,
    ModelUnavailable,
)
from rede.models._base import (
    ChatModel,
    ModelRequest,
    ModelResponse,
    Price,
    StreamChunk,
    ToolCall,
    estimate_tokens,
)
from rede.models._retry import RetryPolicy, is_retryable_status, parse_retry_after
from rede.models._structured import (
    DIALECT_PARAMS,
    MODES,
    Dialect,
    DialectMemory,
    StructuredMode,
    apply_dialect,
    names_dialect,
)
from rede.models._wire import (
    CONTEXT_WORDS,
    add_tool_call_deltas,
    arguments_text,
    error_code,
    error_text,
    is_invalid_request,
    logprobs_of,
    server_message,
    tool_calls,
    tool_params,
)
from rede.protocol.messages import Usage

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:11434/v1"
"""Ollama's OpenAI-compatible endpoint on this machine."""
LOOPBACK_ENV = "REDE_LOOPBACK_ONLY"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
OPTIONAL_PARAMS = ("stream_options",)
"""Parameters dropped (and remembered as unsupported) when a server rejects them with a 400."""
DIALECT_REJECTION_STATUS = frozenset({400, 415, 422, 500, 501})
"""Statuses with which servers refuse a structured-output form they do not know."""


def is_loopback(url: str) -> bool:
    """Whether a URL's host is this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    host = (urlsplit(url).hostname or "").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _loopback_only() -> bool:
    return os.environ.get(LOOPBACK_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _checked_url(model: str, base_url: str | None) -> str:
    """The server's base URL: given, else ``OPENAI_BASE_URL``, else OpenAI's; an http(s) URL
    with a host, and loopback when ``REDE_LOOPBACK_ONLY`` is set."""
    url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"base URL {url!r} for model {model!r} is not an http(s) URL with a host; "
            f"expected e.g. {DEFAULT_BASE_URL!r}"
        )
    if _loopback_only() and not is_loopback(url):
        raise ConfigError(
            f"base URL {url!r} for model {model!r} is not loopback, and "
            f"{LOOPBACK_ENV} is set: only 127.0.0.1, localhost or ::1 may be reached "
            f"(unset {LOOPBACK_ENV} to allow other hosts)"
        )
    return url


def _structured_mode(
    model: str, structured: StructuredMode | None, json_mode: bool | None
) -> StructuredMode:
    if structured is not None and json_mode is not None:
        raise ConfigError(
            f"model {model!r}: give 'structured' or the older 'json_mode', not both "
            f"(json_mode: true is structured: json_object; false is structured: none)"
        )
    if structured is None:
        structured = {True: "json_object", False: "none", None: "auto"}[json_mode]  # type: ignore[assignment]
    if structured not in MODES:
        raise ConfigError(
            f"model {model!r}: unknown structured output mode {structured!r}; "
            f"use one of {', '.join(MODES)}"
        )
    return structured  # type: ignore[return-value]


class OpenAIModel(ChatModel):
    """A model served over the OpenAI chat completions protocol.

    ``base_url`` defaults to ``$OPENAI_BASE_URL``, else a local Ollama; ``api_key`` to
    ``$OPENAI_API_KEY``, else ``"not-needed"`` (local servers ignore it).

    ``structured``: how requests with a JSON schema ask the server to constrain decoding
    (``auto``, the default, detects it once per server; see :mod:`rede.models._structured`).
    A fixed dialect that the server rejects is an error. ``dialects`` is where detected
    dialects are remembered, by base URL (a network shares one across its models).
    ``json_mode`` is the older switch: ``True`` is ``structured="json_object"``, ``False``
    is ``"none"``. ``seed`` is sent with every request when set (fixed-seed sampling on
    servers that honour it: llama.cpp, vLLM, Ollama, OpenAI)."""

    source = "real"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        price: Price | None = None,
        timeout_s: float = 60,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        json_mode: bool | None = None,
        structured: StructuredMode | None = None,
        dialects: DialectMemory | None = None,
        seed: int | None = None,
    ) -> None:
        if not model:
            raise ConfigError("an OpenAI model needs the server's model name, e.g. 'llama3.2'")
        url = _checked_url(model, base_url)
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0, got {timeout_s}")
        try:
            self.retry = RetryPolicy(max_retries=max_retries, backoff_s=backoff_s)
        except ValueError as exc:
            raise ConfigError(f"model {model!r}: {exc}") from exc
        self.name = model
        self.base_url = url
        self.price = price or Price()
        self.timeout_s = timeout_s
        self.structured: StructuredMode = _structured_mode(model, structured, json_mode)
        self.dialects = dialects if dialects is not None else DialectMemory()
        self.seed = seed
        self.unsupported: set[str] = set()
        """Optional parameters this server rejected; they are no longer sent."""
        self._client = openai.AsyncOpenAI(
            base_url=url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "not-needed",
            timeout=timeout_s,
            max_retries=0,
        )

    @property
    def url(self) -> str:
        """The chat completions endpoint, as named in errors."""
        return f"{self.base_url}/chat/completions"

    def __repr__(self) -> str:
        return f"OpenAIModel({self.name!r}, base_url={self.base_url!r})"

    async def aclose(self) -> None:
        await self._client.close()

    # ---------------------------------------------------------------- the calls

    async def complete(self, request: ModelRequest) -> ModelResponse:
        start = time.perf_counter()
        raw, dialect = await self._send(request, stream=False)
        data = self._decode(raw.http_response.content)
        text, finish, logprobs = self._choice(data, "message")
        calls = tool_calls(data["choices"][0]["message"].get("tool_calls"))
        usage = self._usage(
            data.get("usage"), request, text + arguments_text(calls), time.perf_counter() - start
        )
        return ModelResponse(
            text=text,
            usage=usage,
            logprobs=logprobs,
            finish_reason=finish,
            tool_calls=calls,
            structured=dialect,
        )

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        start = time.perf_counter()
        raw, dialect = await self._send(request, stream=True)
        http = raw.http_response
        parts: list[str] = []
        logprobs: list[float] = []
        finish: str | None = None
        usage: Any = None
        choices_seen = 0
        calls: dict[int, dict[str, str]] = {}
        try:
            async for data in self._events(http):
                usage = data.get("usage") or usage
                choices = data.get("choices")
                if not isinstance(choices, list):
                    raise self._malformed("a stream chunk has no 'choices' list", data)
                if not choices:
                    continue
                choices_seen += 1
                delta, chunk_finish, lps = self._choice(data, "delta")
                add_tool_call_deltas(calls, data["choices"][0].get("delta"))
                finish = chunk_finish or finish
                logprobs.extend(lps or [])
                if delta:
                    parts.append(delta)
                    yield StreamChunk(delta=delta)
        finally:
            await http.aclose()
        if not choices_seen:
            raise ModelResponseError(
                f"{self.url} (model {self.name!r}) ended the stream without any choice"
            )
        text = "".join(parts)
        tool_calls = [ToolCall(**calls[i]) for i in sorted(calls)]
        response = ModelResponse(
            text=text,
            usage=self._usage(
                usage, request, text + arguments_text(tool_calls), time.perf_counter() - start
            ),
            logprobs=logprobs or None,
            finish_reason=finish,
            tool_calls=tool_calls,
            structured=dialect,
        )
        yield StreamChunk(response=response)

    # ---------------------------------------------------------------- requests and retries

    def _params(self, request: ModelRequest, *, stream: bool) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.name,
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
        if self.seed is not None:
            params["seed"] = self.seed
        if stream:
            params["stream"] = True
            params["stream_options"] = {"include_usage": True}
        for name in self.unsupported:
            params.pop(name, None)
        return params

    async def _send(self, request: ModelRequest, *, stream: bool) -> tuple[Any, Dialect | None]:
        """Send a request, asking for its JSON schema in the server's dialect.

        Returns the raw response and the dialect used (None: the request has no schema)."""
        params = self._params(request, stream=stream)
        schema = request.json_schema
        if schema is None:
            return await self._create(params), None
        if self.structured != "auto":
            dialect: Dialect = self.structured
            return await self._create(apply_dialect(params, dialect, schema)), dialect
        url, memory = self.base_url, self.dialects
        if url in memory.found:
            dialect = memory.found[url]
            return await self._create(apply_dialect(params, dialect, schema)), dialect
        async with memory.lock(url):  # detect once per server, not once per concurrent call
            if url in memory.found:  # found by the call this one waited for
                dialect = memory.found[url]
                return await self._create(apply_dialect(params, dialect, schema)), dialect
            refused: list[tuple[Dialect, str]] = []
            for dialect in memory.candidates(url):
                try:
                    raw = await self._create(apply_dialect(params, dialect, schema), probing=True)
                except openai.APIStatusError as exc:
                    message = f"HTTP {exc.status_code}: {server_message(exc)}"
                    refused.append((dialect, message))
                    log.warning(
                        "%s (model %r) refused structured output as %s (%s); trying the next",
                        self.url,
                        self.name,
                        dialect,
                        message,
                    )
                    continue
                # remembered only once a form worked: a call that fails for another reason
                # (its error propagates) leaves nothing wrongly marked as refused
                for refused_dialect, message in refused:
                    memory.reject(url, refused_dialect, message)
                memory.remember(url, dialect)
                log.info("%s: structured output as %s", self.url, dialect)
                return raw, dialect
        raise ModelError(  # unreachable: 'none' sends no structured parameter to refuse
            f"{self.url} (model {self.name!r}) refused every structured output form"
        )

    def _refuses_dialect(self, exc: openai.APIStatusError, params: dict[str, Any]) -> bool:
        """Whether an error is the server refusing the structured-output form it was sent."""
        sent = any(p in params for p in DIALECT_PARAMS) or "format" in (
            params.get("extra_body") or {}
        )
        return (
            sent
            and exc.status_code in DIALECT_REJECTION_STATUS
            and names_dialect(server_message(exc))
            and not CONTEXT_WORDS.search(server_message(exc))
        )

    async def _create(self, params: dict[str, Any], *, probing: bool = False) -> Any:
        """Send with retries; on a 400, once more without the optional parameters.

        ``probing``: a refusal of the structured-output form propagates as
        ``openai.APIStatusError`` at once (not retried) for the caller to try another."""
        try:
            return await self._with_retries(params, probing=probing)
        except openai.APIStatusError as exc:
            if probing and self._refuses_dialect(exc, params):
                raise
            droppable = [p for p in OPTIONAL_PARAMS if p in params]
            if exc.status_code != 400 or not droppable or CONTEXT_WORDS.search(server_message(exc)):
                raise self._rejected(exc, params) from exc
            reduced = {k: v for k, v in params.items() if k not in droppable}
            try:
                raw = await self._with_retries(reduced, probing=probing)
            except openai.APIStatusError as again:
                if probing and self._refuses_dialect(again, reduced):
                    raise
                raise self._rejected(again, reduced) from again
            log.warning(
                "%s (model %r) rejected %s: %s; sending requests without it from now on",
                self.url,
                self.name,
                ", ".join(droppable),
                server_message(exc),
            )
            self.unsupported.update(droppable)
            return raw

    async def _with_retries(self, params: dict[str, Any], *, probing: bool = False) -> Any:
        """One request, retried on 429/5xx/timeouts/refused connections.

        Returns the raw response (its body unread when streaming). Other HTTP errors, a 5xx
        that says the request itself is invalid, and (``probing``) a refusal of the
        structured-output form propagate as ``openai.APIStatusError``; exhaustion raises
        ``ModelUnavailable``."""
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                return await self._client.chat.completions.with_raw_response.create(**params)
            except openai.APIStatusError as exc:
                if not is_retryable_status(exc.status_code) or is_invalid_request(exc):
                    raise
                if self._refuses_dialect(exc, params):  # the same form fails every time
                    raise
                failure: str = f"HTTP {exc.status_code}: {server_message(exc)}"
                retry_after = parse_retry_after(exc.response.headers)
                last: Exception = exc
            except openai.APITimeoutError as exc:
                failure, last = f"no answer within {self.timeout_s:g}s (timeout)", exc
            except openai.APIConnectionError as exc:
                failure, last = f"connection failed: {exc.__cause__ or exc}", exc
            if attempt > self.retry.max_retries:
                raise ModelUnavailable(
                    f"model {self.name!r} at {self.url} is unavailable after {attempt} "
                    f"attempt(s): {failure}; check that the server is up and serves this "
                    "model, or raise max_retries"
                ) from last
            delay = self.retry.delay(attempt - 1, retry_after)
            log.info(
                "%s (model %r) attempt %d failed (%s); retrying in %.2fs",
                self.url,
                self.name,
                attempt,
                failure,
                delay,
            )
            await asyncio.sleep(delay)

    def _rejected(self, exc: openai.APIStatusError, params: dict[str, Any]) -> ModelError:
        message = server_message(exc)
        said = f"{self.url} (model {self.name!r}) rejected the request with HTTP {exc.status_code}"
        if self._refuses_dialect(exc, params):
            return InvalidModelRequest(
                f"{said}: {message}; it does not take structured output as "
                f"{self.structured!r}: set 'structured' to the form this server takes "
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

    # ---------------------------------------------------------------- parsing

    def _malformed(self, what: str, data: Any = None) -> ModelResponseError:
        seen = ""
        if isinstance(data, dict):
            seen = f" (it has: {', '.join(sorted(map(str, data))) or 'nothing'})"
        return ModelResponseError(
            f"{self.url} (model {self.name!r}) answered with something that is not a chat "
            f"completion: {what}{seen}"
        )

    def _decode(self, body: bytes | str) -> dict[str, Any]:
        try:
            data = json.loads(body)
        except ValueError:
            snippet = body[:200].decode(errors="replace") if isinstance(body, bytes) else body
            raise self._malformed(f"the body is not JSON: {snippet[:200]!r}") from None
        if not isinstance(data, dict):
            raise self._malformed(f"the body is a JSON {type(data).__name__}, not an object")
        return data

    def _choice(
        self, data: dict[str, Any], part: str
    ) -> tuple[str, str | None, list[float] | None]:
        """``(text, finish_reason, logprobs)`` of ``choices[0]``; ``part`` is message or delta."""
        if "choices" not in data and "error" in data:
            raise ModelError(
                f"{self.url} (model {self.name!r}) answered with an error: "
                f"{error_text(data['error'])}"
            )
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise self._malformed("no 'choices'", data)
        choice = choices[0]
        if not isinstance(choice, dict):
            raise self._malformed("'choices[0]' is not an object")
        body = choice.get(part)
        if part == "delta" and body is None:
            body = {}  # some servers send the finishing chunk without a delta
        if not isinstance(body, dict):
            raise self._malformed(f"'choices[0]' has no '{part}'", choice)
        content = body.get("content")
        if part == "message" and not isinstance(content, str) and not body.get("tool_calls"):
            raise self._malformed("'choices[0].message' has no 'content'", body)
        finish = choice.get("finish_reason")
        text = content if isinstance(content, str) else ""
        return text, finish if isinstance(finish, str) else None, logprobs_of(choice)

    async def _events(self, http: Any) -> AsyncIterator[dict[str, Any]]:
        """The JSON objects of a server-sent event stream, up to ``[DONE]``."""
        data: list[str] = []
        lines = http.aiter_lines()
        while True:
            try:
                line = await anext(lines)
            except StopAsyncIteration:
                line = None
            except Exception as exc:  # the transport's own errors (httpx or httpx2)
                raise ModelUnavailable(
                    f"the stream from {self.url} (model {self.name!r}) broke: {exc!r}"
                ) from exc
            if line is None or line == "":
                payload = "\n".join(data)
                data = []
                if payload.strip() == "[DONE]":
                    return
                if payload:
                    try:
                        event = json.loads(payload)
                    except ValueError:
                        raise self._malformed(
                            f"a stream event is not JSON: {payload[:200]!r}"
                        ) from None
                    if not isinstance(event, dict):
                        raise self._malformed("a stream event is not a JSON object")
                    if "error" in event and "choices" not in event:
                        raise ModelError(
                            f"{self.url} (model {self.name!r}) sent an error mid-stream: "
                            f"{error_text(event['error'])}"
                        )
                    yield event
                if line is None:
                    return
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))

    def _usage(self, raw: Any, request: ModelRequest, text: str, latency_s: float) -> Usage:
        if isinstance(raw, dict):
            prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens")
            if isinstance(prompt, int) and isinstance(completion, int):
                if prompt >= 0 and completion >= 0:
                    return self.usage(prompt, completion, latency_s)
        return self.usage(
            estimate_tokens(request.prompt_text),
            estimate_tokens(text),
            latency_s,
            estimated=True,
        )
