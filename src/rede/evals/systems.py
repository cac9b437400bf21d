"""What a benchmark runs: a :class:`System` answers one prompt at a time.

``ModelSystem`` wraps one :class:`~rede.models.ChatModel` (one call per prompt);
``NetworkSystem`` wraps a whole Rede network described in YAML (a run per prompt, with every
envelope it exchanged counted). Both say where their answers come from (``source``): a real
model, a simulated one, a replay of recordings or a script, or a mix of these.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from rede.errors import ConfigError
from rede.models import ChatModel, ModelRequest, model_from_spec
from rede.protocol.messages import Usage

if TYPE_CHECKING:
    from rede.network import Network

SystemSource = Literal["real", "simulated", "replay", "scripted", "mixed"]

SOURCE_WORDS: dict[str, str] = {
    "real": "real: answers from a real model server",
    "simulated": "simulated: answers from simulated models, not evidence of real model quality",
    "replay": "replayed: answers are recorded completions served again",
    "scripted": "scripted: answers written by a test script",
    "mixed": "mixed: answers from more than one kind of backend (see per-call sources)",
}


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    messages: int = 1
    """Envelopes exchanged to produce the answer; 1 for a single model call."""
    sources: frozenset[str] = frozenset()
    """The sources of the calls behind the answer, where more than ``usage.source`` tells
    (a network's runs: ``{"simulated", "tool"}``)."""
    agents: Mapping[str, Usage] = field(default_factory=dict)
    """Usage per agent of a network's run (per model for a single model)."""
    escalated: bool = False
    """The network escalated past its first tier (a cascade or an agreement tier)."""


@runtime_checkable
class System(Protocol):
    name: str
    source: SystemSource

    async def answer(self, prompt: str, *, metadata: dict[str, Any]) -> Answer: ...

    async def models(self) -> dict[str, ChatModel]:
        """The models behind the answers, by name (built now if need be)."""
        ...

    async def aclose(self) -> None: ...


def source_of(sources: set[str]) -> SystemSource:
    """One label for a set of usage sources (tool calls and empty usage do not count)."""
    kinds = {s for s in sources if s not in ("tool", "none")}
    if len(kinds) == 1:
        (only,) = kinds
        if only in SOURCE_WORDS:
            return only  # type: ignore[return-value]
    return "mixed" if kinds else "real"


class ModelSystem:
    """One model call per prompt."""

    def __init__(
        self,
        model: ChatModel,
        *,
        max_tokens: int | None = None,
        stop: list[str] | None = None,
        temperature: float | None = 0.0,
    ) -> None:
        self.model = model
        self.name = model.name
        self.source: SystemSource = model.source
        self.max_tokens = max_tokens
        self.stop = stop
        self.temperature = temperature

    @classmethod
    def from_spec(
        cls, spec: str, *, options: dict[str, Any] | None = None, **kw: Any
    ) -> ModelSystem:
        return cls(model_from_spec(spec, **(options or {})), **kw)

    async def answer(self, prompt: str, *, metadata: dict[str, Any]) -> Answer:
        request = ModelRequest.of(
            prompt,
            max_tokens=self.max_tokens,
            stop=self.stop,
            temperature=self.temperature,
            metadata=metadata,
        )
        started = time.perf_counter()
        response = await self.model.complete(request)
        wall = time.perf_counter() - started
        return Answer(
            text=response.text,
            usage=response.usage,
            latency_s=response.usage.latency_s or wall,
            messages=1,
            agents={self.name: response.usage},
        )

    async def models(self) -> dict[str, ChatModel]:
        return {self.name: self.model}

    async def aclose(self) -> None:
        await self.model.aclose()


class NetworkSystem:
    """A Rede network (YAML) answering each prompt as one run.

    The network starts on the first prompt and stops in :meth:`aclose`. ``latency_s`` of an
    answer is the run's wall time; ``messages`` the envelopes it exchanged."""

    def __init__(
        self,
        path: str | Path,
        *,
        base_url: str | None = None,
        model: str | None = None,
        **network_options: Any,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"network file {str(self.path)!r} does not exist")
        from rede.config import NetworkConfig

        self.config = NetworkConfig.from_yaml(self.path)
        self.name = f"network:{self.config.name}"
        self._options: dict[str, Any] = {
            "base_url": base_url,
            "model": model,
            **network_options,
        }
        self.source: SystemSource = self._declared_source(base_url, model)
        self._net: Network | None = None
        self._lock = asyncio.Lock()

    def _declared_source(self, base_url: str | None, model: str | None) -> SystemSource:
        kinds: set[str] = set()
        for conf in self.config.models.values():
            backend = conf.spec.partition(":")[0]
            # as Network builds them: either override points every non-replay model at a server
            if (base_url is not None or model is not None) and backend != "replay":
                backend = "openai"
            kinds.add(
                {"openai": "real", "sim": "simulated", "replay": "replay"}.get(backend, "mixed")
            )
        return source_of(kinds) if kinds else "real"

    async def _network(self) -> Network:
        async with self._lock:
            if self._net is None:
                from rede.network import Network

                net = Network.from_yaml(self.path, **self._options)
                await net.__aenter__()
                self._net = net
            return self._net

    async def answer(self, prompt: str, *, metadata: dict[str, Any]) -> Answer:
        net = await self._network()
        result = await net.ask(prompt, metadata=metadata)
        agents: dict[str, Usage] = {}
        for step in result.steps:
            for call in step.calls:
                agents[call.agent] = agents.get(call.agent, Usage()) + call.usage
        return Answer(
            text=result.answer,
            usage=result.usage,
            latency_s=result.wall_time_s,
            messages=len(result.envelopes),
            sources=frozenset(result.sources),
            agents=agents,
            escalated=any(_escalation(d) for d in result.decisions),
        )

    async def models(self) -> dict[str, ChatModel]:
        net = await self._network()
        return {name: net.model(name) for name in self.config.models}

    async def aclose(self) -> None:
        async with self._lock:
            if self._net is not None:
                net, self._net = self._net, None
                await net.__aexit__(None, None, None)


def _escalation(decision: Mapping[str, Any]) -> bool:
    return decision.get("name") == "escalate" or (
        decision.get("name") == "agreement" and decision.get("outcome") == "escalated"
    )


__all__ = [
    "SOURCE_WORDS",
    "Answer",
    "ModelSystem",
    "NetworkSystem",
    "System",
    "SystemSource",
    "source_of",
]
