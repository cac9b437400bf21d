"""Any OpenAI-compatible chat completions server: vLLM, Ollama, llama.cpp, TGI, a cloud API.

The official ``openai`` client does what it already does well: it carries the requests,
retries 408/409/429/5xx, timeouts and refused connections (``max_retries`` times, backing off
from 0.5 s and doubling up to 8 s, or for as long as the server's ``Retry-After`` asks), and
parses bodies and event streams into ``ChatCompletion`` and ``ChatCompletionChunk``. An
``httpx`` client can be passed in (``http_client``: proxies, limits, a ``MockTransport`` in
tests). Rede owns what happens around the calls:

- once the client gives up, :class:`~rede.errors.ModelUnavailable` naming the URL, the
  model, the last status and the number of attempts;
- other 4xx answers become :class:`~rede.errors.ModelError` with the server's message;
- bodies that are not completions become :class:`~rede.errors.ModelResponseError` naming
  what was missing;
- structured outputs when a request has a JSON schema, in the server's dialect
  (:mod:`rede.models._structured`): fixed by ``structured``, or detected once per server
  (``auto``: ``json_schema``, then ``json_object_schema``, ``json_object``, ``none`` on
  errors that name the parameter) and remembered in a shared :class:`DialectMemory`; the
  dialect used is on every :class:`ModelResponse` (``structured``);
- a prompt that does not fit the context window becomes :class:`ContextLengthExceeded`;
  a request the server calls invalid, whatever its status, becomes
  :class:`InvalidModelRequest`. Neither is retried: llama-cpp-python answers its own
  validation errors (and structured-output forms it does not know) with HTTP 500, so a
  response hook on the HTTP client marks such answers ``x-should-retry: false``, the
  client's own signal not to retry;
- usage from the server, or estimated (and marked so) when the server reports none.

With ``REDE_LOOPBACK_ONLY=1`` in the environment (the test suite sets it) a model refuses any
base URL that is not loopback (:mod:`rede.models._endpoint`), so no test reaches a real API
by accident. What the answers must hold and what the servers' errors mean is in
:mod:`rede.models._wire`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import openai
from openai.types.chat import ChatCompletion

from rede.errors import ConfigError, ModelError, ModelResponseError, ModelUnavailable, one_line
from rede.models._base import (
    ChatModel,
    ModelRequest,
    ModelResponse,
    Price,
    StreamChunk,
    ToolCall,
)
from rede.models._endpoint import DEFAULT_BASE_URL, LOOPBACK_ENV, checked_url, is_loopback
from rede.models._structured import (
    Dialect,
    DialectMemory,
    StructuredMode,
    apply_dialect,
    structured_mode,
)
from rede.models._wire import (
    CONTEXT_WORDS,
    add_tool_call_deltas,
    arguments_text,
    chunks,
    counted_tokens,
    first_choice,
    malformed,
    mark_unretryable,
    not_an_object,
    prompt_bound,
    refuses_dialect,
    rejection,
    request_is_wrong,
    request_params,
    server_message,
    tool_calls,
)
from rede.protocol.messages import Usage

if TYPE_CHECKING:
    import httpx2

__all__ = ["DEFAULT_BASE_URL", "LOOPBACK_ENV", "OpenAIModel", "is_loopback"]

log = logging.getLogger(__name__)

OPTIONAL_PARAMS = ("stream_options",)
"""Parameters dropped (and remembered as unsupported) when a server rejects them with a 400."""
TRANSIENT_STATUS = frozenset({408, 409, 429})
"""Besides every 5xx, the statuses the client retries: failing with one, a server is
unavailable rather than refusing the request."""


class OpenAIModel(ChatModel):
    """A model served over the OpenAI chat completions protocol.

    ``base_url`` defaults to ``$OPENAI_BASE_URL``, else a local Ollama; ``api_key`` to
    ``$OPENAI_API_KEY``, else ``"not-needed"`` (local servers ignore it). ``max_retries``
    is how often the client retries a transient failure before the model is unavailable.
    ``timeout_s`` bounds each attempt's wait for an answer (each read, for a stream);
    ``total_timeout_s`` (default ``timeout_s``) bounds a streamed answer from its start to
    its last chunk, so a server that drips chunks for ever fails with ``ModelUnavailable``.

    ``structured``: how requests with a JSON schema ask the server to constrain decoding
    (``auto``, the default, detects it once per server; see :mod:`rede.models._structured`).
    A fixed dialect that the server rejects is an error. ``dialects`` is where detected
    dialects are remembered, by base URL (a network shares one across its models).
    ``json_mode`` is the older switch: ``True`` is ``structured="json_object"``, ``False``
    is ``"none"``. ``seed`` is sent with every request when set (fixed-seed sampling on
    servers that honour it: llama.cpp, vLLM, Ollama, OpenAI). ``max_tokens`` caps the
    completion of a request that sets no cap and has no schema.

    ``http_client``: an ``httpx.AsyncClient`` (``httpx2`` with recent ``openai`` releases)
    for the requests: proxies, connection limits, a ``MockTransport`` in tests. The model
    adds one response hook to it (marking 5xx answers that must not be retried) and leaves
    closing it to its owner."""

    source = "real"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        price: Price | None = None,
        timeout_s: float = 60,
        total_timeout_s: float | None = None,
        max_retries: int = 4,
        json_mode: bool | None = None,
        structured: StructuredMode | None = None,
        dialects: DialectMemory | None = None,
        seed: int | None = None,
        max_tokens: int | None = None,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        if not model:
            raise ConfigError("an OpenAI model needs the server's model name, e.g. 'llama3.2'")
        url = checked_url(model, base_url)
        for name, value in (("timeout_s", timeout_s), ("total_timeout_s", total_timeout_s)):
            if value is not None and value <= 0:
                raise ConfigError(f"model {model!r}: {name} must be > 0, got {value}")
        if max_retries < 0:
            raise ConfigError(f"model {model!r}: max_retries must be >= 0, got {max_retries}")
        self.name = model
        self.base_url = url
        self.price = price or Price()
        self.timeout_s = timeout_s
        self.total_timeout_s = total_timeout_s or timeout_s
        self.max_retries = max_retries
        self.structured: StructuredMode = structured_mode(model, structured, json_mode)
        self.dialects = dialects if dialects is not None else DialectMemory()
        self.seed = seed
        self.max_tokens = max_tokens
        """The completion cap of a request that sets none and whose reply no schema bounds
        (none sent, or ``structured: none``); None leaves it to the server."""
        self.unsupported: set[str] = set()
        """Optional parameters this server rejected; they are no longer sent."""
        self._owns_http = http_client is None
        if http_client is None:
            http_client = openai.DefaultAsyncHttpxClient()
        hooks = http_client.event_hooks
        if mark_unretryable not in hooks["response"]:
            http_client.event_hooks = {**hooks, "response": [*hooks["response"], mark_unretryable]}
        self._client = openai.AsyncOpenAI(
            base_url=url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "not-needed",
            timeout=timeout_s,
            max_retries=max_retries,
            http_client=http_client,
        )

    @property
    def url(self) -> str:
        """The chat completions endpoint, as named in errors."""
        return f"{self.base_url}/chat/completions"

    @property
    def where(self) -> str:
        """The server and model, as errors name them."""
        return f"{self.url} (model {self.name!r})"

    def __repr__(self) -> str:
        return f"OpenAIModel({self.name!r}, base_url={self.base_url!r})"

    async def aclose(self) -> None:
        if self._owns_http:  # a client passed in is closed by whoever made it
            await self._client.close()

    # ---------------------------------------------------------------- the calls

    async def complete(self, request: ModelRequest) -> ModelResponse:
        start = time.perf_counter()
        completion, dialect = await self._send(request, stream=False)
        if not isinstance(completion, ChatCompletion):
            raise not_an_object(self.where, completion)
        message, text, finish, logprobs = first_choice(self.where, completion, "message")
        calls = tool_calls(getattr(message, "tool_calls", None))
        usage = self._usage(
            completion.usage, request, text + arguments_text(calls), time.perf_counter() - start
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
        events, dialect = await self._send(request, stream=True)
        until = asyncio.get_running_loop().time() + self.total_timeout_s
        parts: list[str] = []
        logprobs: list[float] = []
        finish: str | None = None
        usage: Any = None
        choices_seen = 0
        calls: dict[int, dict[str, str]] = {}
        try:
            async for chunk in chunks(self.where, events, until, self.total_timeout_s):
                usage = chunk.usage or usage
                if not isinstance(chunk.choices, list):
                    raise malformed(self.where, "a stream chunk has no 'choices' list", chunk)
                if not chunk.choices:
                    continue
                choices_seen += 1
                delta, text, chunk_finish, lps = first_choice(self.where, chunk, "delta")
                add_tool_call_deltas(calls, delta)
                finish = chunk_finish or finish
                logprobs.extend(lps or [])
                if text:
                    parts.append(text)
                    yield StreamChunk(delta=text)
        finally:
            await events.close()
        if not choices_seen:
            raise ModelResponseError(f"{self.where} ended the stream without any choice")
        text = "".join(parts)
        streamed_calls = [ToolCall(**calls[i]) for i in sorted(calls)]
        response = ModelResponse(
            text=text,
            usage=self._usage(
                usage, request, text + arguments_text(streamed_calls), time.perf_counter() - start
            ),
            logprobs=logprobs or None,
            finish_reason=finish,
            tool_calls=streamed_calls,
            structured=dialect,
        )
        yield StreamChunk(response=response)

    # ---------------------------------------------------------------- requests

    async def _send(self, request: ModelRequest, *, stream: bool) -> tuple[Any, Dialect | None]:
        """Send a request, asking for its JSON schema in the server's dialect.

        Returns the client's completion (or stream) and the dialect used (None: the request
        has no schema)."""
        unbounded = request.json_schema is None or self.structured == "none"
        if self.max_tokens and request.max_tokens is None and unbounded:
            request = request.model_copy(update={"max_tokens": self.max_tokens})
        params = request_params(
            self.name, request, stream=stream, seed=self.seed, unsupported=self.unsupported
        )
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
                    result = await self._create(
                        apply_dialect(params, dialect, schema), probing=True
                    )
                except openai.APIStatusError as exc:
                    message = one_line(f"HTTP {exc.status_code}: {server_message(exc)}")
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
                return result, dialect
        raise ModelError(  # unreachable: 'none' sends no structured parameter to refuse
            f"{self.where} refused every structured output form"
        )

    def _refuses_dialect(self, exc: openai.APIStatusError, params: dict[str, Any]) -> bool:
        return refuses_dialect(exc.status_code, server_message(exc), params)

    async def _create(self, params: dict[str, Any], *, probing: bool = False) -> Any:
        """Send; on a 400, once more without the optional parameters.

        ``probing``: a refusal of the structured-output form propagates as
        ``openai.APIStatusError`` (the client did not retry it) for the caller to try
        another."""
        try:
            return await self._call(params)
        except openai.APIStatusError as exc:
            if probing and self._refuses_dialect(exc, params):
                raise
            droppable = [p for p in OPTIONAL_PARAMS if p in params]
            if exc.status_code != 400 or not droppable or CONTEXT_WORDS.search(server_message(exc)):
                raise self._rejected(exc, params) from exc
            reduced = {k: v for k, v in params.items() if k not in droppable}
            try:
                result = await self._call(reduced)
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
            return result

    async def _call(self, params: dict[str, Any]) -> Any:
        """One call through the client, which retries what is transient. What it raises
        once it gives up becomes ``ModelUnavailable``; an answer that refuses the request
        propagates as ``openai.APIStatusError``."""
        try:
            return await self._client.chat.completions.create(**params)
        except openai.APIStatusError as exc:
            status = exc.status_code
            if (status in TRANSIENT_STATUS or status >= 500) and not request_is_wrong(
                status, server_message(exc), params
            ):
                raise self._unavailable(f"HTTP {status}: {server_message(exc)}", exc) from exc
            raise
        except openai.APITimeoutError as exc:
            raise self._unavailable(f"no answer within {self.timeout_s:g}s (timeout)", exc) from exc
        except openai.APIConnectionError as exc:
            raise self._unavailable(f"connection failed: {exc.__cause__ or exc}", exc) from exc
        except json.JSONDecodeError as exc:
            raise malformed(self.where, f"the body is not JSON: {exc.doc[:200]!r}") from None

    def _unavailable(self, failure: str, exc: openai.APIError) -> ModelUnavailable:
        retries = exc.request.headers.get("x-stainless-retry-count", "")
        attempts = int(retries) + 1 if retries.isdigit() else self.max_retries + 1
        return ModelUnavailable(
            f"model {self.name!r} at {self.url} is unavailable after {attempts} "
            f"attempt(s): {failure}; check that the server is up and serves this "
            "model, or raise max_retries"
        )

    def _rejected(self, exc: openai.APIStatusError, params: dict[str, Any]) -> ModelError:
        return rejection(exc, self.where, self.structured, self._refuses_dialect(exc, params))

    # ---------------------------------------------------------------- usage

    def prompt_tokens_bound(self, request: ModelRequest) -> int:
        return prompt_bound(request)

    def _usage(self, raw: Any, request: ModelRequest, text: str, latency_s: float) -> Usage:
        prompt, completion, estimated = counted_tokens(raw, request, text)
        return self.usage(prompt, completion, latency_s, estimated=estimated)
