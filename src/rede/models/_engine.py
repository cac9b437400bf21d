"""The llama.cpp contexts behind :class:`~rede.models.llamacpp.LlamaCppModel`: ``slots``
contexts over one GGUF file, each call in its own worker thread, and the prefix-affine choice
of a slot (see that module's docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rede.extras import require

CORES = os.cpu_count() or 1


def _llama_class() -> Any:
    (llama_cpp,) = require("the llamacpp backend (rede demo --real)", "local", "llama_cpp")
    return llama_cpp.Llama


@dataclass(frozen=True)
class EngineKey:
    path: str
    slots: int
    threads: int
    """CPU threads per call; 0: share the cores among the calls running (see ``_share``)."""
    n_ctx: int


@dataclass
class _Slot:
    llama: Any
    prompt: str = ""
    """The text of the last prompt evaluated here, to route calls that share its prefix."""


@dataclass
class Engine:
    """``slots`` llama.cpp contexts over one GGUF, each call in a worker thread."""

    key: EngineKey
    slots: list[_Slot] = field(default_factory=list)
    users: int = 0
    peak: int = 0
    """The most calls that ever held a slot at once: how parallel the calls really ran."""
    _free: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pool: ThreadPoolExecutor | None = None
    _formatter: Any = None

    @classmethod
    def load(cls, key: EngineKey) -> Engine:
        llama = _llama_class()
        slots = [
            _Slot(
                llama(
                    model_path=key.path,
                    n_ctx=key.n_ctx,
                    n_threads=key.threads or CORES,
                    n_threads_batch=key.threads or CORES,
                    verbose=False,
                )
            )
            for _ in range(key.slots)
        ]
        engine = cls(key, slots, _free=list(range(key.slots)))
        engine._pool = ThreadPoolExecutor(key.slots, thread_name_prefix="rede-llamacpp")
        return engine

    def prompt_tokens(self, llama: Any, messages: list[dict[str, str]]) -> int | None:
        """Tokens of the prompt that the model's chat template makes of ``messages``: what a
        streamed call evaluates (llama.cpp reports no usage in streams). None when the GGUF
        carries no chat template."""
        if self._formatter is None:
            template = (llama.metadata or {}).get("tokenizer.chat_template")
            if not template:
                return None
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            model = llama._model  # the token texts that llama_cpp itself gives the template
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=model.token_get_text(llama.token_eos()),
                bos_token=model.token_get_text(llama.token_bos()),
            )
        prompt = self._formatter(messages=messages).prompt
        return len(llama.tokenize(prompt.encode("utf-8"), special=True))

    def _take(self, prompt: str, cache_prompt: bool) -> int:
        """The free slot whose last prompt shares the longest prefix with ``prompt``."""
        with self._lock:
            best = max(
                self._free,
                key=lambda i: shared_prefix(self.slots[i].prompt, prompt),
            )
            self._free.remove(best)
            self.peak = max(self.peak, len(self.slots) - len(self._free))
            self._share()
        if not cache_prompt:
            self.slots[best].llama.reset()
            self.slots[best].prompt = ""
        return best

    def _give(self, index: int, prompt: str) -> None:
        self.slots[index].prompt = prompt
        with self._lock:
            self._free.append(index)
            self._share()

    def _share(self) -> None:
        """With ``threads`` 0, give the calls running now the machine's cores between them
        (at least 1 each): a call alone (the DAG's sequential parts) gets every core, two
        parallel steps one half each. llama.cpp reads the count at its next decode, so a
        running call changes pace within a token. Called under the lock."""
        if self.key.threads:
            return
        busy = [i for i in range(len(self.slots)) if i not in self._free]
        share = max(1, CORES // max(1, len(busy)))
        for i in busy:  # _ctx: llama-cpp-python 0.3's context object (the extra pins 0.3.36)
            self.slots[i].llama._ctx.set_n_threads(share, share)

    async def run(self, prompt: str, cache_prompt: bool, fn: Any) -> tuple[Any, float]:
        """``fn(llama)`` in a free slot's thread: its value and the seconds it held the slot."""

        def work() -> tuple[Any, float]:
            index = self._take(prompt, cache_prompt)
            start = time.perf_counter()
            try:
                return fn(self.slots[index].llama), time.perf_counter() - start
            finally:
                self._give(index, prompt)

        assert self._pool is not None
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for slot in self.slots:
            with contextlib.suppress(Exception):
                slot.llama.close()
        self.slots.clear()


class Engines:
    """The engines of one network, by file and settings: models that share them share one."""

    def __init__(self) -> None:
        self._engines: dict[EngineKey, Engine] = {}

    def acquire(self, key: EngineKey) -> Engine:
        engine = self._engines.get(key)
        if engine is None:
            engine = self._engines[key] = Engine.load(key)
        engine.users += 1
        return engine

    def release(self, engine: Engine) -> None:
        engine.users -= 1
        if engine.users <= 0:
            self._engines.pop(engine.key, None)
            engine.close()


def shared_prefix(a: str, b: str) -> int:
    """How many leading characters ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
