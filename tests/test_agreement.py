"""Cross-agent agreement: tiers of distinct agents vote on a step's extracted answer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rede import Network
from rede.answers import choice, json_number, last_number
from rede.cli.app import app
from rede.errors import ConfigError, StepFailed
from rede.models import ModelRequest, ScriptedModel


def answer(value: str) -> Callable[[ModelRequest], str]:
    return lambda request: f'{{"reasoning": "because", "answer": "{value}"}}'


def network(
    replies: dict[str, str | None],
    tiers: list[dict[str, Any]],
    ledger: Path | None = None,
    **agreement: Any,
) -> tuple[Network, dict[str, ScriptedModel]]:
    """One agent per reply ('None': the agent's model fails), all serving ``solve``."""

    def handler(value: str | None) -> Callable[[ModelRequest], str]:
        if value is None:

            def fail(request: ModelRequest) -> str:
                raise RuntimeError("model down")

            return fail
        return answer(value)

    models = {name: ScriptedModel(handler(v), name=name) for name, v in replies.items()}
    conf = {
        "name": "vote",
        "models": {name: {"spec": "sim:7b"} for name in replies},
        "agents": [{"name": n, "capabilities": ["solve"], "model": n} for n in replies],
        "routing": {"agreement": {"solve": {"answer": "json_number", "tiers": tiers, **agreement}}},
        "limits": {"step_retries": 0},
    }
    return Network.from_dict(conf, models=models, ledger=ledger), models


def decisions(result: Any, name: str) -> list[dict[str, Any]]:
    return [d for d in result.decisions if d["name"] == name]


async def test_two_that_agree_answer_without_the_big_model() -> None:
    net, models = network(
        {"a": "18", "b": "18.00", "big": "99"},
        [{"agents": ["a", "b"], "min_agree": 2}, {"agents": ["big"]}],
    )
    async with net:
        result = await net.ask("How many eggs?")
    assert json_number(result.answer) == "18"
    assert result.confidence == 1.0
    assert len(models["big"].requests) == 0
    (outcome,) = decisions(result, "agreement")
    assert outcome["outcome"] == "accepted" and outcome["votes"] == {"a": "18", "b": "18"}
    assert {d["agent"] for d in decisions(result, "vote")} == {"a", "b"}
    # both small models were asked at once
    assert result.steps[-1].agent == "a" and len(result.steps[-1].calls) == 2


async def test_disagreement_escalates_to_the_next_tier() -> None:
    net, models = network(
        {"a": "18", "b": "17", "big": "17"},
        [{"agents": ["a", "b"], "min_agree": 2}, {"agents": ["big"]}],
    )
    async with net:
        result = await net.ask("How many eggs?")
    assert json_number(result.answer) == "17"
    assert len(models["big"].requests) == 1
    first, second = decisions(result, "agreement")
    assert first["outcome"] == "escalated" and first["to_tier"] == 1
    assert second["outcome"] == "accepted" and second["votes"] == {"big": "17"}
    assert result.steps[-1].agent == "big"


async def test_majority_decides_at_once_when_configured() -> None:
    net, models = network(
        {"a": "1", "b": "2", "c": "2", "big": "3"},
        [{"agents": ["a", "b", "c"], "min_agree": 3}, {"agents": ["big"]}],
        on_disagreement="majority",
    )
    async with net:
        result = await net.ask("Which?")
    assert json_number(result.answer) == "2"
    assert models["big"].requests == []
    (outcome,) = decisions(result, "agreement")
    assert outcome["outcome"] == "plurality" and outcome["agree"] == 2
    assert result.confidence == pytest.approx(2 / 3)


async def test_sequential_asks_the_third_only_when_the_first_two_disagree() -> None:
    tiers = [{"agents": ["a", "b", "c"], "min_agree": 2, "mode": "sequential"}]
    net, models = network({"a": "5", "b": "5", "c": "6"}, tiers)
    async with net:
        await net.ask("Sum?")
    assert [len(models[n].requests) for n in "abc"] == [1, 1, 0]
    net, models = network({"a": "5", "b": "4", "c": "4"}, tiers)
    async with net:
        result = await net.ask("Sum?")
    assert [len(models[n].requests) for n in "abc"] == [1, 1, 1]
    assert json_number(result.answer) == "4"


async def test_a_failed_agent_is_an_abstention_and_a_tie_goes_to_the_higher_tier() -> None:
    net, _ = network(
        {"a": "5", "b": None, "big": "7"},
        [{"agents": ["a", "b"], "min_agree": 2}, {"agents": ["big"]}],
    )
    async with net:
        result = await net.ask("Sum?")
    votes = {d["agent"]: d for d in decisions(result, "vote")}
    assert votes["b"]["answer"] is None and "model down" in votes["b"]["error"]
    assert json_number(result.answer) == "7"


async def test_a_step_fails_when_no_agent_answers() -> None:
    net, _ = network({"a": None, "b": None}, [{"agents": ["a", "b"]}])
    async with net:
        with pytest.raises(StepFailed) as caught:
            await net.ask("Sum?")
    assert "model down" in str(caught.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tiers": [{"agents": ["a", "ghost"]}]}, "unknown agent 'ghost'"),
        ({"tiers": [{"agents": ["a", "b"], "min_agree": 3}]}, "min_agree 3 is more than"),
        ({"tiers": [{"agents": ["a", "a"]}]}, "names an agent twice"),
        ({"tiers": [{"agents": ["a"]}, {"agents": ["a", "b"]}]}, "more than one tier"),
        ({"tiers": [{"agents": ["a"]}], "answer": "vibes"}, "unknown answer extractor 'vibes'"),
        ({"tiers": [{"agents": ["w"]}]}, "does not serve 'solve'"),
    ],
)
def test_bad_agreement_config_is_a_clear_error(change: dict[str, Any], message: str) -> None:
    conf = {
        "models": {"m": {"spec": "sim:7b"}},
        "agents": [
            {"name": "a", "capabilities": ["solve"], "model": "m"},
            {"name": "b", "capabilities": ["solve"], "model": "m"},
            {"name": "w", "capabilities": ["write"], "model": "m"},
        ],
        "routing": {"agreement": {"solve": {"answer": "json_number", **change}}},
    }
    with pytest.raises(ConfigError, match=message):
        Network.from_dict(conf)


async def test_trace_shows_every_vote_and_the_outcome(tmp_path: Path) -> None:
    ledger_path = tmp_path / "runs.db"
    net, _ = network(
        {"a": "18", "b": "17", "big": "17"},
        [{"agents": ["a", "b"], "min_agree": 2}, {"agents": ["big"]}],
        ledger=ledger_path,
    )
    async with net:
        await net.ask("How many eggs?")
    shown = CliRunner().invoke(app, ["trace", "--ledger", str(ledger_path)])
    assert shown.exit_code == 0, shown.output
    assert shown.output.count("vote") >= 3
    assert "escalated" in shown.output and "accepted" in shown.output


def test_extractors_follow_the_published_rules() -> None:
    assert json_number('```json\n{"reasoning": "x",\n "answer": "$1,200.50"}\n```') == "1200.5"
    assert json_number('{"answer": 3/4}') == "3"  # not JSON; the loose match "3/4}" is no fraction
    assert json_number('"answer": "3/4"') == "0.75"
    assert json_number("so it is $\\boxed{36}$") == "36"
    assert json_number("no answer at all") is None
    assert choice("...so the answer is (C).") == "C"
    assert choice("Answer: B\nbecause") == "B"
    assert choice("I think D, maybe") == "D"
    assert choice("no letters here") is None
    assert last_number("first 3 then 1,000.0") == "1000"
