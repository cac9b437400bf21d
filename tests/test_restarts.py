"""Agents that are being restarted: a kill from outside is no crash loop, a supervisor says an
agent is coming back, and a step whose only agent is restarting waits for it (within the
run's deadline) instead of failing at the step timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rede import Network
from rede.errors import StepFailed
from rede.models.scripted import ScriptedModel
from rede.orchestration.plan import Plan, Step
from rede.protocol.messages import AgentCard, Event
from rede.protocol.topics import Topic
from rede.runtime.registry import Registry, restarting
from rede.scaling.restarts import Backoff, killed_from_outside

PLAN = Plan(steps=[Step(id="s", capability="research", instruction="look")])


def test_a_kill_from_outside_is_no_crash_loop() -> None:
    backoff = Backoff(initial_s=1, max_s=60, quick_s=10)
    assert [backoff.delay(0.5) for _ in range(3)] == [1, 2, 4]  # a crash loop
    assert backoff.delay(0.5, killed=True) == 1  # SIGKILLed: start again soon, loop over
    assert backoff.quick_exits == 0
    assert [backoff.delay(0.5, killed=True) for _ in range(5)] == [1] * 5  # a kill storm


def test_which_signals_are_kills_from_outside() -> None:
    assert killed_from_outside(-9) and killed_from_outside(-15)  # SIGKILL, SIGTERM
    assert not killed_from_outside(-11)  # SIGSEGV: the process's own crash
    assert not killed_from_outside(1) and not killed_from_outside(0)


def card(name: str, capability: str = "research") -> AgentCard:
    return AgentCard(id=f"{name}-1", name=name, capabilities=[capability], model="m")


def test_the_registry_keeps_a_restart_promise_until_the_agent_is_back() -> None:
    now = [100.0]
    registry = Registry(ttl_s=5, clock=lambda: now[0])
    registry.expect("researcher", ["research"], back_in_s=3, quick_exits=2)
    (promise,) = registry.returning("research")
    assert promise.agent == "researcher" and promise.quick_exits == 2
    assert registry.due_in(promise) == 3 and registry.returning("write") == []
    registry.observe(card("researcher"))
    assert registry.returning("research") == []  # it is back


def test_a_restart_promise_lapses_a_ttl_after_the_time_it_named() -> None:
    now = [100.0]
    registry = Registry(ttl_s=5, clock=lambda: now[0])
    registry.expect("researcher", ["research"], back_in_s=3)
    now[0] += 3 + 5
    assert registry.returning("research")  # overdue, still within a ttl
    now[0] += 0.1
    assert registry.returning("research") == []  # its supervisor is gone too


def network(**limits: Any) -> Network:
    models = {"r": ScriptedModel(lambda request: "found it", name="r")}
    return Network.from_dict(
        {
            "models": {"r": {"spec": "sim:7b"}},
            "agents": [{"name": "researcher", "capabilities": ["research"], "model": "r"}],
            "heartbeat_s": 0.05,
            "agent_ttl_s": 0.3,
            "limits": {"step_timeout_s": 0.2, **limits},
        },
        models=models,
        ledger=None,
    )


async def announce(net: Network, back_in_s: float, quick_exits: int = 0) -> None:
    """What ``rede up``'s supervisor publishes before it starts the agent again."""
    assert net.bus is not None
    env = restarting("supervisor:researcher", "researcher", ["research"], back_in_s, quick_exits)
    await net.bus.publish(Topic.registry(), env)
    await net.registry.wait_for(lambda reg: bool(reg.returning("research")), timeout=5)


async def test_a_step_waits_past_its_timeout_for_an_agent_its_supervisor_restarts() -> None:
    net = network(wall_time_s=30)
    past_the_step_timeout = asyncio.Event()

    def observer(event: Event) -> None:
        if event.name == "waiting_for_agent" and event.data.get("restarting") == "researcher":
            past_the_step_timeout.set()  # the 0.2 s step timeout is over; still waiting

    async with net:
        await net.kill("researcher")
        await net.registry.wait_gone("researcher")
        await announce(net, back_in_s=0.3)
        run = asyncio.create_task(net.ask("look it up", plan=PLAN, observer=observer))
        await past_the_step_timeout.wait()
        assert not run.done()
        net.start_runner(net.spec(net.config.agents[0]))  # the supervisor starts it
        result = await run
    assert result.status == "ok", result.error
    reasons = [d["reason"] for d in result.decisions if d["name"] == "wait_for_agent"]
    assert any("its supervisor starts researcher again" in r for r in reasons), reasons


async def test_a_supervisor_backing_off_past_the_deadline_fails_the_step_saying_so() -> None:
    net = network(wall_time_s=2)
    async with net:
        await net.kill("researcher")
        await net.registry.wait_gone("researcher")
        await announce(net, back_in_s=60, quick_exits=6)
        with pytest.raises(StepFailed) as info:
            await net.ask("look it up", plan=PLAN)
    message = str(info.value)
    assert "its supervisor starts researcher again in" in message
    assert "6 quick exits in a row" in message and "after the run's deadline" in message
