"""Mistakes a network can be checked for before it runs, and bad replies that must not crash
a run (defects found by trying Rede as a new user would)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rede import ConfigError, Network, ScriptedModel
from rede.agents.specialists import TEMPLATE_VARIABLES, check_template, load_prompt
from rede.cli import app
from rede.models import ModelRequest


def conf(*agents: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"models": {"m": {"spec": "sim:7b"}}, "agents": list(agents), **extra}


@pytest.mark.parametrize(("name", "meant"), [("synthesize", "synthesise"), ("reserch", "research")])
def test_a_misspelt_capability_is_refused_at_load(name: str, meant: str) -> None:
    with pytest.raises(ConfigError, match=f"{name!r} looks like a misspelling of {meant!r}"):
        Network.from_dict(
            conf(
                {"name": "a", "capabilities": ["write"], "model": "m"},
                {"name": "b", "capabilities": [name], "model": "m"},
            )
        )


def test_names_that_only_extend_a_known_one_are_not_misspellings() -> None:
    Network.from_dict(conf({"name": "a", "capabilities": ["writer", "researching"], "model": "m"}))


def test_a_network_with_only_a_planner_is_refused_at_load() -> None:
    with pytest.raises(ConfigError, match="no agent can do a step"):
        Network.from_dict(conf({"name": "p", "capabilities": ["plan", "critique"], "model": "m"}))


def test_an_unknown_template_variable_is_refused_at_load() -> None:
    agent = {
        "name": "w",
        "capabilities": ["write"],
        "model": "m",
        "prompts": {"write": "Write about $topic for $request"},
    }
    with pytest.raises(ConfigError, match=r"'write' prompt of agent 'w' uses unknown .*\$topic"):
        Network.from_dict(conf(agent))


@pytest.mark.parametrize("capability", ["plan", "research", "write", "critique", "synthesise"])
def test_the_bundled_templates_use_only_known_variables(capability: str) -> None:
    check_template(load_prompt(capability), capability)
    assert "request" in TEMPLATE_VARIABLES


async def test_a_deeply_nested_planner_reply_falls_back_instead_of_crashing() -> None:
    def reply(request: ModelRequest) -> str:
        return "[" * 100_000 if request.metadata.get("capability") == "plan" else "done"

    net = Network.from_dict(
        conf(
            {"name": "p", "capabilities": ["plan"], "model": "m"},
            {"name": "w", "capabilities": ["write"], "model": "m"},
        ),
        models={"m": ScriptedModel(reply)},
    )
    async with net:
        result = await net.ask("write a poem")
    assert result.status == "ok" and result.answer == "done"
    invalid = [d for d in result.decisions if d["name"] == "plan_invalid"]
    assert invalid and "nested too deeply" in str(invalid[0])


def test_trace_of_a_file_that_is_not_a_ledger_is_a_one_line_error(tmp_path: Path) -> None:
    yaml_file = tmp_path / "team.yaml"
    yaml_file.write_text("name: team\n" * 200)
    run = CliRunner().invoke(app, ["trace", "--ledger", str(yaml_file)])
    assert run.exit_code == 1
    assert "is not a Rede ledger" in run.output and "Traceback" not in run.output


def test_rede_up_refuses_an_empty_signing_key_before_starting_agents(tmp_path: Path) -> None:
    network = tmp_path / "signed.yaml"
    network.write_text(
        "name: signed\nmodels: {m: {spec: 'sim:7b'}}\n"
        "agents: [{name: w, capabilities: [write], model: m}]\n"
        "bus: {signing_key_env: REDE_TEST_EMPTY_KEY}\n"
    )
    env = {**os.environ, "REDE_TEST_EMPTY_KEY": ""}
    run = CliRunner().invoke(
        app, ["up", str(network), "--bus", "redis://127.0.0.1:9", "--ledger", ""], env=env
    )
    assert run.exit_code == 1
    assert "signing_key_env names 'REDE_TEST_EMPTY_KEY'" in run.output


def review_network(critic: Any) -> Network:
    """One writer whose step is reviewed by a scripted critic (no planner: a one-step run)."""
    writer = ScriptedModel(lambda request: "a draft\nCONFIDENCE: 0.8")
    return Network.from_dict(
        conf(
            {"name": "w", "capabilities": ["write"], "model": "writer"},
            {"name": "c", "capabilities": ["critique"], "model": "critic"},
            limits={"plan_repairs": 2, "step_retries": 0},
        )
        | {"models": {"writer": {"spec": "sim:7b"}, "critic": {"spec": "sim:7b"}}},
        models={"writer": writer, "critic": ScriptedModel(critic)},
    )


@pytest.mark.parametrize("garbage", ["not json at all", "", '{"score": 5, "accepted": true}'])
async def test_an_unreadable_critique_is_asked_again_and_the_run_goes_on(garbage: str) -> None:
    replies = iter([garbage, '{"score": 0.9, "accepted": true, "issues": [], "advice": ""}'])
    net = review_network(lambda request: next(replies))
    async with net:
        result = await net.ask("write a haiku")
    assert result.status == "ok" and result.answer == "a draft"
    names = [d["name"] for d in result.decisions]
    assert "critique_invalid" in names and "accepted" in names
    invalid = next(d for d in result.decisions if d["name"] == "critique_invalid")
    assert "not a valid critique" in invalid["error"]  # the parse error, not "expected a critique"


async def test_a_critic_that_never_answers_readably_leaves_the_draft_unreviewed() -> None:
    net = review_network(lambda request: "score: five")
    async with net:
        result = await net.ask("write a haiku")
    assert result.status == "ok" and result.answer == "a draft"
    failed = [d for d in result.decisions if d["name"] == "critique_failed"]
    assert len(failed) == 1 and failed[0]["action"] == "kept the draft unreviewed"
    assert sum(d["name"] == "critique_invalid" for d in result.decisions) == 2
