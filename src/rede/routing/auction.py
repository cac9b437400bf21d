"""Auctions (``routing.strategy: auction``): a call for bids per step, awarded on time.

The protocol:

1. The orchestrator publishes a ``bid_request`` on ``rede.bids.<capability>`` (fan-out: every
   replica of every agent serving the capability sees it), with ``reply_to`` the run's reply
   topic and ``deadline`` now + ``routing.bid_timeout_s``. It carries the orchestrator's
   estimate of the task's tokens, so every bidder prices the same work.
2. Each replica answers with a ``bid`` (:func:`rede.agents.bidding.make_bid` by default):
   its price for those tokens, its expected confidence, the tasks it has in hand, its
   concurrency, and when it expects to finish if it knows.
3. Bidding closes at the deadline, or as soon as every live replica has bid. A bid that
   arrives later is ignored, so a silent or slow agent cannot stall the award. A bid whose
   sender is not a live replica of the agent it names is rejected.

The award (:func:`score_bids`), lowest score wins:

- ``quality``: the bid's confidence taken as the prior for the agent's expected quality and
  blended with what the router observed of it (critic scores, outcomes, failures), so an
  agent that overstates its confidence is discounted by its record.
- ``wait_s``: the bid's ``eta_s`` less the service time, if given; else whole rounds of work
  ahead of the task times the agent's observed service time, where the rounds are the
  larger of the bidder's own (``queue // concurrency``) and the router's backlog for the
  agent over all its replicas (tasks still waiting on the bus are in no replica's queue).
  An agent whose service time was never observed is taken to be as fast as the mean of
  those observed (an unknown agent must not look free of waiting).
- A bid is eligible when ``quality`` meets the step's required confidence, its price fits
  the budget caps, and ``wait_s`` + service time fits the task's timeout. If no bid reaches
  the required confidence, the others still compete (the reason says so).
- ``score = price_usd / max(quality, 0.05) + routing.auction_wait_usd_per_s * wait_s``:
  the expected price of a correct answer, plus what the wait is worth. Ties go to the
  shorter wait, then the name.

With no bid at all by the deadline, the step is routed by ``cheapest`` and the reason says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from rede.protocol.messages import Bid, BidRequest, Envelope, new_id
from rede.protocol.topics import Topic

if TYPE_CHECKING:
    from rede.bus import Bus, Subscription
    from rede.routing.router import Route, Router, RouteRequest
    from rede.runtime.registry import AgentView

MIN_QUALITY = 0.05


@dataclass
class Offer:
    bid: Bid
    sender: str
    at: float


@dataclass
class BidBook:
    """The bids of one auction as they arrive, until ``deadline`` (on the router's clock)."""

    request_id: str
    deadline: float
    expected: dict[str, set[str]]
    """Agent name -> ids of its live replicas, when the call for bids went out."""
    offers: dict[str, Offer] = field(default_factory=dict)
    """The best bid (shortest queue, then lowest price) of each agent."""
    seen: set[str] = field(default_factory=set)
    late: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def offer(self, env: Envelope, at: float) -> bool:
        """Consider one envelope; True if it was taken as a bid."""
        bid = env.payload
        if env.parent_id != self.request_id or not isinstance(bid, Bid):
            return False
        if at > self.deadline:
            self.late.append(bid.agent)
            return False
        if env.sender not in self.expected.get(bid.agent, set()):
            self.rejected.append(f"{env.sender}: not a live replica of {bid.agent!r}")
            return False
        self.seen.add(env.sender)
        best = self.offers.get(bid.agent)
        if best is None or (bid.queue, bid.price_usd) < (best.bid.queue, best.bid.price_usd):
            self.offers[bid.agent] = Offer(bid, env.sender, at)
        return True

    @property
    def complete(self) -> bool:
        return all(ids <= self.seen for ids in self.expected.values())

    @property
    def silent(self) -> list[str]:
        return sorted(set(self.expected) - set(self.offers))


async def collect(sub: Subscription, book: BidBook, clock: Callable[[], float]) -> None:
    """Take bids from ``sub`` until every replica has bid or the deadline passes."""
    while not book.complete:
        remaining = book.deadline - clock()
        if remaining <= 0:
            return
        try:
            delivery = await sub.receive(timeout=remaining)
        except TimeoutError:
            return
        book.offer(delivery.envelope, clock())
        await delivery.ack()


@dataclass(frozen=True)
class Scored:
    agent: str
    score: float
    price_usd: float
    quality: float
    wait_s: float
    eligible: bool
    why: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "score": round(self.score, 9),
            "price_usd": self.price_usd,
            "quality": round(self.quality, 3),
            "wait_s": round(self.wait_s, 3),
            "eligible": self.eligible,
            **({"why": self.why} if self.why else {}),
        }


def score_bids(router: Router, req: RouteRequest, book: BidBook) -> list[Scored]:
    """Every bid scored by the rule in the module docstring, best first."""
    views = {v.name: v for v in router.candidates(req.capability, req.exclude)}
    need = max(req.required_confidence, router.config.required_confidence)
    known = [q.service_s for q in router.queues.values() if q.samples]
    typical = sum(known) / len(known) if known else 0.0
    scored: list[Scored] = []
    for name, offer in book.offers.items():
        view = views.get(name)
        if view is None:
            continue
        bid = offer.bid
        quality = router.expected_quality(view, req.capability, prior=bid.confidence)
        observed = router.queue(name)
        service = observed.service_s if observed.samples else typical
        if bid.eta_s is not None:
            wait = max(0.0, bid.eta_s - service)
        else:
            backlog = router.in_flight.get(name, 0) // (bid.concurrency * view.replicas)
            wait = max(bid.queue // bid.concurrency, backlog) * service
        score = bid.price_usd / max(quality, MIN_QUALITY) + (
            router.config.auction_wait_usd_per_s * wait
        )
        tokens = round(sum(router.expected_tokens(name, req.capability, req.prompt_tokens)))
        why = ""
        if quality < need:
            why = f"expected quality {quality:.2f} < {need:.2f}"
        elif req.afford is not None and not req.afford(bid.price_usd, tokens):
            why = "over budget"
        elif req.task_timeout_s is not None and wait + service > req.task_timeout_s:
            why = f"cannot finish within {req.task_timeout_s:g}s"
        scored.append(Scored(name, score, bid.price_usd, quality, wait, not why, why))
    scored.sort(key=lambda s: (not s.eligible, s.score, s.wait_s, s.agent))
    if scored and not scored[0].eligible:
        # nobody reaches the bar: let the rest compete, but not over-budget or too-slow bids
        fallback = [s for s in scored if s.why.startswith("expected quality")]
        fallback.sort(key=lambda s: (-s.quality, s.score, s.agent))
        if fallback:
            scored.remove(fallback[0])
            scored.insert(0, fallback[0])
    return scored


async def run_auction(router: Router, bus: Bus, req: RouteRequest) -> Route | None:
    """Call for bids on one step and award it (see the module docstring)."""
    views = router.candidates(req.capability, req.exclude)
    if not views:
        return None
    expected = {
        v.name: {c.id for c in router.registry.cards(req.capability) if c.name == v.name}
        for v in views
    }
    timeout = router.config.bid_timeout_s
    private = req.reply_to is None
    reply_to = req.reply_to or Topic.reply(new_id("auction-"))
    env = _call_for_bids(router, req, views[0].name, reply_to, timeout)
    book = BidBook(env.id, router.clock() + timeout, expected)
    sub = await bus.subscribe(reply_to)
    try:
        if req.on_sent is not None:
            req.on_sent(env)
        await bus.publish(Topic.bids(req.capability), env)
        await collect(sub, book, router.clock)
    finally:
        await sub.aclose()
        if private:
            await asyncio.shield(bus.delete(reply_to))
    return _award(router, req, views, book, timeout)


def _call_for_bids(
    router: Router, req: RouteRequest, agent: str, reply_to: Topic, timeout: float
) -> Envelope:
    prompt, completion = router.expected_tokens(agent, req.capability, req.prompt_tokens)
    return Envelope(
        run_id=req.run_id,
        step_id=req.step_id,
        sender=req.sender,
        reply_to=str(reply_to),
        deadline=datetime.now(UTC) + timedelta(seconds=timeout),
        payload=BidRequest(
            capability=req.capability,
            instruction=req.instruction[:2000],
            required_confidence=max(req.required_confidence, router.config.required_confidence),
            prompt_tokens=round(prompt),
            completion_tokens=round(completion),
            task_timeout_s=req.task_timeout_s,
        ),
    )


def _award(
    router: Router, req: RouteRequest, views: list[AgentView], book: BidBook, timeout: float
) -> Route | None:
    """The best bid's route; without any bid, ``cheapest`` among the agents live now."""
    scored = score_bids(router, req, book)
    facts: dict[str, Any] = {
        "bids": [s.summary() for s in scored],
        "silent": book.silent,
        "late": book.late,
        **({"rejected": book.rejected} if book.rejected else {}),
    }
    expected = len(book.expected)
    if not scored:
        fallback = router._choose(req, "cheapest")
        if fallback is None:
            return None
        return dataclasses.replace(
            fallback,
            strategy="auction",
            reason=f"no bids within {timeout:g}s from {expected} agent(s); {fallback.reason}",
            details=facts,
        )
    best = scored[0]
    view = next(v for v in views if v.name == best.agent)
    rule = "lowest price/quality + wait" if best.eligible else f"none eligible ({best.why})"
    heard = f"{len(book.offers)} of {expected} agent(s) bid within {timeout:g}s"
    return router._route(
        view,
        req,
        "auction",
        f"awarded to {best.agent} by {rule}: score {best.score:.3g} "
        f"(${best.price_usd:.6f}, q={best.quality:.2f}, wait {best.wait_s:.2f}s); {heard}",
        **facts,
    )
