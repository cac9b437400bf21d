"""The ``rede`` command through typer's runner: demo, run, schema, trace, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from rede.cli.app import DEMO_REQUEST, app, demo_network_path
from rede.network import Network
from rede.testing.openai_server import FakeOpenAIServer

runner = CliRunner()


def test_demo_answers_and_says_it_is_simulated(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    result = runner.invoke(app, ["demo", "--fast", "--ledger", str(ledger)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "simulated" in out.lower()
    assert "Answer (simulated models)" in out
    for column in ("research_1", "research_2", "critical path", "cost", "tokens"):
        assert column in out
    traced = runner.invoke(app, ["trace", "--ledger", str(ledger), "--json"])
    assert traced.exit_code == 0, traced.output
    names = {e["name"] for e in json.loads(traced.output)}
    assert {"plan", "route", "sent:task", "received:result"} <= names


async def test_the_demo_shows_the_whole_path_without_a_plan_repair() -> None:
    """Plan (valid the first time), two research steps at once, a critiqued draft, synthesis:
    what the README's sample output shows."""
    net = Network.from_yaml(demo_network_path(), time_scale=0.0, ledger=None)
    async with net:
        result = await net.ask(DEMO_REQUEST)
    assert result.status == "ok"
    assert [s.id for s in result.steps] == [
        "plan",
        "research_1",
        "research_2",
        "draft",
        "synthesis",
    ]
    names = [d.get("name") for d in result.decisions]
    assert "plan_invalid" not in names and "plan_fallback" not in names
    draft = result.step("draft")
    assert draft.critiques, "the critic never ran on the draft"
    assert draft.critiques[-1].get("accepted") is True
    research = [result.step(f"research_{i}") for i in (1, 2)]
    assert all(r.started_at is not None and r.ended_at is not None for r in research)
    first, second = research
    assert first.started_at < second.ended_at and second.started_at < first.ended_at  # overlap


def test_run_json_prints_the_run_record(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "run",
            str(demo_network_path()),
            "Compare cats and dogs as pets",
            "--json",
            "--fast",
            "--ledger",
            "",
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["status"] == "ok"
    assert record["simulated"] is True
    assert record["answer"].startswith("[simulated")
    assert record["usage"]["calls"] >= 5
    assert {s["capability"] for s in record["steps"]} >= {
        "plan",
        "research",
        "write",
        "critique",
        "synthesise",
    } - {"critique"}
    assert any(e["payload"]["kind"] == "task" for e in record["envelopes"])


def test_run_reports_a_bad_network_file_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("agents:\n  - {name: a, capabilities: [x], model: missing}\n")
    result = runner.invoke(app, ["run", str(bad), "hello", "--ledger", ""])
    assert result.exit_code == 1
    assert "agents.a.model: 'missing' is not in models (known: none)" in result.output
    assert "Value error" not in result.output


def test_a_misspelt_key_or_model_gets_a_did_you_mean(tmp_path: Path) -> None:
    team = "models: {small: {spec: 'sim:7b'}}\n"
    cases = {
        "agnets:\n  - {name: w, capabilities: [write], model: small}\n": (
            "unknown key 'agnets': did you mean 'agents'?"
        ),
        "agents:\n  - {name: w, capabilities: [write], model: small, concurency: 2}\n": (
            "unknown key 'concurency': did you mean 'concurrency'?"
        ),
        "agents:\n  - {name: w, capabilities: [write], model: smal}\n": (
            "agents.w.model: 'smal' is not in models (known: small); did you mean 'small'?"
        ),
    }
    for i, (body, said) in enumerate(cases.items()):
        bad = tmp_path / f"bad{i}.yaml"
        bad.write_text(team + body)
        result = runner.invoke(app, ["validate", str(bad)])
        assert result.exit_code == 1
        assert said in result.output, result.output
        assert result.output.count(str(bad)) == 1  # named once


def test_schema_prints_json_schema() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.output)["title"].startswith("Rede envelope")


def _team_responder(request: dict[str, Any]) -> str:
    """A model server's replies for the demo network: a plan, a critique, text otherwise."""
    prompt = request["messages"][-1]["content"]
    if "planner of a network" in prompt:
        return json.dumps(
            {
                "intent": "compare",
                "steps": [
                    {"id": "a", "capability": "research", "instruction": "Facts on Redis"},
                    {"id": "b", "capability": "research", "instruction": "Facts on Kafka"},
                    {
                        "id": "draft",
                        "capability": "write",
                        "instruction": "Write the comparison",
                        "depends_on": ["a", "b"],
                    },
                ],
            }
        )
    if "You are the critic" in prompt:
        return json.dumps({"score": 0.9, "accepted": True, "issues": [], "advice": ""})
    return "Served by the loopback model.\nCONFIDENCE: 0.8"


def test_run_points_every_llm_agent_at_one_server(tmp_path: Path) -> None:
    with FakeOpenAIServer(responder=_team_responder, model="llama-test") as server:
        result = runner.invoke(
            app,
            [
                "run",
                str(demo_network_path()),
                "Compare Redis and Kafka",
                "--base-url",
                server.base_url,
                "--model",
                "llama-test",
                "--api-key",
                "cli-test",
                "--json",
                "--ledger",
                "",
            ],
        )
        stats = server.stats()
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["status"] == "ok"
    assert record["simulated"] is False
    assert "Served by the loopback model." in record["answer"]
    assert {s["capability"] for s in record["steps"]} >= {"plan", "research", "write"}
    # every model call of the run reached the server, with the key given on the command line
    assert stats["clients"]["cli-test"]["completions"] == record["usage"]["calls"]
    assert record["usage"]["prompt_tokens"] == stats["clients"]["cli-test"]["prompt_tokens"]


def test_live_view_labels_simulated_results_of_agents_served_elsewhere() -> None:
    # `rede run --bus redis://...`: no model is built here, so the network cannot tell; the
    # usage of the results can
    from io import StringIO

    from rich.console import Console

    from rede.cli.tui import LiveView
    from rede.protocol.messages import Event

    out = StringIO()
    with LiveView(Console(file=out, width=160), simulated=False) as view:
        view(Event(name="step_started", data={"step": "s1", "capability": "c", "agent": "a"}))
        view(
            Event(
                name="step_finished",
                data={"step": "s1", "status": "ok", "usage": {"source": "simulated"}},
            )
        )
    assert "SIMULATED models" in out.getvalue()
