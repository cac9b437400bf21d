"""Budget caps: what a run, or every run of a network together, may spend.

A :class:`BudgetCap` has a cost cap and a token cap (either may be None). The orchestrator
keeps one per run (``limits.max_cost_usd``/``max_tokens``) and one per network
(``limits.network_max_cost_usd``/``network_max_tokens``, across runs while the network is
running). Before a call it *reserves* the most the call may spend on every cap
(:func:`reserve`): the call's worst case (:class:`CallSize`), never more than what is left.
The reservation travels in the task's :class:`~rede.protocol.messages.Budget` and the agent
stays within it, so the caps hold even when calls run in parallel and cost more than
expected. A call that finds too little left while other calls are in flight waits for them to
settle; when even a minimal call cannot be paid for it is refused, before it is sent, with
``RunLimitExceeded`` naming the cap. When the reply comes the reservation is released and the
actual usage *charged*.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from rede.errors import RunLimitExceeded
from rede.protocol.messages import Usage

MARGIN = 1e-9
"""Part of a cost cap left unreserved, so float rounding in sums never pushes a total past it."""


@dataclass
class Hold:
    """Spend set aside for a call; released when its usage is charged.

    A hold is *live* while its call is in flight. A call that was lost (no reply in time)
    may still be answered late, so its hold is *stranded*, not released: it keeps its place
    on the caps until the late reply is booked or the run ends."""

    cap: BudgetCap
    cost_usd: float
    tokens: int
    released: bool = False
    live: bool = True

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.cap.held_usd -= self.cost_usd
            self.cap.held_tokens -= self.tokens
            self.strand()

    def strand(self) -> None:
        if self.live:
            self.live = False
            self.cap.in_flight -= 1
            self.cap.wake()


@dataclass
class BudgetCap:
    """A cost cap and a token cap for one scope: a run, or every run of a network.

    ``shortfall`` tells whether a call of some expected size fits on top of what is spent and
    held; ``room_*`` is what a new reservation may take; ``charge`` books actual usage and
    fails if a cap is passed (a safety net: reservations keep calls within the caps). Errors
    name the cap and what was spent."""

    scope: Literal["run", "network"]
    max_cost_usd: float | None = None
    max_tokens: int | None = None
    spent_usd: float = 0.0
    spent_tokens: int = 0
    held_usd: float = 0.0
    held_tokens: int = 0
    in_flight: int = 0
    """Live holds: calls in flight whose settling may free room."""
    _waiters: list[asyncio.Future[None]] = field(default_factory=list, repr=False)

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

    def room_usd(self) -> float | None:
        """What a new reservation may take from the cost cap (None: no cost cap)."""
        if self.max_cost_usd is None:
            return None
        left = self.max_cost_usd * (1 - MARGIN) - self.spent_usd - self.held_usd
        return max(0.0, left)

    def room_tokens(self) -> int | None:
        """What a new reservation may take from the token cap (None: no token cap)."""
        if self.max_tokens is None:
            return None
        return max(0, self.max_tokens - self.spent_tokens - self.held_tokens)

    def shortfall(self, cost_usd: float, tokens: int, what: str = "") -> RunLimitExceeded | None:
        """The error a call of this expected size would hit, or None if the caps allow it."""
        over_cost = self.max_cost_usd is not None and (
            self.spent_usd + self.held_usd + cost_usd > self.max_cost_usd
        )
        over_tokens = self.max_tokens is not None and (
            self.spent_tokens + self.held_tokens + tokens > self.max_tokens
        )
        if not (over_cost or over_tokens):  # the common case: asked per candidate per call
            return None
        what = what or "the next call"
        where = "this run" if self.scope == "run" else "this network's runs together"
        held = " (plus calls in flight)" if self.held_usd or self.held_tokens else ""
        if over_cost:
            assert self.max_cost_usd is not None
            return RunLimitExceeded(
                f"{self._prefix}max_cost_usd",
                self.max_cost_usd,
                self.spent_usd,
                f"{where} spent ${self.spent_usd:.6f}{held}; {what} would cost about "
                f"${cost_usd:.6f}; not started",
            )
        assert self.max_tokens is not None
        return RunLimitExceeded(
            f"{self._prefix}max_tokens",
            self.max_tokens,
            self.spent_tokens,
            f"{where} used {self.spent_tokens} tokens{held}; {what} would use about "
            f"{tokens}; not started",
        )

    def refusal(self, size: CallSize, what: str) -> RunLimitExceeded:
        """The error for a call this cap cannot pay even a minimal version of."""
        where = "this run" if self.scope == "run" else "this network's runs together"
        held = " (plus calls in flight)" if self.held_usd or self.held_tokens else ""
        room_c, room_t = self.room_usd(), self.room_tokens()
        cost_short = room_c is not None and room_c < size.min_cost_usd
        if self.max_cost_usd is not None and (cost_short or room_t is None):
            return RunLimitExceeded(
                f"{self._prefix}max_cost_usd",
                self.max_cost_usd,
                self.spent_usd,
                f"{where} spent ${self.spent_usd:.6f}{held}; {what} needs at least "
                f"${size.min_cost_usd:.6f} (its prompt and one token); not started",
            )
        return RunLimitExceeded(
            f"{self._prefix}max_tokens",
            self.max_tokens or 0,
            self.spent_tokens,
            f"{where} used {self.spent_tokens} tokens{held}; {what} needs at least "
            f"{size.min_tokens} (its prompt and one token); not started",
        )

    def hold(self, cost_usd: float, tokens: int) -> Hold:
        self.held_usd += cost_usd
        self.held_tokens += tokens
        self.in_flight += 1
        return Hold(self, cost_usd, tokens)

    def charge(self, usage: Usage) -> None:
        self.spent_usd += usage.cost_usd
        self.spent_tokens += usage.total_tokens
        if self.max_cost_usd is not None and self.spent_usd > self.max_cost_usd:
            raise RunLimitExceeded(f"{self._prefix}max_cost_usd", self.max_cost_usd, self.spent_usd)
        if self.max_tokens is not None and self.spent_tokens > self.max_tokens:
            raise RunLimitExceeded(f"{self._prefix}max_tokens", self.max_tokens, self.spent_tokens)

    def wake(self) -> None:
        """Tell the calls waiting for room that a hold changed."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def changed(self) -> None:
        """Wait until a hold on this cap is released or stranded."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)


def hold_all(caps: Iterable[BudgetCap], cost_usd: float, tokens: int, what: str) -> list[Hold]:
    """Hold a call's expected spend on every cap, or raise the first cap's error (no holds)."""
    caps = list(caps)
    for cap in caps:
        error = cap.shortfall(cost_usd, tokens, what)
        if error is not None:
            raise error
    return [cap.hold(cost_usd, tokens) for cap in caps]


@dataclass(frozen=True)
class CallSize:
    """How much one call may spend, for :func:`reserve`.

    ``worst_tokens`` is the call's worst case (an upper bound of its prompt plus the
    completion it is allowed); ``min_tokens`` the least a useful call needs (its estimated
    prompt and one completion token). Costs are at the agent's card prices."""

    prompt_tokens: int
    worst_tokens: int
    price_in_per_1k: float = 0.0
    price_out_per_1k: float = 0.0

    def cost(self, prompt: int, completion: int) -> float:
        return (prompt * self.price_in_per_1k + completion * self.price_out_per_1k) / 1000

    @property
    def min_tokens(self) -> int:
        return self.prompt_tokens + 1

    @property
    def min_cost_usd(self) -> float:
        return self.cost(self.prompt_tokens, 1)

    @property
    def worst_cost_usd(self) -> float:
        # every token priced at the dearer of the two prices: the split is not known ahead
        return self.worst_tokens * max(self.price_in_per_1k, self.price_out_per_1k) / 1000


@dataclass
class Reservation:
    """What :func:`reserve` set aside: the holds, and the bounds the task must carry (None
    where no cap limits that dimension). ``clamped`` names the cap that cut the call below
    its worst case, if one did."""

    holds: list[Hold]
    max_tokens: int | None
    max_cost_usd: float | None
    clamped: BudgetCap | None = None

    def release(self) -> None:
        for hold in self.holds:
            hold.release()

    def strand(self) -> None:
        for hold in self.holds:
            hold.strand()


def _fit(caps: list[BudgetCap], size: CallSize) -> tuple[int, float, BudgetCap | None]:
    tokens, cost, clamped = size.worst_tokens, size.worst_cost_usd, None
    for cap in caps:
        room_t, room_c = cap.room_tokens(), cap.room_usd()
        if room_t is not None and room_t < tokens:
            tokens, clamped = room_t, cap
        if room_c is not None and room_c < cost:
            cost, clamped = room_c, cap
    return tokens, cost, clamped


def _blocking(caps: list[BudgetCap], size: CallSize) -> BudgetCap | None:
    """The first cap whose room cannot pay for even a minimal call."""
    for cap in caps:
        room_t, room_c = cap.room_tokens(), cap.room_usd()
        if (room_t is not None and room_t < size.min_tokens) or (
            room_c is not None and room_c < size.min_cost_usd
        ):
            return cap
    return None


async def reserve(
    caps: Iterable[BudgetCap], size: CallSize, what: str, *, wait: bool = True
) -> Reservation:
    """Hold the most a call may spend on every cap: its worst case, cut to what is left.

    When a cap cannot pay for even a minimal call: wait for calls in flight on it to settle
    (unless ``wait`` is False), then raise ``RunLimitExceeded`` naming the cap if it still
    cannot. Nothing is held when it raises."""
    capped = [cap for cap in caps if cap.capped]
    while True:
        cap = _blocking(capped, size)
        if cap is None:
            break
        if wait and cap.in_flight > 0:
            await cap.changed()
            continue
        raise cap.refusal(size, what)
    tokens, cost, clamped = _fit(capped, size)
    holds = [cap.hold(cost, tokens) for cap in capped]
    return Reservation(
        holds,
        tokens if any(c.max_tokens is not None for c in capped) else None,
        cost if any(c.max_cost_usd is not None for c in capped) else None,
        clamped,
    )
