"""Many runs at once from one process: none is lost and each gets its own answer.

Scripted models answer at once and echo the run's request, so a run answered with another
run's result would fail as surely as a lost one. (``benchmarks/many_runs.py`` measures the
same with 1,000 runs.)"""

from __future__ import annotations

import asyncio
from typing import Any

from rede.bus import Bus
from rede.models import ModelRequest, ScriptedModel
from rede.network import Network
from rede.orchestration.plan import Plan, Step


def echo(request: ModelRequest) -> str:
    return f"answer to {request.metadata.get('request', '')}"


def network(bus: Bus | str = "memory://") -> Network:
    return Network.from_dict(
        {
            "name": "many",
            "models": {"m": {"spec": "sim:7b"}},
            "agents": [{"name": "worker", "capabilities": ["work"], "model": "m"}],
            "limits": {"max_steps": 100},
        },
        bus=bus,
        models={"m": ScriptedModel(echo, name="m")},
    )


def chain(n: int) -> Plan:
    return Plan(
        steps=[
            Step(
                id=f"s{i}",
                capability="work",
                instruction=f"part {i}",
                depends_on=[f"s{i - 1}"] if i else [],
            )
            for i in range(n)
        ]
    )


async def ask_all(net: Network, runs: int, plan: Plan) -> list[Any]:
    return await asyncio.gather(
        *(net.ask(f"q{i}", plan=plan) for i in range(runs)), return_exceptions=True
    )


def check(results: list[Any]) -> None:
    failed = [r for r in results if isinstance(r, BaseException) or r.status != "ok"]
    assert not failed, f"{len(failed)} of {len(results)} runs failed, first: {failed[0]!r}"
    assert [r.answer for r in results] == [f"answer to q{i}" for i in range(len(results))]
    assert len({r.run_id for r in results}) == len(results)


async def test_300_concurrent_runs_all_complete_each_with_its_own_answer() -> None:
    net = network()
    async with net:
        results = await ask_all(net, 300, chain(2))
        check(results)
        assert all(len(r.steps) == 2 for r in results)
        # the runs shared one reply topic, gone with the last run
        assert not [k for k in net.bus._streams if k.startswith("rede.reply.")]  # type: ignore[union-attr]


async def test_150_concurrent_runs_on_redis_do_not_exhaust_its_connections(redis_server) -> None:
    # a reply topic and a blocking reader per run took a Redis connection each: at 150 runs
    # the pool ran out, the registry's reader could not read heartbeats and runs failed
    from rede.bus.redis import RedisBus

    bus = RedisBus(redis_server.url, namespace=redis_server.namespace())
    net = network(bus)
    try:
        async with net:
            check(await ask_all(net, 150, chain(3)))
    finally:
        await bus.aclose()
