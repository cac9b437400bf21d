"""What routing learns of each agent: decayed sums of tokens and quality per capability, and
smoothed queue waits, with the constants that weigh them (see :mod:`rede.routing.router`)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PROMPT_TOKENS = 800
DEFAULT_COMPLETION_TOKENS = 300
PRIOR_WEIGHT = 3.0
"""How many observations the declared quality is worth against observed outcomes."""
SIGNAL_WEIGHTS = {"confidence": 0.5, "critique": 1.0, "outcome": 2.0, "failure": 1.0}
"""Weight of one observation of each kind in the quality estimate."""
WAIT_ALPHA = 0.3
"""Smoothing of queue-wait and service-time averages (the spawner needs them to react)."""


@dataclass
class AgentStats:
    """Decayed sums for one agent on one capability."""

    calls: int = 0
    failures: int = 0
    token_weight: float = 0.0
    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0
    quality_sum: float = 0.0
    quality_weight: float = 0.0
    tick: int = 0
    """The capability's observation count when these sums were last aged."""

    def age(self, tick: int, decay: float) -> None:
        if tick > self.tick:
            f = decay ** (tick - self.tick)
            self.prompt_tokens *= f
            self.completion_tokens *= f
            self.token_weight *= f
            self.quality_sum *= f
            self.quality_weight *= f
            self.tick = tick

    def add_tokens(self, prompt: int, completion: int) -> None:
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.token_weight += 1.0

    def add_quality(self, value: float, weight: float) -> None:
        self.quality_sum += value * weight
        self.quality_weight += weight

    def expected_tokens(self) -> tuple[float, float] | None:
        if self.token_weight <= 0:
            return None
        return self.prompt_tokens / self.token_weight, self.completion_tokens / self.token_weight


@dataclass
class QueueStats:
    """How long one agent's calls waited and ran (smoothed), as this router saw them."""

    wait_s: float = 0.0
    service_s: float = 0.0
    samples: int = 0

    def add(self, wait_s: float, service_s: float) -> None:
        a = WAIT_ALPHA if self.samples else 1.0
        self.wait_s += a * (wait_s - self.wait_s)
        self.service_s += a * (service_s - self.service_s)
        self.samples += 1


__all__ = [
    "DEFAULT_COMPLETION_TOKENS",
    "DEFAULT_PROMPT_TOKENS",
    "PRIOR_WEIGHT",
    "SIGNAL_WEIGHTS",
    "WAIT_ALPHA",
    "AgentStats",
    "QueueStats",
]
