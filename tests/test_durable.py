"""Durable runs and a person in the loop: a run checkpointed in the ledger resumes in another
network (another process, in real life) without re-running or re-billing finished steps; a step
in flight is sent again under its idempotency key and answered once; a run pauses for a
person's approval or answer, from the Python API or the CLI, across a restart of everything."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rede.cli import app
from rede.errors import ConfigError, StepFailed
from rede.models import ModelRequest, ScriptedModel
from rede.network import Network
from rede.protocol.messages import Event

PLAN = json.dumps(
    {
        "intent": "compose",
        "steps": [
            {"id": "a", "capability": "research", "instruction": "do a"},
            {"id": "b", "capability": "write", "instruction": "do b", "depends_on": ["a"]},
        ],
    }
)


def make(
    ledger: Path | None,
    write: Any,
    *,
    conf: dict[str, Any] | None = None,
    plan: str = PLAN,
    critic: Any = None,
) -> tuple[Network, dict[str, ScriptedModel]]:
    """The planner plans ``plan``; a researcher, a writer (``write``) and, if given, a critic."""
    models = {
        "p": ScriptedModel(lambda r: plan, name="p"),
        "r": ScriptedModel(lambda r: "facts about a\nCONFIDENCE: 0.9", name="r"),
        "w": ScriptedModel(write, name="w"),
    }
    agents = [
        {"name": "planner", "capabilities": ["plan"], "model": "p"},
        {"name": "researcher", "capabilities": ["research"], "model": "r"},
        {"name": "writer", "capabilities": ["write"], "model": "w"},
    ]
    if critic is not None:
        models["c"] = ScriptedModel(critic, name="c")
        agents.append({"name": "critic", "capabilities": ["critique"], "model": "c"})
    data: dict[str, Any] = {
        "name": "durable-team",
        "models": {name: {"spec": "sim:7b"} for name in models},
        "agents": agents,
        "heartbeat_s": 0.1,
        "agent_ttl_s": 0.6,
        "limits": {"step_timeout_s": 10},
        "durable": {"lease_s": 0.3},
        **(conf or {}),
    }
    return Network.from_dict(data, models=models, ledger=ledger), models


def prompts(model: ScriptedModel, text: str) -> int:
    return sum(text in r.prompt_text for r in model.requests)


def waiting(net: Network, run_id: str) -> bool:
    row = net.ledger.load_run(run_id)
    return row is not None and row.status == "waiting"


async def until(check: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - polls a model's and the ledger's state
            await asyncio.sleep(0.01)


async def test_a_run_resumes_in_another_network_without_redoing_finished_steps(
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "ledger.db"
    stuck = asyncio.Event()

    async def never(request: ModelRequest) -> str:
        await stuck.wait()  # the first process dies while step b runs
        return "unreachable"

    first, old = make(ledger, never)
    async with first:
        running = asyncio.create_task(first.ask("write about a", run_id="run-durable"))
        await until(lambda: prompts(old["w"], "do b") == 1)
        running.cancel()  # the orchestrator's process dies: no end is recorded
        await asyncio.gather(running, return_exceptions=True)
    paid_for_a = first.ledger.load_run("run-durable")
    assert paid_for_a is not None and paid_for_a.status == "running"

    second, new = make(ledger, lambda r: "the text\nCONFIDENCE: 0.9")
    async with second:
        with pytest.raises(ConfigError, match="is held by"):  # its lease has not lapsed yet
            await second.resume("run-durable")
        await asyncio.sleep(0.4)
        assert second.ledger.orphans("durable-team") == ["run-durable"]
        result = await second.resume("run-durable")
    assert result.status == "ok" and result.answer == "the text"
    assert not new["p"].requests and not new["r"].requests, "planned and finished work is kept"
    assert prompts(new["w"], "do b") == 1 and "facts about a" in new["w"].requests[0].prompt_text
    assert [s.id for s in result.steps] == ["plan", "a", "b"]
    kept = paid_for_a.state["usage"]
    kept_usage = kept["prompt_tokens"] + kept["completion_tokens"]
    assert result.usage.total_tokens == kept_usage + result.step("b").usage.total_tokens
    assert [d["name"] for d in result.decisions].count("run_resumed") == 1
    again = Network.from_dict(second.config.model_dump(), ledger=ledger)
    async with again:
        with pytest.raises(ConfigError, match="has ended"):
            await again.resume("run-durable")


async def test_a_step_in_flight_is_answered_once_when_the_run_is_resumed() -> None:
    release = asyncio.Event()

    async def slow(request: ModelRequest) -> str:
        await release.wait()
        return "written once\nCONFIDENCE: 0.9"

    net, models = make(None, slow)
    async with net:
        running = asyncio.create_task(net.ask("write about a", run_id="run-inflight"))
        await until(lambda: prompts(models["w"], "do b") == 1)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        resumed = asyncio.create_task(net.resume("run-inflight", force=True))
        await asyncio.sleep(0.2)  # the task is sent again while the agent still works on it
        release.set()
        result = await resumed
        writer = next(r for r in net.runners if r.spec.name == "writer")
    assert result.status == "ok" and result.answer == "written once"
    assert prompts(models["w"], "do b") == 1, "the agent answered the re-sent task once"
    assert writer.once.reused == 1
    assert result.usage.total_tokens == sum(s.usage.total_tokens for s in result.steps)


async def test_a_run_waits_for_plan_approval_and_goes_on_once_approved() -> None:
    events: list[Event] = []
    net, models = make(
        None,
        lambda r: "text\nCONFIDENCE: 0.9",
        conf={"human": {"approve_plan": True, "poll_s": 60}},  # an answer here wakes the run
    )
    async with net:
        running = asyncio.create_task(net.ask("write", run_id="run-hitl", observer=events.append))
        await until(lambda: any(e.name == "waiting_for_human" for e in events))
        await asyncio.sleep(0.1)
        assert not models["r"].requests, "nothing runs before the plan is approved"
        row = net.ledger.load_run("run-hitl")
        assert row is not None and row.status == "waiting" and "plan" in row.state["waiting"]
        with pytest.raises(ConfigError, match=r"no run .run-unknown. with a checkpoint"):
            net.approve("run-unknown")
        assert net.approve("run-hitl", reason="fine", by="ana") == "plan"
        async with asyncio.timeout(10):  # well before the next look in the ledger
            result = await running
    assert result.status == "ok"
    answered = [d for d in result.decisions if d["name"] == "human_answer"]
    assert answered and answered[0]["by"] == "ana" and answered[0]["approved"] is True


async def test_a_rejected_plan_fails_the_run_with_the_reason() -> None:
    net, models = make(
        None, lambda r: "text", conf={"human": {"approve_plan": True, "poll_s": 0.02}}
    )
    async with net:
        running = asyncio.create_task(net.ask("write", run_id="run-no"))
        await until(lambda: waiting(net, "run-no"))
        net.approve("run-no", approved=False, reason="too broad")
        with pytest.raises(StepFailed, match="rejected the plan: too broad"):
            await running
    assert not models["w"].requests
    row = net.ledger.load_run("run-no")
    assert row is not None and row.status == "failed"


async def test_a_person_edits_a_step_output_and_a_timeout_policy_answers_for_nobody() -> None:
    conf = {"human": {"approve": ["write"], "poll_s": 0.02}}
    net, _ = make(None, lambda r: "draft\nCONFIDENCE: 0.9", conf=conf)
    async with net:
        running = asyncio.create_task(net.ask("write", run_id="run-edit"))
        await until(lambda: waiting(net, "run-edit"))
        assert net.approve("run-edit", "b", text="the edited text") == "step:b"
        assert (await running).answer == "the edited text"

    conf = {"human": {"approve": ["write"], "poll_s": 0.02, "timeout_s": 0.2, "on_timeout": "fail"}}
    net, _ = make(None, lambda r: "draft", conf=conf)
    async with net:
        with pytest.raises(StepFailed, match=r"no answer from a person within 0\.2s"):
            await net.ask("write")
    conf["human"]["on_timeout"] = "accept"
    net, _ = make(None, lambda r: "draft\nCONFIDENCE: 0.9", conf=conf)
    async with net:
        assert (await net.ask("write")).answer == "draft"


async def test_an_agent_question_to_a_person_is_answered_by_reply() -> None:
    from rede.agents.specialists import Specialist, SpecialistSpec
    from rede.protocol.messages import Result, Task

    class Asker(Specialist):
        model_name = "asker"

        async def handle(self, task: Task, ctx: Any) -> Result:
            city = await ctx.ask("human", "Which city?")
            return Result(output=f"weather in {city}", confidence=0.9)

    net, _ = make(None, lambda r: "x", conf={"human": {"poll_s": 0.02}})
    async with net:
        net.start_runner(
            SpecialistSpec(name="asker", capabilities=["forecast"], specialist=Asker())
        )
        await net.wait_for_agents(["forecast"])
        from rede.orchestration.plan import Plan

        plan = Plan.model_validate(
            {"steps": [{"id": "f", "capability": "forecast", "instruction": "forecast"}]}
        )
        running = asyncio.create_task(net.ask("weather?", plan=plan, run_id="run-ask"))
        await until(lambda: waiting(net, "run-ask"))
        row = net.ledger.load_run("run-ask")
        assert row is not None
        (wait,) = row.state["waiting"].values()
        assert wait["kind"] == "input" and wait["prompt"] == "Which city?"
        net.approve("run-ask", text="Lisbon")
        assert (await running).answer == "weather in Lisbon"


NETWORK_YAML = """
name: paused-team
models:
  small: {spec: "sim:7b", seed: 3}
agents:
  - {name: planner, capabilities: [plan], model: small}
  - {name: researcher, capabilities: [research], model: small}
  - {name: writer, capabilities: [write], model: small}
  - {name: synthesiser, capabilities: [synthesise], model: small}
human: {approve_plan: true, poll_s: 0.05}
durable: {lease_s: 0.3}
"""

runner = CliRunner()


async def leave_paused(network: Path, ledger: str, run_id: str) -> None:
    """A process that stops (or dies) while its run waits for a person."""
    async with Network.from_yaml(network, ledger=ledger, time_scale=0.0) as net:
        running = asyncio.create_task(net.ask("Compare two databases", run_id=run_id))
        await until(lambda: waiting(net, run_id))
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


def test_a_paused_run_survives_a_restart_of_everything_and_finishes_after_approval(
    tmp_path: Path,
) -> None:
    network = tmp_path / "team.yaml"
    network.write_text(NETWORK_YAML)
    ledger = str(tmp_path / "ledger.db")

    asyncio.run(leave_paused(network, ledger, "run-paused"))  # everything stops meanwhile
    listed = runner.invoke(app, ["runs", "--ledger", ledger], terminal_width=200)
    assert "waiting: plan" in listed.output, listed.output
    approved = runner.invoke(app, ["approve", "run-paused", "--ledger", ledger])
    assert approved.exit_code == 0 and "answered plan" in approved.output, approved.output
    twice = runner.invoke(app, ["approve", "run-paused", "--step", "plan", "--ledger", ledger])
    assert twice.exit_code == 1 and "already answered" in twice.output
    import time

    time.sleep(0.4)  # the dead process's lease lapses
    resumed = runner.invoke(
        app, ["resume", "run-paused", str(network), "--ledger", ledger, "--fast"]
    )
    assert resumed.exit_code == 0, resumed.output
    listed = runner.invoke(app, ["runs", "--ledger", ledger, "--json"])
    (row,) = json.loads(listed.output)
    assert row["status"] == "ok" and row["answer"]
    missing = runner.invoke(app, ["resume", "run-nope", str(network), "--ledger", ledger])
    assert missing.exit_code == 1 and "no checkpoint of run 'run-nope'" in missing.output


def test_the_default_in_memory_ledger_keeps_only_the_last_runs() -> None:
    from rede.orchestration.ledger import Ledger

    ledger = Ledger(max_runs=3)
    for n in range(5):
        ledger.record_decision(f"run-{n}", "route", agent="a")
        ledger.record_decision(f"run-{n}", "answered", agent="a")
    assert ledger.runs() == ["run-2", "run-3", "run-4"]
    assert [e.name for e in ledger.entries("run-4")] == ["route", "answered"]
    assert not ledger.entries("run-0")
    assert (
        Network.from_dict(
            {
                "models": {"m": {"spec": "sim:7b"}},
                "agents": [{"name": "a", "capabilities": ["x"], "model": "m"}],
            }
        ).ledger.max_runs
        == 1000
    )


def test_a_served_run_is_approved_over_http_and_an_orphan_is_adopted_at_start(
    tmp_path: Path,
) -> None:
    import httpx

    from rede.server import ServerSettings, create_app
    from rede.server.live import LiveServer, free_port

    network = tmp_path / "team.yaml"
    network.write_text(NETWORK_YAML)
    ledger = str(tmp_path / "ledger.db")

    asyncio.run(leave_paused(network, ledger, "run-orphan"))
    import time

    time.sleep(0.4)  # its lease lapses
    port = free_port()
    net = Network.from_yaml(network, ledger=ledger, time_scale=0.0)
    with LiveServer(create_app([net], ServerSettings(port=port)), port=port) as live:
        deadline = time.monotonic() + 10
        while httpx.get(f"{live.url}/v1/runs/run-orphan").json().get("source") != "resumed":
            assert time.monotonic() < deadline, "the server did not adopt the orphaned run"
            time.sleep(0.05)
        early = httpx.post(f"{live.url}/v1/runs/run-orphan/answer", json={"step": "later"})
        assert early.json()["answered"] == "step:later"  # kept for when that step waits
        approved = httpx.post(
            f"{live.url}/v1/runs/run-orphan/answer", json={"step": "plan", "by": "ops"}
        )
        assert approved.json() == {"id": "run-orphan", "answered": "plan"}
        again = httpx.post(f"{live.url}/v1/runs/run-orphan/answer", json={"step": "plan"})
        assert again.status_code == 409 and "already answered" in again.text
        while (run := httpx.get(f"{live.url}/v1/runs/run-orphan").json())["status"] == "running":
            assert time.monotonic() < deadline + 10, run
            time.sleep(0.05)
    assert run["status"] == "ok", run
    by = [d for d in run["decisions"] if d["name"] == "human_answer"]
    assert [d["by"] for d in by] == ["ops"]


def test_rede_run_interrupted_says_how_to_resume_and_resume_finishes_it(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    network = tmp_path / "team.yaml"
    network.write_text(NETWORK_YAML.replace("human: {approve_plan: true, poll_s: 0.05}\n", ""))
    ledger = str(tmp_path / "ledger.db")
    env = {**os.environ, "COLUMNS": "200"}
    run = subprocess.Popen(
        [sys.executable, "-m", "rede", "run", str(network), "Compare two caches",
         "--ledger", ledger],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (Path(ledger).exists() and _has_a_finished_step(ledger)):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    out = run.communicate(timeout=30)[0]
    assert run.returncode == 130, out
    (run_id,) = re.findall(r"rede resume (run-[0-9a-f]+)", out)
    time.sleep(0.4)  # the interrupted process's lease lapses
    resumed = runner.invoke(app, ["resume", run_id, str(network), "--ledger", ledger, "--fast"])
    assert resumed.exit_code == 0, resumed.output


def _has_a_finished_step(ledger: str) -> bool:
    import sqlite3

    with contextlib.closing(sqlite3.connect(ledger)) as db:
        try:
            rows = db.execute("SELECT state FROM runs").fetchall()
        except sqlite3.OperationalError:
            return False
    return any(len(json.loads(r[0])["done"]) >= 2 for r in rows)


async def test_a_run_resumed_mid_review_replays_its_calls_without_paying_twice() -> None:
    """Crash while the second draft is being written: on resume, the first draft and the
    critique come back from the agents' kept answers and only the second draft is awaited."""
    release = asyncio.Event()
    drafts = 0

    async def write(request: ModelRequest) -> str:
        nonlocal drafts
        drafts += 1
        if drafts == 2:
            await release.wait()
        return f"draft {drafts}\nCONFIDENCE: 0.7"

    verdicts = iter([False, True])

    def critic(request: ModelRequest) -> str:
        ok = next(verdicts)
        return json.dumps(
            {"score": 0.9 if ok else 0.3, "accepted": ok, "issues": [], "advice": "more"}
        )

    plan = json.dumps(
        {"steps": [{"id": "d", "capability": "write", "instruction": "do d", "review": True}]}
    )
    conf = {"limits": {"step_timeout_s": 10, "max_refine_rounds": 2}}
    net, models = make(None, write, conf=conf, plan=plan, critic=critic)
    async with net:
        running = asyncio.create_task(net.ask("write", run_id="run-review"))
        await until(lambda: drafts == 2)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        resumed = asyncio.create_task(net.resume("run-review", force=True))
        await asyncio.sleep(0.2)
        release.set()
        result = await resumed
    assert result.status == "ok" and result.answer == "draft 2"
    assert drafts == 2 and len(models["c"].requests) == 2, "no model was called twice"
    assert len(models["p"].requests) == 1


async def test_an_in_process_bus_keeps_the_last_answers_and_forgets_the_oldest() -> None:
    from rede.bus import MemoryBus
    from rede.bus._base import KEPT_IN_PROCESS

    bus = MemoryBus()
    for n in range(KEPT_IN_PROCESS + 50):
        await bus.remember(f"k{n}", n, 3600)
    assert await bus.claim(f"k{KEPT_IN_PROCESS + 49}", "pending", 60) == KEPT_IN_PROCESS + 49
    assert await bus.claim("k50", "pending", 60) == 50  # the oldest still kept
    assert await bus.claim("k49", "pending", 60) is None, "the ones before were forgotten"
