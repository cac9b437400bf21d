"""Routing strategies on hand-built cards, auctions, budget caps and cascades end to end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from rede.agents.bidding import make_bid
from rede.bus import MemoryBus
from rede.config import RoutingConfig
from rede.errors import ConfigError, RunLimitExceeded, StepFailed
from rede.models import ModelRequest, Price, ScriptedModel
from rede.network import Network
from rede.orchestration.plan import Plan, Step
from rede.protocol.messages import AgentCard, Bid, BidRequest, Envelope, Usage
from rede.routing.auction import BidBook, run_auction, score_bids
from rede.routing.budget import BudgetCap, hold_all
from rede.routing.feedback import answering_agents
from rede.routing.router import Router, RouteRequest
from rede.routing.stats import QueueStats
from rede.runtime.registry import Registry

# --------------------------------------------------------------------------- helpers


def card(
    name: str,
    *,
    price: float = 0.001,
    quality: float = 0.7,
    tier: int = 0,
    replica: int = 1,
    caps: tuple[str, ...] = ("answer",),
) -> AgentCard:
    return AgentCard(
        id=f"{name}-{replica}",
        name=name,
        capabilities=list(caps),
        price_in_per_1k=price,
        price_out_per_1k=price,
        quality=quality,
        tier=tier,
    )


def router(*cards: AgentCard, **routing: Any) -> Router:
    registry = Registry(ttl_s=60)
    for c in cards:
        registry.observe(c)
    return Router(registry, RoutingConfig(**routing))


Handler = Callable[[ModelRequest], Any]


def network(
    agents: list[dict[str, Any]],
    handlers: dict[str, Handler],
    prices: dict[str, float] | None = None,
    **conf: Any,
) -> Network:
    """Agents on scripted models; ``prices`` sets a model's price per 1k tokens (in and out)."""
    prices = prices or {}
    models = {
        name: ScriptedModel(
            fn,
            name=name,
            price=Price(input_per_1k=prices.get(name, 0.0), output_per_1k=prices.get(name, 0.0)),
        )
        for name, fn in handlers.items()
    }
    data: dict[str, Any] = {
        "models": {name: {"spec": "sim:7b"} for name in handlers},
        "agents": agents,
        "heartbeat_s": 0.1,
        "agent_ttl_s": 5,
        **conf,
    }
    data.setdefault("limits", {}).setdefault("step_timeout_s", 10)
    return Network.from_dict(data, models=models)


def decisions(result: Any, name: str) -> list[dict[str, Any]]:
    return [d for d in result.decisions if d["name"] == name]


# --------------------------------------------------------------------------- cheapest


def test_cheapest_picks_the_lowest_cost_agent_that_meets_the_required_quality() -> None:
    r = router(
        card("tiny", price=0.0001, quality=0.5),
        card("mid", price=0.001, quality=0.75),
        card("big", price=0.01, quality=0.9),
    )
    assert r.choose("answer").agent == "tiny"
    assert r.choose("answer", required_confidence=0.7).agent == "mid"
    assert r.choose("answer", required_confidence=0.85).agent == "big"
    route = r.choose("answer", required_confidence=0.95)
    assert route is not None and route.agent == "big"
    assert "no agent expected to reach 0.95" in route.reason


def test_network_wide_required_confidence_applies_to_steps_that_name_none() -> None:
    r = router(
        card("tiny", price=0.0001, quality=0.5),
        card("mid", price=0.001, quality=0.75),
        required_confidence=0.7,
    )
    assert r.choose("answer").agent == "mid"


def test_expected_cost_uses_the_tokens_the_agent_used_on_similar_steps() -> None:
    r = router(card("terse", price=0.002), card("verbose", price=0.001))
    assert r.choose("answer").agent == "verbose", "same default token estimate: lower price"
    r.observe_result("verbose", "answer", ok=True, prompt_tokens=3000, completion_tokens=2000)
    r.observe_result("terse", "answer", ok=True, prompt_tokens=500, completion_tokens=100)
    route = r.choose("answer")
    assert route is not None and route.agent == "terse"
    assert route.expected_cost_usd == pytest.approx(600 * 0.002 / 1000)
    assert route.expected_tokens == 600


def test_an_agent_never_seen_is_priced_by_what_others_used_on_the_capability() -> None:
    r = router(card("seen", price=0.001), card("new", price=0.001))
    r.observe_result("seen", "answer", ok=True, prompt_tokens=100, completion_tokens=50)
    assert r.expected_tokens("new", "answer") == (100, 50)
    assert r.expected_tokens("new", "other", prompt_hint=40) == (40, 300)


def test_observed_quality_follows_recent_outcomes() -> None:
    r = router(card("a", price=0.001, quality=0.9), card("b", price=0.01, quality=0.8), halflife=5)
    assert r.choose("answer", required_confidence=0.75).agent == "a"
    for _ in range(10):
        r.observe_outcome("a", "answer", correct=False)
    assert r.choose("answer", required_confidence=0.75).agent == "b"
    for _ in range(10):
        r.observe_outcome("a", "answer", correct=True)
    # without decay the record would be 10 right, 10 wrong (q~0.53); recent ones count more
    assert r.choose("answer", required_confidence=0.75).agent == "a"


def test_an_agent_routing_stopped_choosing_is_tried_again_once_its_record_fades() -> None:
    r = router(
        card("cheap", price=0.001, quality=0.8), card("dear", price=0.01, quality=0.9), halflife=20
    )
    for _ in range(6):
        r.observe_outcome("cheap", "answer", correct=False)  # a bad streak
    assert r.choose("answer", required_confidence=0.7).agent == "dear"
    for _ in range(150):  # only dear is chosen now; the capability's clock keeps running
        r.observe_outcome("dear", "answer", correct=True)
    assert r.choose("answer", required_confidence=0.7).agent == "cheap", "back to its prior"


def test_critic_scores_and_failures_lower_the_estimate_self_reports_count_less() -> None:
    r = router(card("a", quality=0.8), card("b", quality=0.8))
    view_a, view_b = r.registry.agents("answer")
    r.observe_score("a", "answer", 0.2)
    r.observe_result("b", "answer", ok=True, confidence=0.2)
    assert r.expected_quality(view_a, "answer") < r.expected_quality(view_b, "answer") < 0.8
    r.observe_result("b", "answer", ok=False)
    assert r.stats[("b", "answer")].failures == 1


# --------------------------------------------------------------------------- load


def test_load_picks_the_least_loaded_agent_per_replica() -> None:
    r = router(
        card("pair", replica=1, price=0.001),
        card("pair", replica=2, price=0.001),
        card("single", price=0.002),
        strategy="load",
    )
    assert r.choose("answer").agent == "pair", "idle: cheapest"
    for _ in range(3):
        r.started("pair")
    r.started("single")
    assert r.choose("answer").agent == "single", "pair has 1.5 per replica, single 1"
    r.started("single")
    route = r.choose("answer")
    assert route is not None and route.agent == "pair" and "over 2" in route.reason


def test_per_capability_strategy_overrides_the_network_default() -> None:
    r = router(
        card("cheap", price=0.0001, quality=0.9, caps=("answer", "check")),
        card("idle", price=0.01, quality=0.9, caps=("answer", "check")),
        strategy="cheapest",
        per_capability={"check": "load"},
    )
    r.started("cheap")
    assert r.choose("answer").agent == "cheap"
    assert r.choose("check").agent == "idle"


# --------------------------------------------------------------------------- cascade


def test_cascade_starts_at_the_lowest_tier_and_escalates_tier_by_tier_then_to_the_manager() -> None:
    r = router(
        card("small", tier=0, price=0.0001),
        card("small2", tier=0, price=0.0002),
        card("medium", tier=1, price=0.001),
        card("boss", tier=0, price=0.01),
        strategy="cascade",
        manager="boss",
    )
    first = r.choose("answer")
    assert first is not None and first.agent == "small" and first.tier == 0
    nxt = r.escalation("answer", "small")
    assert nxt is not None and nxt.agent == "medium"
    assert "from tier 0 to tier 1" in nxt.reason
    top = r.escalation("answer", "medium")
    assert top is not None and top.agent == "boss" and "the manager" in top.reason
    assert r.escalation("answer", "boss") is None


# --------------------------------------------------------------------------- budgets


def test_routing_prefers_agents_the_budget_can_pay_for() -> None:
    r = router(card("cheap", price=0.001, quality=0.5), card("good", price=0.01, quality=0.9))
    cap = BudgetCap("run", max_cost_usd=0.005)

    def afford(cost: float, tokens: int) -> bool:
        return cap.shortfall(cost, tokens) is None

    route = r.choose("answer", required_confidence=0.8, afford=afford)
    # good: 1100 default tokens x $0.01/1k = $0.011 > $0.005
    assert route is not None and route.agent == "cheap" and "over budget" in route.reason


def test_budget_cap_counts_calls_in_flight_and_names_the_cap() -> None:
    cap = BudgetCap("network", max_cost_usd=0.01, max_tokens=1000)
    holds = hold_all([cap], 0.004, 100, "the next call to a")
    cap.charge(Usage(cost_usd=0.003, prompt_tokens=50, completion_tokens=40))
    with pytest.raises(RunLimitExceeded, match=r"network_max_cost_usd=0\.01") as info:
        hold_all([cap], 0.004, 100, "the next call to b")  # 0.003 + 0.004 held + 0.004
    assert "not started" in str(info.value) and "the next call to b" in str(info.value)
    assert info.value.spent == pytest.approx(0.003)
    for hold in holds:
        hold.release()
    hold_all([cap], 0.004, 100, "the next call to b")
    with pytest.raises(RunLimitExceeded, match="network_max_tokens=1000"):
        hold_all([cap], 0.0, 2000, "a long call")


def test_charging_past_a_cap_fails_naming_it_and_the_spend() -> None:
    cap = BudgetCap("run", max_cost_usd=0.001)
    with pytest.raises(RunLimitExceeded, match=r"max_cost_usd=0.001 reached \(spent 0.002\)"):
        cap.charge(Usage(cost_usd=0.002))


# --------------------------------------------------------------------------- auctions


def bid_env(request_id: str, sender: str, agent: str, **bid: Any) -> Envelope:
    bid.setdefault("price_usd", 0.001)
    bid.setdefault("confidence", 0.8)
    return Envelope(sender=sender, parent_id=request_id, payload=Bid(agent=agent, **bid))


def test_bid_book_ignores_late_bids_and_bids_from_strangers() -> None:
    book = BidBook("req", deadline=10.0, expected={"a": {"a-1"}, "b": {"b-1"}})
    assert book.offer(bid_env("req", "a-1", "a"), at=9.0)
    assert not book.offer(bid_env("req", "b-1", "b", price_usd=0.0), at=10.5), "late"
    assert not book.offer(bid_env("req", "mallory", "b", price_usd=0.0), at=9.5), "not b's replica"
    assert not book.offer(bid_env("other-auction", "b-1", "b"), at=9.0), "another auction"
    assert book.late == ["b"]
    assert book.rejected == ["mallory: not a live replica of 'b'"]
    assert list(book.offers) == ["a"] and book.silent == ["b"] and not book.complete
    assert book.offer(bid_env("req", "b-1", "b"), at=9.9)
    assert book.complete


def test_auction_awards_by_price_per_expected_quality_plus_wait() -> None:
    r = router(card("a"), card("b"), card("c"), strategy="auction")
    book = BidBook("req", 10.0, {"a": {"a-1"}, "b": {"b-1"}, "c": {"c-1"}})
    book.offer(bid_env("req", "a-1", "a", price_usd=0.0010, confidence=0.5), 1.0)  # 0.0020
    book.offer(bid_env("req", "b-1", "b", price_usd=0.0015, confidence=0.9), 1.0)  # 0.00167
    book.offer(bid_env("req", "c-1", "c", price_usd=0.0001, confidence=0.3), 1.0)  # below 0.4
    scored = score_bids(r, RouteRequest("answer", required_confidence=0.4), book)
    assert [s.agent for s in scored] == ["b", "a", "c"]
    assert not scored[-1].eligible and "0.30 < 0.40" in scored[-1].why
    # b is busy: 8 tasks ahead at concurrency 1, 1 s each, at $0.0001 a second of wait
    r.queues["b"] = QueueStats(service_s=1.0, samples=1)
    busy = BidBook("req", 10.0, {"a": {"a-1"}, "b": {"b-1"}})
    busy.offer(bid_env("req", "a-1", "a", price_usd=0.0010, confidence=0.5), 1.0)
    busy.offer(bid_env("req", "b-1", "b", price_usd=0.0015, confidence=0.9, queue=8), 1.0)
    scored = score_bids(r, RouteRequest("answer", required_confidence=0.4), busy)
    assert [s.agent for s in scored] == ["a", "b"] and scored[1].wait_s == 8.0
    # a deadline it cannot meet makes a bid ineligible
    scored = score_bids(r, RouteRequest("answer", task_timeout_s=5.0), busy)
    assert not scored[-1].eligible and "cannot finish within 5s" in scored[-1].why


def test_bids_are_discounted_by_the_bidders_record() -> None:
    r = router(card("boaster"), card("honest"), strategy="auction")
    for _ in range(20):
        r.observe_outcome("boaster", "answer", correct=False)
    book = BidBook("req", 10.0, {"boaster": {"boaster-1"}, "honest": {"honest-1"}})
    book.offer(bid_env("req", "boaster-1", "boaster", price_usd=0.001, confidence=0.99), 1.0)
    book.offer(bid_env("req", "honest-1", "honest", price_usd=0.002, confidence=0.8), 1.0)
    scored = score_bids(r, RouteRequest("answer", required_confidence=0.6), book)
    assert scored[0].agent == "honest"
    assert scored[1].quality < 0.2


def test_default_bid_prices_the_requested_tokens_at_the_cards_prices() -> None:
    request = BidRequest(capability="answer", prompt_tokens=1000, completion_tokens=500)
    bid = make_bid(card("a", price=0.002, quality=0.6), request, queue=3, concurrency=2)
    assert bid is not None
    assert bid.price_usd == pytest.approx(0.003)
    assert (bid.confidence, bid.queue, bid.concurrency) == (0.6, 3, 2)
    other = BidRequest(capability="translate")
    assert make_bid(card("a"), other, queue=0, concurrency=1) is None


async def test_auction_awards_on_time_with_a_silent_agent() -> None:
    net = network(
        [
            {"name": "pricey", "capabilities": ["answer"], "model": "p", "quality": 0.8},
            {"name": "thrifty", "capabilities": ["answer"], "model": "t", "quality": 0.8},
        ],
        {"p": lambda r: "from pricey", "t": lambda r: "from thrifty"},
        prices={"p": 0.01, "t": 0.001},
        routing={"strategy": "auction", "bid_timeout_s": 0.2},
    )
    async with net:
        # a card with no agent behind it: it never bids (and would never answer)
        net.registry.observe(card("ghost", price=0.0, quality=0.99))
        result = await net.ask("who wins?")
    assert result.answer == "from thrifty"
    (route,) = decisions(result, "route")
    assert route["strategy"] == "auction" and route["agent"] == "thrifty"
    assert route["silent"] == ["ghost"]
    assert [b["agent"] for b in route["bids"]] == ["thrifty", "pricey"]
    assert "2 of 3 agent(s) bid within 0.2s" in route["reason"]
    kinds = [e.kind for e in result.envelopes]
    assert kinds.count("bid_request") == 1 and kinds.count("bid") == 2, "bids are in the record"


async def test_auction_closes_as_soon_as_every_replica_has_bid() -> None:
    net = network(
        [{"name": "solo", "capabilities": ["answer"], "model": "s", "replicas": 2}],
        {"s": lambda r: "ok"},
        routing={"strategy": "auction", "bid_timeout_s": 30},
        limits={"wall_time_s": 10},
    )
    async with net:
        result = await net.ask("quick")  # would hit wall_time_s if it waited for the deadline
    assert result.answer == "ok"
    (route,) = decisions(result, "route")
    assert route["silent"] == [] and "1 of 1 agent(s)" in route["reason"]


# --------------------------------------------------------------------------- cascades


def by_difficulty(name: str, low: float = 0.3, high: float = 0.9) -> Handler:
    def handler(request: ModelRequest) -> str:
        confidence = low if "hard" in request.prompt_text else high
        return f"{name} answers\nCONFIDENCE: {confidence}"

    return handler


CASCADE_AGENTS = [
    {"name": "small", "capabilities": ["answer"], "model": "s", "tier": 0},
    {"name": "large", "capabilities": ["answer"], "model": "l", "tier": 1},
]


async def test_cascade_escalates_on_low_confidence_and_not_on_high() -> None:
    net = network(
        CASCADE_AGENTS,
        {"s": by_difficulty("small"), "l": by_difficulty("large", low=0.95)},
        prices={"s": 0.0001, "l": 0.01},
        routing={"strategy": "cascade", "escalate_below": 0.6},
    )
    async with net:
        easy = await net.ask("an easy one")
        hard = await net.ask("a hard one")
    assert easy.answer == "small answers"
    assert (easy.step("answer").agent, easy.step("answer").tier) == ("small", 0)
    assert decisions(easy, "escalate") == []
    assert decisions(easy, "answered")[0]["reason"] == "confidence 0.90 >= 0.60"

    assert hard.answer == "large answers"
    step = hard.step("answer")
    assert (step.agent, step.tier) == ("large", 1)
    assert [(c.agent, c.tier) for c in step.calls] == [("small", 0), ("large", 1)]
    (escalate,) = decisions(hard, "escalate")
    assert escalate["from_agent"] == "small" and escalate["to_agent"] == "large"
    assert escalate["confidence"] == 0.3 and escalate["threshold"] == 0.6
    (answered,) = decisions(hard, "answered")
    assert answered["agent"] == "large" and answered["tier"] == 1
    assert hard.usage.calls == 2 and hard.usage.cost_usd > easy.usage.cost_usd


async def test_cascade_climbs_to_the_manager_after_the_last_tier() -> None:
    net = network(
        [
            {"name": "swarm-a", "capabilities": ["answer"], "model": "a", "tier": 0},
            {"name": "swarm-b", "capabilities": ["answer"], "model": "b", "tier": 0},
            {"name": "manager", "capabilities": ["answer"], "model": "m", "tier": 0},
        ],
        {"a": by_difficulty("a"), "b": by_difficulty("b"), "m": by_difficulty("manager", 0.8)},
        prices={"a": 0.0001, "b": 0.0002, "m": 0.01},
        routing={"strategy": "cascade", "manager": "manager"},
    )
    async with net:
        result = await net.ask("a hard one")
    assert result.answer == "manager answers"
    assert [c.agent for c in result.step("answer").calls] == ["swarm-a", "manager"]
    assert "to the manager" in decisions(result, "escalate")[0]["reason"]


async def test_cascade_step_required_confidence_raises_the_threshold() -> None:
    net = network(
        CASCADE_AGENTS,
        {"s": by_difficulty("small", high=0.7), "l": by_difficulty("large")},
        routing={"strategy": "cascade", "escalate_below": 0.5},
    )
    plan = Plan(steps=[Step(id="s", capability="answer", instruction="x", required_confidence=0.8)])
    async with net:
        result = await net.ask("an easy one", plan=plan)
    assert result.answer == "large answers"
    assert decisions(result, "escalate")[0]["threshold"] == 0.8


async def test_cascade_does_not_escalate_beyond_the_budget() -> None:
    net = network(
        CASCADE_AGENTS,
        {"s": by_difficulty("small"), "l": by_difficulty("large")},
        prices={"s": 0.0001, "l": 1.0},
        routing={"strategy": "cascade"},
        limits={"max_cost_usd": 0.01},
    )
    async with net:
        result = await net.ask("a hard one")
    assert result.status == "ok" and result.answer == "small answers"
    assert decisions(result, "escalation_skipped")[0]["to_agent"] == "large"
    assert "does not fit the budget" in decisions(result, "answered")[0]["reason"]


async def test_cascade_keeps_the_lower_tier_answer_when_the_higher_tier_fails() -> None:
    def broken(request: ModelRequest) -> str:
        raise RuntimeError("large model down")

    net = network(
        CASCADE_AGENTS,
        {"s": by_difficulty("small"), "l": broken},
        routing={"strategy": "cascade"},
    )
    async with net:
        result = await net.ask("a hard one")
    assert result.answer == "small answers"
    assert (result.step("answer").agent, result.step("answer").tier) == ("small", 0)
    assert "kept the lower tier's answer" in decisions(result, "answered")[0]["reason"]


# --------------------------------------------------------------------------- budgets end to end


async def test_parallel_steps_wait_for_room_instead_of_overspending_the_run_cap() -> None:
    async def answer(request: ModelRequest) -> str:
        await asyncio.sleep(0.01)  # the model's latency: calls overlap unless held back
        return "done"

    plan = Plan(
        steps=[
            Step(id="a", capability="answer", instruction="do a"),
            Step(id="b", capability="answer", instruction="do b"),
        ]
    )
    overlap = {}
    for cap in (None, 0.01):  # a call may cost up to ~$0.016: the first reserves all of it
        net = network(
            [{"name": "worker", "capabilities": ["answer"], "model": "w"}],
            {"w": answer},
            prices={"w": 0.01},
            limits={"max_cost_usd": cap},
        )
        async with net:
            result = await net.ask("x", plan=plan)
        assert result.status == "ok" and result.usage.cost_usd <= (cap or 1)
        overlap[cap] = net.models["w"].max_in_flight  # type: ignore[attr-defined]
    assert overlap == {None: 2, 0.01: 1}


async def test_a_call_never_answered_keeps_its_reservation_and_the_next_is_refused() -> None:
    async def silent(request: ModelRequest) -> str:
        await asyncio.Event().wait()
        return ""

    net = network(
        [{"name": "worker", "capabilities": ["answer"], "model": "w"}],
        {"w": silent},
        prices={"w": 0.01},
        limits={"max_cost_usd": 0.0045, "step_timeout_s": 0.2, "step_retries": 1},
    )
    async with net:
        with pytest.raises(RunLimitExceeded, match=r"max_cost_usd=0\.0045") as info:
            await net.ask("x")
    # the lost call may still be answered and billed: its reservation is not handed on
    assert "plus calls in flight" in str(info.value) and "not started" in str(info.value)
    assert len(net.models["w"].requests) == 1  # type: ignore[attr-defined]


async def test_network_cost_cap_holds_across_runs() -> None:
    net = network(
        [{"name": "worker", "capabilities": ["answer"], "model": "w"}],
        {"w": lambda r: "done"},
        prices={"w": 0.01},
        limits={"network_max_cost_usd": 0.008},
    )
    ok = 0
    async with net:
        with pytest.raises(RunLimitExceeded, match=r"network_max_cost_usd=0\.008") as info:
            for i in range(20):
                await net.ask(f"job {i}")
                ok += 1
        assert net.orchestrator is not None
        budget = net.orchestrator.budget
    assert ok >= 1
    assert budget.spent_usd <= 0.008
    assert info.value.run.usage.cost_usd == 0, "the refused run started nothing"
    assert f"spent ${budget.spent_usd:.6f}" in str(info.value)


async def test_token_cap_bounds_the_answer_and_refuses_a_prompt_that_cannot_fit() -> None:
    net = network(
        [{"name": "worker", "capabilities": ["answer"], "model": "w"}],
        {"w": lambda r: "word " * 400},  # ~500 tokens if not cut
        limits={"max_tokens": 100},
    )
    async with net:
        result = await net.ask("short")
    assert result.status == "ok" and result.usage.total_tokens <= 100
    request = net.models["w"].requests[0]  # type: ignore[attr-defined]
    assert request.max_tokens is not None and request.max_tokens < 100
    task = next(e.payload for e in result.envelopes if e.kind == "task")
    assert task.budget.max_tokens == 100  # type: ignore[union-attr]

    net = network(
        [{"name": "worker", "capabilities": ["answer"], "model": "w"}],
        {"w": lambda r: "done"},
        limits={"max_tokens": 20},  # less than the prompt template alone
    )
    async with net:
        with pytest.raises(RunLimitExceeded, match="max_tokens=20") as info:
            await net.ask("short")
    assert "worker's prompt needs at least" in str(info.value)
    assert info.value.run.usage.total_tokens == 0
    assert not net.models["w"].requests  # type: ignore[attr-defined]


def test_routing_config_names_unknown_manager() -> None:
    with pytest.raises(ConfigError, match=r"routing\.manager 'boss' is not an agent"):
        Network.from_dict(
            {
                "models": {"m": {"spec": "sim:1b"}},
                "agents": [{"name": "a", "capabilities": ["answer"], "model": "m"}],
                "routing": {"manager": "boss"},
            }
        )


async def test_a_cancelled_call_is_no_longer_counted_in_flight() -> None:
    async def slow(request: ModelRequest) -> str:
        await asyncio.Event().wait()
        return ""

    def broken(request: ModelRequest) -> str:
        raise RuntimeError("down")

    net = network(
        [
            {"name": "slow", "capabilities": ["research"], "model": "s"},
            {"name": "broken", "capabilities": ["write"], "model": "b"},
        ],
        {"s": slow, "b": broken},
        limits={"step_retries": 0},
    )
    plan = Plan(
        steps=[
            Step(id="r", capability="research", instruction="x"),
            Step(id="w", capability="write", instruction="y"),
        ]
    )
    async with net:
        with pytest.raises(StepFailed):
            await net.ask("x", plan=plan)
        assert net.router.in_flight == {"slow": 0, "broken": 0}
        assert net.orchestrator is not None and net.orchestrator.budget.held_usd == 0


# --------------------------------------------------------------------------- feedback


async def test_critic_scores_during_a_run_lower_the_authors_observed_quality() -> None:
    net = network(
        [
            {"name": "writer", "capabilities": ["write"], "model": "w", "quality": 0.8},
            {"name": "critic", "capabilities": ["critique"], "model": "c"},
        ],
        {
            "w": lambda r: "a draft\nCONFIDENCE: 0.9",
            "c": lambda r: '{"score": 0.1, "accepted": true}',
        },
    )
    async with net:
        result = await net.ask("write something")
        (view,) = net.registry.agents("write")
        quality = net.router.expected_quality(view, "write")
    assert result.step("answer").critiques[0]["score"] == 0.1
    # prior 0.8 x 3, self-report 0.9 x 0.5, critic 0.1 x 1: (2.4 + 0.45 + 0.1) / 4.5
    assert quality == pytest.approx((2.4 + 0.45 + 0.1) / 4.5, rel=0.01)  # less a little decay
    assert net.router.stats[("writer", "write")].quality_weight == pytest.approx(1.5, rel=0.01)


async def test_feedback_moves_routing_away_from_an_agent_whose_answers_fail_checks() -> None:
    net = network(
        [
            {"name": "cheap", "capabilities": ["answer"], "model": "c", "quality": 0.9},
            {"name": "dear", "capabilities": ["answer"], "model": "d", "quality": 0.9},
        ],
        {"c": lambda r: "from cheap", "d": lambda r: "from dear"},
        prices={"c": 0.0001, "d": 0.001},
        routing={"required_confidence": 0.75},
    )
    async with net:
        first = await net.ask("q0")
        assert first.answer == "from cheap"
        applied = net.feedback(first, ok=False)
        assert applied == [{"step": "answer", "agent": "cheap", "capability": "answer"}]
        assert {"name": "feedback", "ok": False, **applied[0]} in first.decisions
        # 0.9 x 3 prior and one failed check x 2 (the reply stated no confidence): 2.7 / 5
        second = await net.ask("q1")
        assert second.answer == "from dear"
        net.feedback(second.run_id, ok=True)  # by run id: resolved from the ledger
        (entry,) = net.ledger.decisions(second.run_id, "feedback")
        (cheap, dear) = sorted(net.registry.agents("answer"), key=lambda v: v.name)
        assert net.router.expected_quality(cheap, "answer") < 0.6
        assert net.router.expected_quality(dear, "answer") > 0.9
    assert entry.data == {"ok": True, "step": "answer", "agent": "dear", "capability": "answer"}


async def test_feedback_credits_the_agent_whose_answer_the_cascade_kept() -> None:
    net = network(
        CASCADE_AGENTS,
        {"s": by_difficulty("small"), "l": by_difficulty("large", low=0.95)},
        routing={"strategy": "cascade"},
    )
    async with net:
        hard = await net.ask("a hard one")
        (target,) = net.feedback(hard, ok=True, step="answer")
        with pytest.raises(ConfigError, match="no step 'nope' was routed in this run"):
            net.feedback(hard, ok=True, step="nope")
        with pytest.raises(ConfigError, match="no run 'run-missing'"):
            net.feedback("run-missing", ok=True)
    assert target["agent"] == "large"
    assert net.router.stats[("large", "answer")].quality_weight > 2.0


def test_answering_agents_are_the_synthesis_else_the_plans_sinks() -> None:
    plan = {
        "steps": [
            {"id": "a", "capability": "research"},
            {"id": "b", "capability": "write", "depends_on": ["a"]},
            {"id": "c", "capability": "write"},
        ]
    }
    decisions: list[dict[str, Any]] = [
        {"name": "route", "step": "plan", "capability": "plan", "agent": "planner"},
        {"name": "plan", "plan": plan},
        {"name": "route", "step": "a", "capability": "research", "agent": "r1"},
        {"name": "route", "step": "b", "capability": "write", "agent": "w1"},
        {"name": "route", "step": "b", "capability": "critique", "agent": "critic"},
        {"name": "route", "step": "b", "capability": "write", "agent": "w2"},  # refined
        {"name": "route", "step": "c", "capability": "write", "agent": "w1"},
        {"name": "input_request", "step": "c"},
        {"name": "route", "step": "c.ask9", "capability": "research", "agent": "r1"},
    ]
    sinks = answering_agents(decisions)
    assert [(t["step"], t["agent"]) for t in sinks] == [("b", "w2"), ("c", "w1")]
    no_plan = [d for d in decisions if d["name"] != "plan"]
    assert [t["step"] for t in answering_agents(no_plan)] == ["a", "b", "c"]
    synth = [*decisions, {"name": "route", "step": "synthesis", "capability": "s", "agent": "x"}]
    assert answering_agents(synth) == [{"step": "synthesis", "agent": "x", "capability": "s"}]


def test_the_routing_names_users_need_import_from_their_modules() -> None:
    import importlib

    for module, name in (
        ("rede.routing.budget", "BudgetCap"),
        ("rede.protocol.messages", "Bid"),
        ("rede.protocol.messages", "BidRequest"),
        ("rede.scaling.spawner", "Spawner"),
        ("rede.agents.confidence", "AgreementSpecialist"),
        ("rede.routing.router", "RouteRequest"),
        ("rede.config", "RoutingConfig"),
        ("rede.config", "SpawnConfig"),
        ("rede.config", "SpawnTemplate"),
        ("rede.config", "ConfidenceConfig"),
    ):
        assert getattr(importlib.import_module(module), name) is not None


async def test_auction_without_bids_can_route_to_an_agent_that_joined_while_bidding() -> None:
    r = router(card("quiet", price=0.01), strategy="auction", bid_timeout_s=0.05)

    def joins(env: Envelope) -> None:  # the call for bids goes out; a cheaper agent appears
        r.registry.observe(card("newcomer", price=0.001))

    bus = MemoryBus()
    try:
        route = await run_auction(r, bus, RouteRequest("answer", on_sent=joins))
    finally:
        await bus.aclose()
    assert route is not None and route.agent == "newcomer"
    assert route.strategy == "auction"
    assert route.reason.startswith("no bids within 0.05s from 1 agent(s); cheapest")
    assert route.details["silent"] == ["quiet"]
