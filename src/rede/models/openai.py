"""Any OpenAI-compatible chat completions server: vLLM, Ollama, llama.cpp, TGI, a cloud API.

The official ``openai`` client carries the requests; Rede owns what happens around them:

- retries with exponential backoff (and the server's ``Retry-After``) on 429, 5xx, the
  transient 408/409/425 (as the official SDK does), timeouts and refused connections, then
  :class:`~rede.errors.ModelUnavailable` naming the URL, the model, the last status and the
  number of attempts (the client's own retries are off);
- other 4xx answers become :class:`~rede.errors.ModelError` with the server's message;
- bodies that are not completions become :class:`~rede.errors.ModelResponseError` naming
  what was missing;
- JSON mode (``response_format={"type": "json_object"}``) when a request has a JSON schema;
  with ``json_mode=None`` a server that rejects it with a 400 is asked again without it, and
  this model stops sending it;
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

from rede.errors import ConfigError, ModelError, ModelResponseError, ModelUnavailable
from rede.models._base import (
    ChatModel,
    ModelRequest,
    ModelResponse,
    Price,
    StreamChunk,
    estimate_tokens,
)
from rede.models._retry import RetryPolicy, is_retryable_status, parse_retry_after
from rede.protocol.messages import Usage

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:11434/v1"
"""Ollama's OpenAI-compatible endpoint on this machine."""
LOOPBACK_ENV = "REDE_LOOPBACK_ONLY"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
OPTIONAL_PARAMS = ("response_format", "stream_options")
"""Parameters dropped (and remembered as unsupported) when a server rejects them with a 400."""


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


class OpenAIModel(ChatModel):
    """A model served over the OpenAI chat completions protocol.

    ``base_url`` defaults to ``$OPENAI_BASE_URL``, else a local Ollama; ``api_key`` to
    ``$OPENAI_API_KEY``, else ``"not-needed"`` (local servers ignore it). ``json_mode``:
    ``None`` uses JSON mode for requests with a schema and drops it if the server rejects it;
    ``True`` always uses it (a rejection is an error); ``False`` never does."""

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
    ) -> None:
        if not model:
            raise ConfigError("an OpenAI model needs the server's model name, e.g. 'llama3.2'")
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
        self.json_mode = json_mode
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
        raw = await self._create(self._params(request, stream=False))
        data = self._decode(raw.http_response.content)
        text, finish, logprobs = self._choice(data, "message")
        usage = self._usage(data.get("usage"), request, text, time.perf_counter() - start)
        return ModelResponse(text=text, usage=usage, logprobs=logprobs, finish_reason=finish)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        start = time.perf_counter()
        raw = await self._create(self._params(request, stream=True))
        http = raw.http_response
        parts: list[str] = []
        logprobs: list[float] = []
        finish: str | None = None
        usage: Any = None
        choices_seen = 0
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
        response = ModelResponse(
            text=text,
            usage=self._usage(usage, request, text, time.perf_counter() - start),
            logprobs=logprobs or None,
            finish_reason=finish,
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
        if request.json_schema is not None and self.json_mode is not False:
            params["response_format"] = {"type": "json_object"}
        if stream:
            params["stream"] = True
            params["stream_options"] = {"include_usage": True}
        for name in self.unsupported:
            params.pop(name, None)
        return params

    async def _create(self, params: dict[str, Any]) -> Any:
        """Send with retries; on a 400, once more without the optional parameters."""
        try:
            return await self._with_retries(params)
        except openai.APIStatusError as exc:
            droppable = [p for p in OPTIONAL_PARAMS if p in params]
            if self.json_mode is True and "response_format" in droppable:
                droppable.remove("response_format")
            if exc.status_code != 400 or not droppable:
                raise self._rejected(exc) from exc
            reduced = {k: v for k, v in params.items() if k not in droppable}
            try:
                raw = await self._with_retries(reduced)
            except openai.APIStatusError as again:
                raise self._rejected(again) from again
            log.warning(
                "%s (model %r) rejected %s: %s; sending requests without it from now on",
                self.url,
                self.name,
                ", ".join(droppable),
                _server_message(exc),
            )
            self.unsupported.update(droppable)
            return raw

    async def _with_retries(self, params: dict[str, Any]) -> Any:
        """One request, retried on 429/5xx/timeouts/refused connections.

        Returns the raw response (its body unread when streaming). Other HTTP errors
        propagate as ``openai.APIStatusError``; exhaustion raises ``ModelUnavailable``."""
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                return await self._client.chat.completions.with_raw_response.create(**params)
            except openai.APIStatusError as exc:
                if not is_retryable_status(exc.status_code):
                    raise
                failure: str = f"HTTP {exc.status_code}: {_server_message(exc)}"
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

    def _rejected(self, exc: openai.APIStatusError) -> ModelError:
        return ModelError(
            f"{self.url} (model {self.name!r}) rejected the request with HTTP "
            f"{exc.status_code}: {_server_message(exc)}"
        )

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
                f"{_error_text(data['error'])}"
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
        if part == "message" and not isinstance(content, str):
            raise self._malformed("'choices[0].message' has no 'content'", body)
        finish = choice.get("finish_reason")
        text = content if isinstance(content, str) else ""
        return text, finish if isinstance(finish, str) else None, _logprobs(choice)

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
                            f"{_error_text(event['error'])}"
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


def _logprobs(choice: dict[str, Any]) -> list[float] | None:
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


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or json.dumps(error)[:300])
    return str(error)[:300]


def _server_message(exc: openai.APIStatusError) -> str:
    """The server's own words for an error, whatever the shape of its error body."""
    body = exc.body
    if isinstance(body, dict):
        return _error_text(body.get("error") or body)
    if isinstance(body, str) and body:
        return body[:300]
    return exc.message
