"""Specialists, the registry and the sim backend as units."""

from __future__ import annotations

import json

import pytest

from rede.agents.specialists import NO_CONTEXT, LLMSpecialist, split_confidence
from rede.agents.tools import arithmetic_tool, safe_eval
from rede.models import ModelRequest, ModelResponse, ScriptedModel
from rede.models.sim import SimModel
from rede.protocol.messages import AgentCard, Critique, Result, Task
from rede.runtime.registry import Registry


@pytest.mark.parametrize(
    ("expr", "value"), [("2 + 3 * 4", 14), ("(1 + 2) ** 3", 27), ("-7 // 2", -4), ("10 / 4", 2.5)]
)
def test_safe_eval_computes_arithmetic(expr: str, value: float) -> None:
    assert safe_eval(expr) == value


@pytest.mark.parametrize("expr", ["__import__('os')", "2 ** 10000", "a + 1", "1 +"])
def test_safe_eval_refuses_anything_else(expr: str) -> None:
    with pytest.raises(ValueError):
        safe_eval(expr)


def test_arithmetic_tool_finds_the_expression_in_a_sentence() -> None:
    task = Task(capability="arithmetic", instruction="What is (17 * 23) + 4?")
    assert arithmetic_tool(task) == "(17 * 23) + 4 = 395"


def test_confidence_line_is_parsed_and_removed() -> None:
    assert split_confidence("text\nCONFIDENCE: 0.75") == ("text", 0.75)
    assert split_confidence("no line") == ("no line", None)
    assert split_confidence("x\nconfidence: 3") == ("x\nconfidence: 3", None)


async def test_llm_specialist_uses_logprobs_when_no_confidence_is_reported() -> None:
    class LogprobModel(ScriptedModel):
        async def complete(self, request: ModelRequest) -> ModelResponse:
            resp = await super().complete(request)
            return resp.model_copy(update={"logprobs": [-0.1, -0.1]})

    spec = LLMSpecialist(LogprobModel(lambda r: "an answer"))
    result = await spec.handle(Task(capability="research", instruction="q"), NO_CONTEXT)
    assert isinstance(result, Result)
    assert result.confidence == pytest.approx(0.905, abs=0.001)
    assert result.data == {"confidence_method": "logprobs"}


async def test_invalid_critique_is_an_error_naming_the_field() -> None:
    spec = LLMSpecialist(ScriptedModel(lambda r: json.dumps({"score": 5, "accepted": True})))
    with pytest.raises(ValueError, match="score"):
        await spec.handle(Task(capability="critique", instruction="review"), NO_CONTEXT)
    ok = LLMSpecialist(ScriptedModel(lambda r: '```json\n{"score": 0.8, "accepted": true}\n```'))
    critique = await ok.handle(Task(capability="critique", instruction="review"), NO_CONTEXT)
    assert isinstance(critique, Critique) and critique.accepted


def test_registry_expires_silent_agents_and_groups_replicas() -> None:
    now = [0.0]
    reg = Registry(ttl_s=5, clock=lambda: now[0])
    reg.observe(AgentCard(id="r-1", name="researcher", capabilities=["research"], load=2))
    reg.observe(AgentCard(id="r-2", name="researcher", capabilities=["research"], load=1))
    reg.observe(AgentCard(id="w-1", name="writer", capabilities=["write"]))
    [view] = reg.agents("research")
    assert (view.name, view.replicas, view.load) == ("researcher", 2, 3)
    now[0] = 4.0
    reg.observe(AgentCard(id="r-1", name="researcher", capabilities=["research"]))
    now[0] = 6.0
    assert [c.id for c in reg.cards()] == ["r-1"]
    assert reg.capabilities() == {"research"}


def test_registry_counts_no_silence_while_the_bus_is_unreachable() -> None:
    """No heartbeat can arrive while the bus is down: an outage longer than the TTL expires
    no one, and silence counts again, from where it stood, once the bus is back."""
    now = [0.0]
    reg = Registry(ttl_s=5, clock=lambda: now[0])
    reg.observe(AgentCard(id="r-1", name="researcher", capabilities=["research"]))
    now[0] = 2.0
    reg.bus_reachable(False)
    now[0] = 60.0  # far past the TTL, all of it unreachable
    assert [c.id for c in reg.cards()] == ["r-1"]
    assert reg.expire() == []
    reg.bus_reachable(True)
    now[0] = 62.9  # 2 s before the outage and 2.9 s after: 4.9 s of silence heard
    assert [c.id for c in reg.cards()] == ["r-1"]
    now[0] = 63.1
    assert reg.cards() == []
    # a card heard during an outage (read from storage before it began) ages the same way
    reg.bus_reachable(False)
    reg.observe(AgentCard(id="w-1", name="writer", capabilities=["write"]))
    now[0] = 100.0
    reg.bus_reachable(True)
    now[0] = 104.9
    assert reg.capabilities() == {"write"}
    now[0] = 105.1
    assert reg.capabilities() == set()


async def test_sim_model_is_deterministic_labelled_and_priced() -> None:
    a = SimModel.from_profile("7b", seed=3, time_scale=0)
    b = SimModel.from_profile("7b", seed=3, time_scale=0)
    req = ModelRequest.of("Research: tides", metadata={"capability": "research"})
    ra, rb = await a.complete(req), await b.complete(req)
    assert ra.text == rb.text
    assert ra.text.startswith("[simulated sim-7b]")
    assert ra.usage.source == "simulated" and ra.usage.cost_usd > 0


async def test_sim_model_accuracy_follows_its_quality() -> None:
    model = SimModel.from_profile("7b", time_scale=0, overrides={"quality": {"qa": 0.8}})
    correct = 0
    for i in range(400):
        req = ModelRequest.of(
            f"question {i}", metadata={"capability": "qa", "truth": "A", "wrong": ["B", "C"]}
        )
        correct += "So the answer is A." in (await model.complete(req)).text
    assert 0.74 < correct / 400 < 0.86
