"""Budget caps: what a run, or every run of a network together, may spend.

A :class:`BudgetCap` has a cost cap and a token cap (either may be None). The orchestrator
keeps one per run (``limits.max_cost_usd``/``max_tokens``) and one per network
(``limits.network_max_cost_usd``/``network_max_tokens``, across runs while the network is
running). Before a call it *holds* the call's expected spend on every cap (:func:`hold_all`),
so parallel steps and concurrent runs cannot together start more than the caps allow; when
the reply comes the hold is released and the actual usage *charged*. Errors are
``RunLimitExceeded`` naming the cap and what was spent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from rede.errors import RunLimitExceeded
from rede.protocol.messages import Usage


@dataclass
class Hold:
    """Expected spend set aside for a call in flight; released when its usage is charged."""

    cap: BudgetCap
    cost_usd: float
    tokens: int
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.cap.held_usd -= self.cost_usd
            self.cap.held_tokens -= self.tokens


@dataclass
class BudgetCap:
    """A cost cap and a token cap for one scope: a run, or every run of a network.

    ``check`` refuses a call whose expected spend, on top of what is spent and held for calls
    in flight, would pass a cap; ``charge`` books actual usage and fails once a cap is passed
    (a call can cost more than expected). Errors name the cap and what was spent."""

    scope: Literal["run", "network"]
    max_cost_usd: float | None = None
    max_tokens: int | None = None
    spent_usd: float = 0.0
    spent_tokens: int = 0
    held_usd: float = 0.0
    held_tokens: int = 0

    @property
    def _prefix(self) -> str:
        return "" if self.scope == "run" else "network_"

    @property
    def capped(self) -> bool:
        return self.max_cost_usd is not None or self.max_tokens is not None

    def left_usd(self) -> float | None:
        if self.max_cost_usd is None:
            return None
        return self.max_cost_usd - self.spent_usd - self.held_usd

    def shortfall(self, cost_usd: float, tokens: int, what: str = "") -> RunLimitExceeded | None:
        """The error a call of this expected size would hit, or None if the caps allow it."""
        what = what or "the next call"
        where = "this run" if self.scope == "run" else "this network's runs together"
        held = " (plus calls in flight)" if self.held_usd or self.held_tokens else ""
        if self.max_cost_usd is not None and (
            self.spent_usd + self.held_usd + cost_usd > self.max_cost_usd
        ):
            return RunLimitExceeded(
                f"{self._prefix}max_cost_usd",
                self.max_cost_usd,
                self.spent_usd,
                f"{where} spent ${self.spent_usd:.6f}{held}; {what} would cost about "
                f"${cost_usd:.6f}; not started",
            )
        if self.max_tokens is not None and (
            self.spent_tokens + self.held_tokens + tokens > self.max_tokens
        ):
            return RunLimitExceeded(
                f"{self._prefix}max_tokens",
                self.max_tokens,
                self.spent_tokens,
                f"{where} used {self.spent_tokens} tokens{held}; {what} would use about "
                f"{tokens}; not started",
            )
        return None

    def hold(self, cost_usd: float, tokens: int) -> Hold:
        self.held_usd += cost_usd
        self.held_tokens += tokens
        return Hold(self, cost_usd, tokens)

    def charge(self, usage: Usage) -> None:
        self.spent_usd += usage.cost_usd
        self.spent_tokens += usage.total_tokens
        if self.max_cost_usd is not None and self.spent_usd > self.max_cost_usd:
            raise RunLimitExceeded(f"{self._prefix}max_cost_usd", self.max_cost_usd, self.spent_usd)
        if self.max_tokens is not None and self.spent_tokens > self.max_tokens:
            raise RunLimitExceeded(f"{self._prefix}max_tokens", self.max_tokens, self.spent_tokens)


def hold_all(caps: Iterable[BudgetCap], cost_usd: float, tokens: int, what: str) -> list[Hold]:
    """Hold a call's expected spend on every cap, or raise the first cap's error (no holds)."""
    caps = list(caps)
    for cap in caps:
        error = cap.shortfall(cost_usd, tokens, what)
        if error is not None:
            raise error
    return [cap.hold(cost_usd, tokens) for cap in caps]
