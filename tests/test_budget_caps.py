"""Budget caps hold: whatever the plan, the prices and the caps, no run and no network of runs
spends past a cap, whether the run succeeds or stops with ``RunLimitExceeded``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from rede.errors import RunLimitExceeded
from rede.models import ModelRequest, Price, ScriptedModel
from rede.network import Network
from rede.orchestration.plan import Plan, Step
from rede.orchestration.run import RunResult


@dataclass(frozen=True)
class Agent:
    price_in: float
    price_out: float
    words: int
    """How long its answers are (``word `` is 1.25 estimated tokens)."""


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    """A DAG of 1-5 steps: each depends on a random subset of the earlier ones, so plans
    mix parallel and dependent steps."""
    n = draw(st.integers(1, 5))
    steps = []
    for i in range(n):
        earlier = [f"s{j}" for j in range(i)]
        deps = draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else []
        steps.append(
            Step(id=f"s{i}", capability="answer", instruction=f"part {i}", depends_on=deps)
        )
    return Plan(steps=steps)


prices = st.sampled_from([0.0, 0.0001, 0.002, 0.01, 0.05])
agents = st.builds(Agent, prices, prices, st.integers(0, 800))
cost_caps = st.none() | st.floats(0.0, 0.05, allow_nan=False)
token_caps = st.none() | st.integers(1, 6000)


def network(team: list[Agent], limits: dict[str, Any]) -> Network:
    def answer(words: int) -> Any:
        async def handler(request: ModelRequest) -> str:
            await asyncio.sleep(0)  # let parallel steps overlap
            return "word " * words + "\nCONFIDENCE: 0.9"

        return handler

    models = {
        f"m{i}": ScriptedModel(
            answer(a.words),
            name=f"m{i}",
            price=Price(input_per_1k=a.price_in, output_per_1k=a.price_out),
        )
        for i, a in enumerate(team)
    }
    return Network.from_dict(
        {
            "models": {name: {"spec": "sim:7b"} for name in models},
            "agents": [
                {"name": f"agent{i}", "capabilities": ["answer"], "model": name}
                for i, name in enumerate(models)
            ],
            "routing": {"strategy": "cheapest"},
            "heartbeat_s": 0.1,
            "agent_ttl_s": 5,
            "limits": {"step_timeout_s": 10, **limits},
        },
        models=models,
    )


async def run_all(net: Network, plans_: list[Plan]) -> tuple[list[RunResult], float, int]:
    async with net:
        outcomes = await asyncio.gather(
            *(net.ask(f"job {i}", plan=p) for i, p in enumerate(plans_)), return_exceptions=True
        )
        assert net.orchestrator is not None
        budget = net.orchestrator.budget
        assert budget.held_usd <= 1e-12 and budget.held_tokens == 0, "a reservation leaked"
        spent = budget.spent_usd, budget.spent_tokens
    runs = []
    for outcome in outcomes:
        if isinstance(outcome, RunLimitExceeded):
            assert outcome.run is not None
            runs.append(outcome.run)
        else:
            assert isinstance(outcome, RunResult), repr(outcome)
            assert outcome.status == "ok", outcome.error
            runs.append(outcome)
    return runs, *spent


@given(
    team=st.lists(agents, min_size=1, max_size=3),
    jobs=st.lists(plans(), min_size=1, max_size=3),
    max_cost=cost_caps,
    max_tokens=token_caps,
    net_cost=cost_caps,
    net_tokens=token_caps,
)
def test_no_run_and_no_network_spends_past_a_cap(
    team: list[Agent],
    jobs: list[Plan],
    max_cost: float | None,
    max_tokens: int | None,
    net_cost: float | None,
    net_tokens: int | None,
) -> None:
    limits = {
        "max_cost_usd": max_cost,
        "max_tokens": max_tokens,
        "network_max_cost_usd": net_cost,
        "network_max_tokens": net_tokens,
    }
    runs, spent_usd, spent_tokens = asyncio.run(run_all(network(team, limits), jobs))
    for run in runs:
        assert max_cost is None or run.usage.cost_usd <= max_cost
        assert max_tokens is None or run.usage.total_tokens <= max_tokens
    total_usd = sum(r.usage.cost_usd for r in runs)
    total_tokens = sum(r.usage.total_tokens for r in runs)
    assert total_tokens == spent_tokens
    assert net_cost is None or (total_usd <= net_cost and spent_usd <= net_cost)
    assert net_tokens is None or total_tokens <= net_tokens
