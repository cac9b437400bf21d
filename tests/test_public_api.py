"""The public surface: the names `rede` exports, tools as plain functions, ask_sync."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

import rede
from rede import (
    ConfigError,
    Network,
    Plan,
    RedeError,
    ScriptedModel,
    Step,
    StepFailed,
    UnknownStep,
    tool,
)


def test_the_public_surface_is_small_and_every_name_imports() -> None:
    assert len(rede.__all__) <= 25
    for name in rede.__all__:
        assert getattr(rede, name) is not None


def planner_free(**extra: object) -> dict[str, object]:
    return {
        "name": "tools",
        "models": {"m": {"spec": "sim:7b"}},
        "agents": [{"name": "writer", "capabilities": ["write"], "model": "m"}],
        **extra,
    }


@tool
def add(a: float, b: float = 1.0) -> float:
    """Add two numbers."""
    return a + b


class Total(BaseModel):
    total: int


@tool(capability="count")
async def count_words(text: str) -> Total:
    await asyncio.sleep(0)
    return Total(total=len(text.split()))


async def test_typed_tools_get_their_arguments_from_the_instruction() -> None:
    net = Network.from_dict(planner_free(), tools=[add, count_words])
    names = {a.name: a.capabilities for a in net.config.agents}
    assert names["add"] == ["add"] and names["count_words"] == ["count"]
    plan = Plan(
        steps=[
            Step(id="sum", capability="add", instruction='Add these: {"a": 2, "b": 3.5}'),
            Step(id="words", capability="count", instruction="one two three"),
        ]
    )
    async with net:
        result = await net.ask("tools please", plan=plan)
    assert result.step("sum").output == "5.5"
    assert result.step("words").output == '{"total":3}'
    assert add(1, 2) == 3  # a tool is still the function


async def test_bad_tool_arguments_fail_the_step_naming_the_parameters() -> None:
    net = Network.from_dict(planner_free(), tools=[add])
    plan = Plan(steps=[Step(id="sum", capability="add", instruction='{"a": "two"}')])
    async with net:
        with pytest.raises(StepFailed) as caught:
            await net.ask("go", plan=plan)
    assert "tool 'add' arguments (a, b)" in str(caught.value)
    assert "a:" in str(caught.value) or "'a'" in str(caught.value)


def test_a_tool_named_like_an_agent_is_refused() -> None:
    @tool(name="writer")
    def clash(text: str) -> str:
        return text

    with pytest.raises(ConfigError, match="already has an agent 'writer'"):
        Network.from_dict(planner_free(), tools=[clash])


def test_an_agent_can_name_a_given_tool() -> None:
    conf = planner_free(agents=[{"name": "calc", "capabilities": ["sum"], "tool": "add"}])
    net = Network.from_dict(conf, tools=[add])
    assert [a.name for a in net.config.agents] == ["calc"]


def test_ask_sync_runs_a_network_without_async_code() -> None:
    net = Network.from_dict(
        planner_free(), models={"m": ScriptedModel(lambda r: "done\nCONFIDENCE: 0.9")}
    )
    result = net.ask_sync("write something")
    assert result.answer == "done" and result.status == "ok"


async def test_ask_sync_inside_an_event_loop_says_what_to_do() -> None:
    net = Network.from_dict(planner_free())
    with pytest.raises(RedeError, match=r"await net\.ask"):
        net.ask_sync("write")


def test_an_unknown_step_id_is_a_clear_error() -> None:
    plan = Plan(steps=[Step(id="a", capability="write", instruction="x")])
    with pytest.raises(UnknownStep, match=r"no step 'b' in the plan; steps: a"):
        plan.step("b")
    with pytest.raises(KeyError):  # also a KeyError, for code that catches those
        plan.step("b")
