"""Structured outputs through a whole network, over HTTP to the loopback model server.

The server imitates llama-cpp-python's dialect (``json_schema`` refused with HTTP 500, the
schema taken as ``{"type": "json_object", "schema": ...}``) and answers a schema with the
smallest value that matches it, as constrained decoding would. Nothing is mocked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from rede import Network
from rede.agents.specialists import CRITIQUE_SCHEMA
from rede.orchestration.ledger import Ledger
from rede.orchestration.plan import Plan, Step, parse_plan, plan_output_schema
from rede.protocol.messages import Critique
from rede.testing.openai_server import (
    LLAMA_CPP_DIALECTS,
    FakeOpenAIServer,
    default_responder,
    dialect_of,
    example_for,
    schema_of,
)


def reviewed_plan_responder(request: dict[str, Any]) -> str:
    """Constrained replies, with the plan's one step asking for review (so a critic runs)."""
    schema = schema_of(request)
    if schema is not None and "steps" in schema.get("properties", {}):
        plan = example_for(schema)
        plan["steps"][0]["review"] = True
        return json.dumps(plan)
    return default_responder(request)


@pytest.fixture
def llama_cpp() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(
        responder=reviewed_plan_responder,
        dialects=LLAMA_CPP_DIALECTS,
        refusal_status=500,
        model="tiny",
    ) as server:
        yield server


def network(url: str, **model: Any) -> dict[str, Any]:
    spec = {"spec": "openai:tiny", "base_url": url, **model}
    return {
        "models": {"planner": spec, "writer": spec, "critic": spec},
        "agents": [
            {"name": "planner", "capabilities": ["plan"], "model": "planner"},
            {"name": "writer", "capabilities": ["write"], "model": "writer"},
            {"name": "critic", "capabilities": ["critique"], "model": "critic"},
        ],
        "limits": {"max_refine_rounds": 1, "wall_time_s": 30},
    }


async def test_plan_and_critique_are_constrained_and_recorded(llama_cpp: FakeOpenAIServer) -> None:
    ledger = Ledger()
    async with Network.from_dict(network(llama_cpp.base_url), ledger=ledger) as net:
        result = await net.ask("Write a haiku about queues")

    assert result.status == "ok", result.error
    plan = next(d for d in result.decisions if d["name"] == "plan")
    assert plan["repairs"] == 0
    assert plan["structured"] == "json_object_schema"
    assert not [d for d in result.decisions if d["name"] == "plan_invalid"]
    # detection cost one refused request for the whole network (three models, one server)
    sent = [dialect_of(r.body) for r in llama_cpp.requests]
    assert sent.count("json_schema") == 1
    # the critiques were constrained too, and say so in the ledger
    critiques = [
        e.data["payload"] for e in ledger.entries(result.run_id) if e.name == "received:critique"
    ]
    assert critiques and all(c["data"] == {"structured": "json_object_schema"} for c in critiques)
    step = next(s for s in result.steps if s.capability == "write")
    assert step.critiques  # reviewed, as with the sim


async def test_a_fixed_dialect_from_yaml_is_used_without_detection(
    llama_cpp: FakeOpenAIServer,
) -> None:
    conf = network(llama_cpp.base_url, structured="json_object_schema", seed=0)
    async with Network.from_dict(conf) as net:
        result = await net.ask("Write a haiku about queues")

    assert result.status == "ok", result.error
    bodies = [r.body for r in llama_cpp.requests]
    assert "json_schema" not in [dialect_of(b) for b in bodies]
    assert all(b["seed"] == 0 for b in bodies)


async def test_step_output_schema_is_sent_as_structured_output(
    llama_cpp: FakeOpenAIServer,
) -> None:
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string", "minLength": 3}},
        "required": ["title"],
        "additionalProperties": False,
    }
    plan = Plan(
        steps=[Step(id="t", capability="write", instruction="A title", output_schema=schema)]
    )
    async with Network.from_dict(network(llama_cpp.base_url)) as net:
        result = await net.ask("Name a book about queues", plan=plan)

    assert result.status == "ok", result.error
    assert json.loads(result.answer) == {"title": "example"}
    assert schema_of(llama_cpp.requests[-1].body) == schema


def test_the_wire_schemas_describe_valid_messages() -> None:
    caps = {"research", "write"}
    schema = plan_output_schema(caps, max_steps=4)
    assert all(
        d["properties"]["capability"]["enum"] == sorted(caps) for d in schema["$defs"].values()
    )
    # one tuple per plan length; step i is s<i> and depends only on earlier steps
    lengths = schema["properties"]["steps"]["anyOf"]
    assert [len(v["prefixItems"]) for v in lengths] == [1, 2, 3, 4]
    assert schema["$defs"]["s1"]["properties"]["depends_on"] == {"const": []}
    assert schema["$defs"]["s3"]["properties"]["depends_on"]["items"] == {"enum": ["s1", "s2"]}
    for variant in lengths:
        steps = example_for(variant, root=schema)
        plan = parse_plan(json.dumps({"intent": "x", "steps": steps}), caps, max_steps=4)
        assert [s.id for s in plan.steps] == [f"s{i + 1}" for i in range(len(steps))]
    Critique.model_validate(example_for(CRITIQUE_SCHEMA))


def test_a_dependency_named_twice_counts_once() -> None:
    step = Step(id="s3", capability="write", instruction="x", depends_on=["s2", "s1", "s2"])
    assert step.depends_on == ["s2", "s1"]
