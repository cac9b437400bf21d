"""What the cheaper hop keeps: events reach whoever listens, the plan loop's shapes behave."""

from __future__ import annotations

import pytest

from rede.bus import MemoryBus
from rede.errors import StepFailed
from rede.models import ModelRequest, ScriptedModel
from rede.network import Network
from rede.orchestration.plan import Plan, Step
from rede.protocol.messages import Envelope, Event
from rede.protocol.topics import Topic


def zero_network(handler: object = None, on_step_failure: str = "replan") -> Network:
    model = ScriptedModel(handler or (lambda request: "ok"), name="zero")  # type: ignore[arg-type]
    return Network.from_dict(
        {
            "models": {"zero": {"spec": "sim:7b"}},
            "agents": [{"name": "worker", "capabilities": ["work"], "model": "zero"}],
            "limits": {"step_timeout_s": 10},
            "on_step_failure": on_step_failure,
        },
        models={"zero": model},
    )


CHAIN = Plan(
    steps=[
        Step(id="a", capability="work", instruction="a"),
        Step(id="b", capability="work", instruction="b", depends_on=["a"]),
        Step(id="c", capability="work", instruction="c", depends_on=["b"]),
    ]
)
FAN = Plan(
    steps=[
        *(Step(id=f"p{i}", capability="work", instruction=f"p{i}") for i in range(3)),
        Step(id="join", capability="work", instruction="join", depends_on=["p0", "p1", "p2"]),
    ]
)


async def test_the_memory_bus_knows_whether_a_topic_is_listened_to() -> None:
    async with MemoryBus() as bus:
        events = Topic.events()
        assert not bus.listened(events)
        fan = await bus.subscribe(events)
        assert bus.listened(events)
        await fan.aclose()
        assert not bus.listened(events)
        group = await bus.subscribe(events, group="g")
        await group.aclose()
        assert bus.listened(events)  # a group keeps receiving what is published meanwhile
        await bus.publish(events, Envelope(sender="t", payload=Event(name="x")))
        again = await bus.subscribe(events, group="g")
        assert (await again.receive(timeout=1)).envelope.payload.name == "x"  # type: ignore[union-attr]


async def test_events_reach_an_observer_when_no_one_subscribes_on_the_bus() -> None:
    seen: list[tuple[str, object]] = []
    net = zero_network()
    async with net:
        result = await net.ask(
            "go", plan=CHAIN, observer=lambda e: seen.append((e.name, e.data.get("step")))
        )
        assert net.bus is not None and not net.bus.listened(Topic.events())
    assert result.status == "ok"
    assert seen[0] == ("run_started", None) and seen[-1] == ("run_finished", None)
    assert [s for name, s in seen if name == "step_finished"] == ["a", "b", "c"]
    assert ("plan_ready", None) in seen


async def test_a_chain_runs_in_order_and_a_fan_out_concurrently() -> None:
    order: list[str] = []

    def handler(request: ModelRequest) -> str:
        order.append(request.metadata["instruction"])
        return "ok"

    net = zero_network(handler)
    async with net:
        chain = await net.ask("go", plan=CHAIN)
        fan = await net.ask("go", plan=FAN)
    assert order[:3] == ["a", "b", "c"] and order[-1] == "join"
    assert chain.answer == "ok" and fan.answer == "ok"
    ended = {r.id: r.ended_at for r in fan.steps}
    started = {r.id: r.started_at for r in fan.steps}
    assert all(started["join"] >= ended[f"p{i}"] for i in range(3))  # type: ignore[operator]


async def test_a_failing_link_of_a_chain_ends_the_run_under_fail() -> None:
    def handler(request: ModelRequest) -> str:
        if request.metadata["instruction"] == "b":
            raise RuntimeError("b broke")
        return "ok"

    net = zero_network(handler, on_step_failure="fail")
    async with net:
        with pytest.raises(StepFailed, match="b broke") as info:
            await net.ask("go", plan=CHAIN)
    assert [r.id for r in info.value.run.steps] == ["a", "b"]  # type: ignore[union-attr]
