"""Model backends behind one :class:`ChatModel` interface.

A model SPEC is ``backend:argument``: ``openai:llama3.2`` (with a base URL), ``sim:7b``,
``replay:<folder of recordings>``, ``llamacpp:PATH.gguf`` or ``llamacpp:smollm2`` (a real model
in this process, with the ``local`` extra). ``scripted`` models are built in Python, for tests."""

from __future__ import annotations

from typing import Any

from rede.errors import ConfigError
from rede.models._base import (
    ChatMessage,
    ChatModel,
    ModelRequest,
    ModelResponse,
    Price,
    StreamChunk,
    ToolCall,
    ToolSpec,
    estimate_tokens,
)
from rede.models.scripted import ScriptedModel

BACKENDS = ("openai", "sim", "replay", "llamacpp")


def model_from_spec(spec: str, **options: Any) -> ChatModel:
    """Build a model from ``backend:argument``; ``options`` go to the backend."""
    backend, sep, arg = spec.partition(":")
    if not sep or not arg:
        raise ConfigError(
            f"model spec {spec!r} must be 'backend:argument', e.g. 'openai:llama3.2', "
            f"'sim:7b', 'replay:PATH', 'llamacpp:smollm2'; backends: {', '.join(BACKENDS)}"
        )
    if backend == "openai":
        from rede.models.openai import OpenAIModel

        return OpenAIModel(arg, **options)
    if backend == "sim":
        from rede.models.sim import SimModel

        return SimModel.from_profile(arg, **options)
    if backend == "replay":
        from rede.models.replay import ReplayModel

        return ReplayModel.from_path(arg, **options)
    if backend == "llamacpp":
        from rede.models.llamacpp import LlamaCppModel

        return LlamaCppModel(arg, **options)
    raise ConfigError(
        f"unknown model backend {backend!r} in {spec!r}; known: {', '.join(BACKENDS)}"
    )


__all__ = [
    "ChatMessage",
    "ChatModel",
    "ModelRequest",
    "ModelResponse",
    "Price",
    "ScriptedModel",
    "StreamChunk",
    "ToolCall",
    "ToolSpec",
    "estimate_tokens",
    "model_from_spec",
]
