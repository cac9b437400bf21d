"""Routing: which agent takes a step, and why.

The :class:`Router` keeps recent observations of every agent on every capability (tokens
used, confidence reported, critic scores, verification outcomes, failures, queue waits) and
picks among the Registry's live agents by the strategy configured for the network or the
capability (``routing:`` in the network YAML):

- ``cheapest``: the lowest expected cost among agents whose expected quality meets the
  step's required confidence; if none is expected to, the best expected quality.
- ``cascade``: the cheapest agent of the lowest tier; a result whose confidence is below the
  threshold is escalated to the next tier, and after the last tier to the ``manager`` agent
  if the network names one (see :meth:`Router.escalation`).
- ``auction``: a call for bids; the award follows the rule in :mod:`rede.routing.auction`.
- ``load``: the least loaded agent (queue depth per replica and slot), cheapest on ties.

Estimates, all per (agent, capability):

- *expected tokens*: the decayed mean of the prompt and completion tokens of the agent's
  successful calls; without any, the mean over every agent on the capability (similar
  steps), then the size of the step's own text, then 800 prompt + 300 completion tokens.
  *Expected cost* is those tokens at the card's prices.
- *expected quality*: the card's declared quality as a prior worth ``PRIOR_WEIGHT``
  observations, blended with decayed observations weighted by how much each signal is worth
  (``SIGNAL_WEIGHTS``: a verification outcome counts 4x a self-reported confidence). The
  orchestrator feeds in every result and critic score; verification outcomes come from
  ``Network.feedback`` (:meth:`Router.observe_run` on the run's decisions). A reply that
  states no confidence (``confidence_method: none``) adds no quality observation.

"Recent" is counted in observations of the capability, not of the agent: an observation's
weight halves after ``routing.halflife`` newer ones of any agent on that capability. So the
record of an agent that routing stopped choosing fades back toward its declared prior while
others work, and it is tried again, instead of being judged forever by a bad streak.

Every choice comes back as a :class:`Route` with its reason, which the orchestrator records.
Spending caps (per run, per network) are :class:`~rede.budget.BudgetCap` objects; routing
prefers agents the caps can pay for (``afford``), and the orchestrator holds a call's expected
cost on every cap before it sends the task, so no call starts that the caps cannot pay for.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from rede.config import RoutingConfig
from rede.errors import UnknownCapability
from rede.protocol.messages import Envelope
from rede.protocol.topics import Topic
from rede.routing.feedback import answering_agents
from rede.routing.stats import (
    DEFAULT_COMPLETION_TOKENS,
    DEFAULT_PROMPT_TOKENS,
    PRIOR_WEIGHT,
    SIGNAL_WEIGHTS,
    AgentStats,
    QueueStats,
)
from rede.runtime.registry import AgentView, Registry

Afford = Callable[[float, int], bool]
"""``afford(expected_cost_usd, expected_tokens)``: whether every budget cap can pay."""


@dataclass(frozen=True)
class Route:
    agent: str
    capability: str
    strategy: str
    reason: str
    expected_cost_usd: float
    expected_quality: float
    tier: int = 0
    expected_tokens: int = 0
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """Extra facts for the decision record (an auction's bids)."""


@dataclass
class RouteRequest:
    """What the orchestrator knows of a call when it asks for a route."""

    capability: str
    required_confidence: float = 0.0
    exclude: Iterable[str] = ()
    min_rank: float | None = None
    """Cascade: after an escalation, retries stay at this tier or above."""
    prompt_tokens: int | None = None
    """The size of the step's own text (instruction, request, context), as a fallback."""
    afford: Afford | None = None
    only: str | None = None
    """Agreement: this agent and no other (a tier names its agents)."""
    # for auctions
    run_id: str = ""
    step_id: str | None = None
    sender: str = "router"
    reply_to: Topic | None = None
    instruction: str = ""
    task_timeout_s: float | None = None
    on_sent: Callable[[Envelope], None] | None = None


class SpawnHook(Protocol):
    """What the router needs from a spawner (see :mod:`rede.scaling.spawner`)."""

    def spawnable(self) -> set[str]: ...

    async def ensure(self, capability: str) -> str | None: ...


# --------------------------------------------------------------------------- the router


@dataclass
class Router:
    registry: Registry
    config: RoutingConfig = field(default_factory=RoutingConfig)
    stats: dict[tuple[str, str], AgentStats] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    """Calls this router has sent to each agent and not yet seen answered."""
    queues: dict[str, QueueStats] = field(default_factory=dict)
    ticks: dict[str, int] = field(default_factory=dict)
    """Observations so far per capability: the clock that ages every agent's record."""
    spawner: SpawnHook | None = None
    clock: Callable[[], float] = time.monotonic
    configured: frozenset[str] = frozenset()
    """Capabilities the network's configuration serves: without a live agent, absent."""
    _changed: asyncio.Event | None = field(default=None, init=False, repr=False)

    @property
    def decay(self) -> float:
        return 0.5 ** (1.0 / self.config.halflife)

    # ------------------------------------------------------------------ load

    def started(self, agent: str) -> float:
        """A call was sent to ``agent``; returns the time to pass to :meth:`finished`."""
        self.in_flight[agent] = self.in_flight.get(agent, 0) + 1
        self._notify()
        return self.clock()

    def finished(
        self, agent: str, started_at: float | None = None, service_s: float | None = None
    ) -> None:
        """A call came back (or was given up). With ``service_s`` (the model's own time), the
        rest of the call's duration counts as time spent waiting in the agent's queue."""
        self.in_flight[agent] = max(0, self.in_flight.get(agent, 0) - 1)
        if started_at is not None and service_s is not None:
            elapsed = max(0.0, self.clock() - started_at)
            service = min(max(0.0, service_s), elapsed)
            self.queues.setdefault(agent, QueueStats()).add(elapsed - service, service)
        self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_change(self, timeout: float | None = None) -> bool:
        """Wait until a call starts or finishes; False after ``timeout``."""
        changed = self._changed = self._changed or asyncio.Event()  # made only when waited for
        try:
            async with asyncio.timeout(timeout):
                await changed.wait()
        except TimeoutError:
            return False
        return True

    def load(self, view: AgentView) -> float:
        """Queue depth per replica: what this router has in flight, or the cards' load."""
        return max(self.in_flight.get(view.name, 0), view.load) / view.replicas

    def queue(self, agent: str) -> QueueStats:
        return self.queues.get(agent, QueueStats())

    def _stats(self, agent: str, capability: str, *, observe: bool = False) -> AgentStats:
        """An agent's record, aged to now; ``observe`` first counts a new observation."""
        if observe:
            self.ticks[capability] = self.ticks.get(capability, 0) + 1
        tick = self.ticks.get(capability, 0)
        s = self.stats.setdefault((agent, capability), AgentStats(tick=tick))
        s.age(tick, self.decay)
        return s

    # ------------------------------------------------------------------ observations

    def observe_result(
        self,
        agent: str,
        capability: str,
        *,
        ok: bool,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        confidence: float | None = None,
    ) -> None:
        """A call's outcome: tokens used, and the confidence the agent reported."""
        s = self._stats(agent, capability, observe=True)
        s.calls += 1
        if not ok:
            s.failures += 1
            s.add_quality(0.0, SIGNAL_WEIGHTS["failure"])
            return
        s.add_tokens(prompt_tokens, completion_tokens)
        if confidence is not None:
            s.add_quality(confidence, SIGNAL_WEIGHTS["confidence"])

    def observe_score(self, agent: str, capability: str, score: float) -> None:
        """A critic's score (0..1) for an agent's output."""
        self._stats(agent, capability, observe=True).add_quality(score, SIGNAL_WEIGHTS["critique"])

    def observe_outcome(self, agent: str, capability: str, correct: bool) -> None:
        """A verification outcome: the output was checked against the truth."""
        self._stats(agent, capability, observe=True).add_quality(
            1.0 if correct else 0.0, SIGNAL_WEIGHTS["outcome"]
        )

    # ------------------------------------------------------------------ estimates

    def expected_quality(
        self, view: AgentView, capability: str, prior: float | None = None
    ) -> float:
        """The card's quality (or ``prior``, e.g. a bid's confidence) blended with outcomes."""
        s = self._stats(view.name, capability)
        p = view.card.quality if prior is None else prior
        return (p * PRIOR_WEIGHT + s.quality_sum) / (PRIOR_WEIGHT + s.quality_weight)

    def expected_tokens(
        self, agent: str, capability: str, prompt_hint: int | None = None
    ) -> tuple[float, float]:
        own = self._stats(agent, capability).expected_tokens()
        if own is not None:
            return own
        pooled = [
            self._stats(name, cap)
            for (name, cap), s in list(self.stats.items())
            if cap == capability and s.token_weight
        ]
        if pooled:
            w = sum(s.token_weight for s in pooled)
            return (
                sum(s.prompt_tokens for s in pooled) / w,
                sum(s.completion_tokens for s in pooled) / w,
            )
        return float(prompt_hint or DEFAULT_PROMPT_TOKENS), float(DEFAULT_COMPLETION_TOKENS)

    def expected_cost(
        self, view: AgentView, capability: str, prompt_hint: int | None = None
    ) -> float:
        return view.cost(*self.expected_tokens(view.name, capability, prompt_hint))

    def strategy_for(self, capability: str) -> str:
        return self.config.per_capability.get(capability, self.config.strategy)

    def rank(self, view: AgentView) -> float:
        """Cascade order: the card's tier; the manager comes after every tier."""
        return math.inf if view.name == self.config.manager else float(view.card.tier)

    # ------------------------------------------------------------------ capabilities

    def spawnable(self) -> set[str]:
        return self.spawner.spawnable() if self.spawner is not None else set()

    def known_capabilities(self) -> set[str]:
        """What the network serves: live agents, spawn templates and its configuration."""
        return self.registry.capabilities() | self.spawnable() | self.configured

    async def ensure(self, capability: str) -> str | None:
        """Make sure some live agent serves ``capability``: start one from a template if none
        does (its name), None if one does or is configured, or raise ``UnknownCapability``."""
        if self.registry.agents(capability):
            return None
        if self.spawner is not None and capability in self.spawner.spawnable():
            name = await self.spawner.ensure(capability)
            if name is not None:
                return name
        if capability in self.configured:
            return None
        where = "this run: no live agent serves it and no spawn template can start one"
        raise UnknownCapability(capability, self.known_capabilities(), where=where)

    def candidates(self, capability: str, exclude: Iterable[str] = ()) -> list[AgentView]:
        views = self.registry.agents(capability)
        if not views and capability not in self.known_capabilities():
            raise UnknownCapability(capability, self.known_capabilities())
        skip = set(exclude)
        return [v for v in views if v.name not in skip]

    # ------------------------------------------------------------------ choice

    def _route(
        self, view: AgentView, req: RouteRequest, strategy: str, reason: str, **details: Any
    ) -> Route:
        p, c = self.expected_tokens(view.name, req.capability, req.prompt_tokens)
        return Route(
            view.name,
            req.capability,
            strategy,
            reason,
            view.cost(p, c),
            self.expected_quality(view, req.capability),
            view.card.tier,
            round(p + c),
            details,
        )

    def choose(
        self,
        capability: str,
        *,
        required_confidence: float = 0.0,
        exclude: Iterable[str] = (),
        min_rank: float | None = None,
        afford: Afford | None = None,
        prompt_tokens: int | None = None,
    ) -> Route | None:
        """The agent for one call by a synchronous strategy (``auction`` needs :meth:`route`
        and falls back to ``cheapest`` here), or None when every capable agent is excluded."""
        req = RouteRequest(
            capability, required_confidence, exclude, min_rank, prompt_tokens, afford
        )
        return self._choose(req, self.strategy_for(capability))

    def _choose(self, req: RouteRequest, strategy: str) -> Route | None:
        cap = req.capability
        views = self.candidates(cap, req.exclude)
        if req.only is not None:
            views = [v for v in views if v.name == req.only]
            if not views:
                return None
            return self._route(views[0], req, "agreement", "named by an agreement tier")
        if req.min_rank is not None:
            views = [v for v in views if self.rank(v) >= req.min_rank]
        if not views:
            return None
        est = {v.name: self.expected_tokens(v.name, cap, req.prompt_tokens) for v in views}
        cost = {v.name: v.cost(*est[v.name]) for v in views}
        quality = {v.name: self.expected_quality(v, cap) for v in views}
        tokens = {v.name: round(sum(est[v.name])) for v in views}
        payable = [
            v for v in views if req.afford is None or req.afford(cost[v.name], tokens[v.name])
        ]
        note = ""
        if len(payable) < len(views):
            note = f"; {len(views) - len(payable)} agent(s) skipped: over budget"
        if not payable:
            v = min(views, key=lambda v: (cost[v.name], v.name))
            return self._route(v, req, strategy, f"no agent fits the budget; cheapest is {v.name}")
        views = payable
        if strategy == "load":
            v = min(views, key=lambda v: (self.load(v) / v.card.concurrency, cost[v.name], v.name))
            return self._route(
                v,
                req,
                "load",
                f"least loaded ({self.load(v):g} in flight per replica over {v.replicas})" + note,
            )
        if strategy == "cascade":
            lowest = min(self.rank(v) for v in views)
            at = [v for v in views if self.rank(v) == lowest]
            v = min(at, key=lambda v: (cost[v.name], -quality[v.name], v.name))
            tier = "manager" if lowest == math.inf else f"tier {v.card.tier}"
            return self._route(
                v, req, "cascade", f"{tier}, cheapest of {len(at)} at the lowest tier" + note
            )
        need = max(req.required_confidence, self.config.required_confidence)
        good = [v for v in views if quality[v.name] >= need]
        if good:
            v = min(good, key=lambda v: (cost[v.name], -quality[v.name], v.name))
            reason = (
                f"cheapest of {len(good)} agent(s) with expected quality >= {need:.2f} "
                f"(${cost[v.name]:.6f}, q={quality[v.name]:.2f})"
            )
        else:
            v = max(views, key=lambda v: (quality[v.name], -cost[v.name]))
            reason = f"no agent expected to reach {need:.2f}; best quality q={quality[v.name]:.2f}"
        return self._route(v, req, "cheapest", reason + note)

    def route(self, req: RouteRequest) -> Route | None:
        """The agent for one call by the capability's strategy. An ``auction`` needs the
        bus: the orchestrator runs it (:func:`rede.routing.auction.run_auction`, which falls
        back to this); here it is ``cheapest``."""
        strategy = self.strategy_for(req.capability)
        if req.only is not None:
            return self._choose(req, "agreement")
        return self._choose(req, "cheapest" if strategy == "auction" else strategy)

    def escalation(
        self, capability: str, from_agent: str, exclude: Iterable[str] = ()
    ) -> Route | None:
        """Cascade: the cheapest agent of the next tier above ``from_agent``'s, then the
        manager; None at the top."""
        views = self.candidates(capability, exclude)
        current = next(
            (self.rank(v) for v in self.registry.agents(capability) if v.name == from_agent),
            -math.inf,
        )
        higher = [v for v in views if self.rank(v) > current and v.name != from_agent]
        if not higher:
            return None
        nxt = min(self.rank(v) for v in higher)
        at = [v for v in higher if self.rank(v) == nxt]
        v = min(at, key=lambda v: (self.expected_cost(v, capability), v.name))
        to = "the manager" if nxt == math.inf else f"tier {v.card.tier}"
        was = "the manager" if current == math.inf else f"tier {current:g}"
        return self._route(v, RouteRequest(capability), "cascade", f"escalated from {was} to {to}")

    def observe_run(
        self,
        decisions: Iterable[Mapping[str, Any]],
        ok: bool,
        *,
        step: str | None = None,
        plan: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """A verification outcome for a recorded run: :meth:`observe_outcome` for the agent
        whose output each target step kept. Returns what was observed, one entry per step."""
        targets = answering_agents(decisions, step=step, plan=plan)
        for t in targets:
            self.observe_outcome(t["agent"], t["capability"], ok)
        return targets

    def rank_of(self, agent: str, capability: str) -> float:
        """The cascade rank of a live agent (-inf when it is gone)."""
        view = next((v for v in self.registry.agents(capability) if v.name == agent), None)
        return self.rank(view) if view is not None else -math.inf
