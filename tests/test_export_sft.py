"""``rede export sft``: accepted steps of real runs, recorded in a SQLite ledger, as chat
fine-tuning examples; an escalated step trains the small agent with the large one's answer."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from rede import Network
from rede.cli.app import app
from rede.models._base import ModelRequest, Price
from rede.models.scripted import ScriptedModel
from rede.orchestration.ledger import SQLiteLedger
from rede.orchestration.sft import Filters, export_sft


def by_difficulty(name: str, low: float) -> Any:
    def handler(request: ModelRequest) -> str:
        confidence = low if "hard" in request.prompt_text else 0.9
        return f"{name} answers {request.prompt_text.count('hard')}\nCONFIDENCE: {confidence}"

    return handler


async def record_runs(ledger: Path, **conf: Any) -> None:
    """An easy request the small agent answers and a hard one escalated to the large one."""
    models = {
        "s": ScriptedModel(
            by_difficulty("small", 0.3),
            name="s",
            price=Price(input_per_1k=0.0001, output_per_1k=0.0001),
        ),
        "l": ScriptedModel(
            by_difficulty("large", 0.95),
            name="l",
            price=Price(input_per_1k=0.01, output_per_1k=0.01),
        ),
    }
    net = Network.from_dict(
        {
            "models": {"s": {"spec": "sim:7b"}, "l": {"spec": "sim:7b"}},
            "agents": [
                {"name": "small", "capabilities": ["answer"], "model": "s", "tier": 0},
                {"name": "large", "capabilities": ["answer"], "model": "l", "tier": 1},
            ],
            "routing": {"strategy": "cascade", "escalate_below": 0.6},
            **conf,
        },
        models=models,
        ledger=ledger,
    )
    async with net:
        await net.ask("an easy one")
        await net.ask("a hard one")
    net.ledger.close()


async def test_escalated_steps_train_the_small_agent_with_the_large_answer(
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "ledger.db"
    await record_runs(ledger)
    done = export_sft(SQLiteLedger(ledger), Filters(include_simulated=True))
    assert done.runs == 2 and dict(done.kept) == {"answer": 2}
    easy, hard = done.examples
    assert (easy.agent, easy.escalated) == ("small", False)
    assert (hard.agent, hard.escalated) == ("small", True)
    prompt, answer = hard.messages
    assert prompt["role"] == "user" and "a hard one" in prompt["content"]
    assert answer == {"role": "assistant", "content": "large answers 1\nCONFIDENCE: 0.95"}
    assert easy.messages[-1]["content"] == "small answers 0\nCONFIDENCE: 0.90"
    only_large = export_sft(SQLiteLedger(ledger), Filters(include_simulated=True, agents={"large"}))
    assert only_large.examples == [] and only_large.dropped["another agent"] == 2


async def test_scripted_answers_filters_and_dates_are_counted(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    await record_runs(ledger)
    plain = export_sft(SQLiteLedger(ledger))
    assert plain.examples == [] and plain.dropped["scripted (see --include-simulated)"] == 2
    later = datetime.now().astimezone() + timedelta(days=1)
    dated = export_sft(SQLiteLedger(ledger), Filters(include_simulated=True, since=later))
    assert dated.dropped["outside the dates"] == 2
    scored = export_sft(SQLiteLedger(ledger), Filters(include_simulated=True, min_score=0.5))
    assert scored.dropped["no critic's acceptance"] == 2
    agreed = export_sft(SQLiteLedger(ledger), Filters(include_simulated=True, min_agree=2))
    assert agreed.dropped["no agreement recorded"] == 2


def test_cli_writes_openai_chat_jsonl_and_says_what_it_kept(tmp_path: Path) -> None:
    import asyncio

    ledger, out = tmp_path / "ledger.db", tmp_path / "data.jsonl"
    asyncio.run(record_runs(ledger))
    args = ["export", "sft", "--ledger", str(ledger), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--include-simulated"])
    assert result.exit_code == 0, result.output
    assert "2 example(s) from 2 run(s) (1 from escalated steps)" in result.output
    assert "kept 2 answer" in result.output
    assert "of these, 2 scripted: not a real model's answer" in result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [list(r) for r in rows] == [["messages"], ["messages"]]
    assert [m["role"] for m in rows[1]["messages"]] == ["user", "assistant"]


def test_a_ledger_without_accepted_steps_is_a_one_line_error(tmp_path: Path) -> None:
    import asyncio

    ledger, out = tmp_path / "ledger.db", tmp_path / "data.jsonl"
    asyncio.run(record_runs(ledger))
    args = ["export", "sft", "--ledger", str(ledger), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--capability", "write"])
    assert result.exit_code == 1
    assert "no accepted step to export" in result.output and "2 another capability" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()
    result = CliRunner().invoke(app, [*args, "--since", "yesterday"])
    assert result.exit_code == 1 and "--since 'yesterday' is not a date" in result.output


async def test_agreement_votes_train_each_voter_with_the_agreed_answer(tmp_path: Path) -> None:
    def says(word: str, hard_word: str) -> Any:
        return lambda request: hard_word if "hard" in request.prompt_text else word

    models = {
        "a": ScriptedModel(says("alpha", "beta"), name="a"),
        "b": ScriptedModel(says("alpha", "delta"), name="b"),
        "big": ScriptedModel(says("alpha", "gamma"), name="big"),
    }
    ledger = tmp_path / "ledger.db"
    own = {m: {"answer": "Agent $capability: $instruction"} for m in models}
    own["b"] = {"answer": "Agent B, $capability: $instruction"}  # the agents' own templates
    net = Network.from_dict(
        {
            "models": {m: {"spec": "sim:7b"} for m in models},
            "agents": [
                {"name": m, "capabilities": ["answer"], "model": m, "prompts": own[m]}
                for m in models
            ],
            "routing": {
                "agreement": {"answer": {"tiers": [{"agents": ["a", "b"]}, {"agents": ["big"]}]}}
            },
        },
        models=models,
        ledger=ledger,
    )
    async with net:
        assert (await net.ask("an easy one")).answer == "alpha"
        assert (await net.ask("a hard one")).answer == "gamma"
    net.ledger.close()
    done = export_sft(SQLiteLedger(ledger), Filters(include_simulated=True, prompts=own))
    targets = [(e.agent, e.escalated, e.messages[-1]["content"]) for e in done.examples]
    # easy: a and b agreed; hard: a and b disagreed, the big model's answer is their target
    # (big's own example has a's prompt and answer: written once)
    assert targets == [
        ("a", False, "alpha"),
        ("b", False, "alpha"),
        ("a", True, "gamma"),
        ("b", True, "gamma"),
    ]
    assert done.examples[1].messages[0]["content"] == "Agent B, answer: an easy one"
    agreed = export_sft(
        SQLiteLedger(ledger), Filters(include_simulated=True, prompts=own, min_agree=2)
    )
    assert [e.messages[-1]["content"] for e in agreed.examples] == ["alpha", "alpha"]
    assert agreed.dropped["fewer than 2 agreed"] == 1
