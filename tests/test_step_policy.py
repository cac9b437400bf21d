"""One bad step does not fail a whole run: ``on_step_failure`` (``replan``, ``continue``,
``fail``) per network, capability and plan step, a required step that still fails the run,
the partial answer and its record in the ledger, ``rede trace``, the live view and a resumed
run. The user's case: a weak planner's ``arithmetic`` step whose instruction is no
expression."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from rede.cli import app
from rede.cli.tui import LiveView, render_result
from rede.config import NetworkConfig, StepFailureConfig
from rede.errors import ConfigError, StepFailed, StepsFailed
from rede.models import ModelRequest, ScriptedModel
from rede.network import Network
from rede.orchestration.plan import parse_plan, plan_output_schema
from rede.protocol.messages import Event
from rede.server import ServerSettings, create_app
from rede.server.live import LiveServer, free_port
from serve_support import DEMO_YAML

BAD = "Add the totals )01234"
"""The weak planner's arithmetic step: no expression for the calculator to evaluate."""
REPLAN = "Steps of the plan failed"


def plan(*steps: dict[str, Any]) -> str:
    return json.dumps({"intent": "compose", "steps": list(steps)})


def step(id: str, capability: str, instruction: str, *deps: str, **more: Any) -> dict[str, Any]:
    return {"id": id, "capability": capability, "instruction": instruction,
            "depends_on": list(deps), "review": False, **more}  # fmt: skip


RESEARCH = step("s1", "research", "find the prices")
SUM = step("s2", "arithmetic", BAD)
WRITE = step("s3", "write", "write the report", "s1", "s2")
USER_PLAN = plan(RESEARCH, SUM, WRITE)


def is_replan(request: ModelRequest) -> bool:
    return "replan_of" in request.metadata  # and its instruction says what failed


def demo_like(
    planner: Any,
    *,
    policy: Any = None,
    research: Any = None,
    writer: Any = None,
    synth: Any = None,
    ledger: Path | None = None,
) -> tuple[Network, dict[str, ScriptedModel]]:
    """The bundled demo network (planner, researchers, writer, critic, synthesiser and the
    calculator tool) with scripted models: ``planner(request)`` writes the plans."""
    data = yaml.safe_load(DEMO_YAML.read_text())
    replies = {
        "planner-3b": planner,
        "research-7b": research or (lambda r: "prices: 3 and 4\nCONFIDENCE: 0.9"),
        "research-8b": research or (lambda r: "prices: 3 and 4\nCONFIDENCE: 0.9"),
        "writer-8b": writer or (lambda r: "the report\nCONFIDENCE: 0.9"),
        "critic-13b": lambda r: '{"score": 0.9, "accepted": true, "issues": [], "advice": ""}',
        "synth-7b": synth or (lambda r: "the final answer\nCONFIDENCE: 0.9"),
    }
    models = {name: ScriptedModel(fn, name=name) for name, fn in replies.items()}
    data["routing"] = {"strategy": "cheapest"}
    data["limits"] |= {"step_timeout_s": 10, "step_retries": 2}
    if policy is not None:
        data["on_step_failure"] = policy
    return Network.from_dict(data, models=models, ledger=ledger), models  # type: ignore[arg-type]


def names(decisions: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [d for d in decisions if d["name"] == name]


def prompts(model: ScriptedModel, text: str) -> int:
    return sum(text in r.prompt_text for r in model.requests)


# ---------------------------------------------------------------- the user's case, the default


async def test_a_calculator_step_without_an_expression_ends_the_run_partial_with_an_answer() -> (
    None
):
    net, models = demo_like(lambda r: USER_PLAN)  # the planner repeats its plan when replanning
    async with net:
        result = await net.ask("What do the two items cost together? Write a short report.")

    assert result.status == "ok" and result.error is None
    assert result.answer.startswith("the final answer")
    assert result.partial and [m.capability for m in result.missing] == ["arithmetic"]
    assert "not an arithmetic expression" in result.missing[0].error
    assert result.answer.endswith(
        f"[partial answer: step {result.missing[0].step} (arithmetic) failed: calculator: "
        "ValueError: not an arithmetic expression: ')01234' (x3)]"
    )
    failed = names(result.decisions, "step_failed")
    # the default: one repaired plan, then the run goes on without the step
    assert [(d["step"], d["policy"], d["action"]) for d in failed] == [
        ("s2", "replan", "replan"),
        ("s2-r1", "replan", "continue"),
    ]
    assert "max_replans (1) reached" in failed[1]["reason"]
    asked = models["planner-3b"].requests[1]
    assert is_replan(asked) and REPLAN in asked.metadata["instruction"]
    # the finished research step was kept by the repaired plan: not run again
    assert len(models["research-7b"].requests) + len(models["research-8b"].requests) == 1
    # the writer and the synthesis were told what failed
    assert prompts(models["writer-8b"], "s2-r1 [arithmetic] failed") == 1
    assert prompts(models["synth-7b"], "s2-r1 [arithmetic] failed") == 1
    assert names(result.decisions, "run_partial")[0]["missing"][0]["step"] == "s2-r1"


async def test_a_repaired_plan_gives_the_full_answer_and_keeps_the_finished_steps() -> None:
    # a small planner rewords the finished step: same id and capability, so it is kept
    fixed = plan(
        dict(RESEARCH, instruction="find prices"), step("s2", "arithmetic", "3 + 4"), WRITE
    )
    net, models = demo_like(lambda r: fixed if is_replan(r) else USER_PLAN)
    async with net:
        result = await net.ask("What do the two items cost together?")

    assert result.status == "ok" and not result.partial and not result.missing
    assert "[partial answer" not in result.answer
    assert [s.id for s in result.steps if s.kind == "step"] == ["s1", "s2", "s2-r1", "s3"]
    assert result.step("s2").status == "failed" and result.step("s2-r1").output == "3 + 4 = 7"
    assert prompts(models["writer-8b"], "3 + 4 = 7") == 1
    research_calls = len(models["research-7b"].requests) + len(models["research-8b"].requests)
    assert research_calls == 1  # kept, not re-run
    billed = [c for s in result.steps for c in s.calls if s.id == "s1"]
    assert len(billed) == 1  # and not billed again
    replan = names(result.decisions, "replan")[0]
    assert replan["failed"] == ["s2"] and replan["kept"] == ["s1"]
    asked = models["planner-3b"].requests[1].metadata["instruction"]
    assert "finished steps (s1)" in asked and "not an arithmetic expression: ')01234' (x3)" in asked
    assert "The plan was: s1 [research], s2 [arithmetic], s3 [write] after s1+s2." in asked
    assert result.plan is not None and [s.id for s in result.plan.steps] == ["s1", "s2-r1", "s3"]
    assert result.plan.steps[0].instruction == "find the prices"  # what ran, as it ran


async def test_a_step_in_flight_when_another_fails_finishes_and_is_kept() -> None:
    failed = asyncio.Event()

    async def slow_research(request: ModelRequest) -> str:
        await failed.wait()  # still running when the calculator step fails
        return "prices: 3 and 4\nCONFIDENCE: 0.9"

    def seen(event: Event) -> None:
        if event.name == "step_failed":
            failed.set()

    fixed = plan(RESEARCH, step("s2", "arithmetic", "3 + 4"), WRITE)
    net, models = demo_like(lambda r: fixed if is_replan(r) else USER_PLAN, research=slow_research)
    async with net:
        result = await net.ask("What do the two items cost together?", observer=seen)
    assert result.status == "ok" and not result.partial
    assert names(result.decisions, "replan")[0]["kept"] == ["s1"]
    assert len(models["research-7b"].requests) + len(models["research-8b"].requests) == 1
    assert result.step("s1").ended_at <= result.step("plan.r1").started_at  # type: ignore[operator]


def test_the_default_is_replan_once_then_continue() -> None:
    conf = NetworkConfig.from_dict(yaml.safe_load(DEMO_YAML.read_text()))
    assert conf.on_step_failure == StepFailureConfig(policy="replan", max_replans=1)


# ---------------------------------------------------------------- each policy


async def test_continue_runs_the_dependants_with_the_failure_as_context() -> None:
    net, models = demo_like(lambda r: USER_PLAN, policy="continue")
    async with net:
        result = await net.ask("What do the two items cost together?")

    assert result.status == "ok" and result.partial
    assert [m.step for m in result.missing] == ["s2"]
    assert len(models["planner-3b"].requests) == 1  # no replan
    writer_prompt = models["writer-8b"].requests[0].prompt_text
    assert "prices: 3 and 4" in writer_prompt and "s2 [arithmetic] failed" in writer_prompt
    assert result.step("s3").status == "ok"
    assert result.step("s2").error is not None and "')01234'" in result.step("s2").error
    failed = names(result.decisions, "step_failed")
    assert [(d["policy"], d["source"], d["action"]) for d in failed] == [
        ("continue", "network", "continue")
    ]


async def test_fail_ends_the_run_with_the_steps_error() -> None:
    net, models = demo_like(lambda r: USER_PLAN, policy={"policy": "fail"})
    async with net:
        with pytest.raises(StepFailed, match="step 's2' failed: calculator") as info:
            await net.ask("What do the two items cost together?")

    run = info.value.run
    assert run.status == "failed" and not run.partial
    assert not models["writer-8b"].requests and not models["synth-7b"].requests
    assert names(run.decisions, "step_failed")[0]["action"] == "fail"


@pytest.mark.parametrize(
    ("policy", "summed"),
    [
        ({"policy": "continue"}, dict(SUM, required=True)),  # the plan step's required
        ({"policy": "continue", "required": ["arithmetic"]}, SUM),  # the capability's
    ],
)
async def test_a_required_step_fails_the_run_whatever_the_policy(
    policy: dict[str, Any], summed: dict[str, Any]
) -> None:
    net, _ = demo_like(lambda r: plan(RESEARCH, summed, WRITE), policy=policy)
    async with net:
        with pytest.raises(StepFailed, match="step 's2' failed") as info:
            await net.ask("What do the two items cost together?")
    failed = names(info.value.run.decisions, "step_failed")[0]
    assert (failed["policy"], failed["source"], failed["action"]) == ("fail", "required", "fail")


@pytest.mark.parametrize(
    ("policy", "summed", "source"),
    [
        ({"policy": "fail"}, dict(SUM, on_failure="continue"), "step"),
        ({"policy": "fail", "per_capability": {"arithmetic": "continue"}}, SUM, "capability"),
    ],
)
async def test_a_step_or_its_capability_overrides_the_networks_policy(
    policy: dict[str, Any], summed: dict[str, Any], source: str
) -> None:
    net, _ = demo_like(lambda r: plan(RESEARCH, summed, WRITE), policy=policy)
    async with net:
        result = await net.ask("What do the two items cost together?")
    assert result.status == "ok" and result.partial
    failed = names(result.decisions, "step_failed")[0]
    assert (failed["policy"], failed["source"], failed["action"]) == (
        "continue",
        source,
        "continue",
    )


async def test_replans_are_bounded_by_max_replans() -> None:
    net, models = demo_like(lambda r: USER_PLAN, policy={"max_replans": 2})
    async with net:
        result = await net.ask("What do the two items cost together?")
    assert len(models["planner-3b"].requests) == 3  # the plan and two repairs
    actions = [d["action"] for d in names(result.decisions, "step_failed")]
    assert actions == ["replan", "replan", "continue"]
    assert result.partial and [m.step for m in result.missing] == ["s2-r2"]


async def test_no_valid_repaired_plan_goes_on_without_the_step() -> None:
    net, models = demo_like(lambda r: "no plan at all" if is_replan(r) else USER_PLAN)
    async with net:
        result = await net.ask("What do the two items cost together?")
    assert result.status == "ok" and result.partial and [m.step for m in result.missing] == ["s2"]
    assert names(result.decisions, "replan_failed")[0]["steps"] == ["s2"]
    assert prompts(models["writer-8b"], "s2 [arithmetic] failed") == 1


# ---------------------------------------------------------------- when nothing is left


async def test_every_step_failing_fails_the_run_naming_the_steps() -> None:
    both = plan(dict(SUM, id="s1"), step("s2", "arithmetic", "Total the prices"))
    net, models = demo_like(lambda r: both, policy="continue")
    async with net:
        with pytest.raises(StepsFailed, match=r"every step of the plan failed: 's1': .*'s2': "):
            await net.ask("What do the two items cost together?")
    assert not models["synth-7b"].requests


async def test_a_failed_synthesis_fails_the_run_naming_the_steps_that_failed_before() -> None:
    def down(request: ModelRequest) -> str:
        raise RuntimeError("synth down")

    net, _ = demo_like(lambda r: USER_PLAN, policy="continue", synth=down)
    async with net:
        with pytest.raises(StepFailed, match=r"step 'synthesis' failed: .*synth down") as info:
            await net.ask("What do the two items cost together?")
    assert "steps that had failed before it: s2" in str(info.value)
    assert info.value.run.status == "failed"


# ---------------------------------------------------------------- the record


async def test_the_failure_is_in_the_ledger_and_rede_trace(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    net, _ = demo_like(lambda r: USER_PLAN, policy="continue", ledger=ledger)
    async with net:
        result = await net.ask("What do the two items cost together?")
    recorded = [e for e in net.ledger.entries(result.run_id) if e.kind == "decision"]
    failed = next(e for e in recorded if e.name == "step_failed")
    assert failed.data["step"] == "s2" and failed.data["action"] == "continue"
    assert any(e.name == "run_partial" for e in recorded)

    shown = CliRunner().invoke(
        app, ["trace", result.run_id, "--ledger", str(ledger)], env={"COLUMNS": "200"}
    )
    assert shown.exit_code == 0, shown.output
    line = next(li for li in shown.output.splitlines() if "step_failed" in li)
    assert "s2" in line and "action=continue" in line
    assert "run_partial" in shown.output

    listed = CliRunner().invoke(app, ["runs", "--ledger", str(ledger)])
    assert listed.exit_code == 0, listed.output
    row = next(li for li in listed.output.splitlines() if result.run_id in li)
    assert "ok (partial)" in row


async def test_rede_runs_live_view_and_result_show_the_failed_step_and_the_partial_answer() -> None:
    console = Console(record=True, width=200)
    net, _ = demo_like(lambda r: USER_PLAN, policy="continue")
    async with net:
        with LiveView(console) as view:
            result = await net.ask("What do the two items cost together?", observer=view)
    assert view.rows["s2"].state == "failed"
    assert view.rows["s2"].note.startswith("continued without it: calculator: ValueError")
    render_result(console, result)
    shown = console.export_text()
    assert (
        "Partial answer" in shown
        and "the answer lacks step(s) that failed: s2 (arithmetic)" in shown
    )


# ---------------------------------------------------------------- durable runs


async def die_while_writing(net: Network, models: dict[str, ScriptedModel], run_id: str) -> None:
    """Start run ``run_id`` and stop it as a killed process would, once its writer is called."""
    async with net:
        running = asyncio.create_task(net.ask("the costs", run_id=run_id))
        async with asyncio.timeout(10):
            while not models["writer-8b"].requests:  # noqa: ASYNC110 - polls a model's state
                await asyncio.sleep(0.01)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_resumed_run_does_not_run_a_failed_and_continued_step_again(
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "ledger.db"
    stuck = asyncio.Event()

    async def never(request: ModelRequest) -> str:
        await stuck.wait()  # the first process dies while the writer writes
        return "unreachable"

    first, old = demo_like(lambda r: USER_PLAN, policy="continue", writer=never, ledger=ledger)
    await die_while_writing(first, old, "run-continued")

    second, new = demo_like(lambda r: USER_PLAN, policy="continue", ledger=ledger)
    async with second:
        result = await second.resume("run-continued", force=True)
    assert result.status == "ok" and result.partial and [m.step for m in result.missing] == ["s2"]
    resumed = names(result.decisions, "run_resumed")[0]  # this process's decisions only
    assert "s2" in resumed["done"] and not names(result.decisions, "step_failed")
    assert [s.id for s in result.steps].count("s2") == 1  # the calculator step was not re-run
    assert not new["planner-3b"].requests
    assert prompts(new["writer-8b"], "s2 [arithmetic] failed") == 1


async def test_a_resumed_run_keeps_its_repaired_plan(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    stuck = asyncio.Event()
    fixed = plan(RESEARCH, step("s2", "arithmetic", "3 + 4"), WRITE)

    async def never(request: ModelRequest) -> str:
        await stuck.wait()
        return "unreachable"

    def planner(request: ModelRequest) -> str:
        return fixed if is_replan(request) else USER_PLAN

    first, old = demo_like(planner, writer=never, ledger=ledger)
    await die_while_writing(first, old, "run-replanned")
    assert len(old["planner-3b"].requests) == 2

    second, new = demo_like(planner, ledger=ledger)
    async with second:
        result = await second.resume("run-replanned", force=True)
    assert result.status == "ok" and not result.partial
    assert not new["planner-3b"].requests  # neither the plan nor its repair is asked again
    assert result.plan is not None and [st.id for st in result.plan.steps] == ["s1", "s2-r1", "s3"]
    assert prompts(new["writer-8b"], "3 + 4 = 7") == 1
    assert [st.id for st in result.steps].count("s2") == 1 and not names(result.decisions, "replan")


# ---------------------------------------------------------------- configuration


def test_a_policy_for_a_capability_no_agent_serves_is_refused() -> None:
    data = yaml.safe_load(DEMO_YAML.read_text())
    data["on_step_failure"] = {"per_capability": {"arithmatic": "continue"}}
    with pytest.raises(ConfigError, match="on_step_failure names capability 'arithmatic'"):
        NetworkConfig.from_dict(data)
    data["on_step_failure"] = "skip"
    with pytest.raises(ConfigError, match="on_step_failure"):
        NetworkConfig.from_dict(data)


# ---------------------------------------------------------------- served


def test_the_runs_api_and_the_openai_api_say_the_answer_is_partial(tmp_path: Path) -> None:
    net, _ = demo_like(lambda r: USER_PLAN, policy="continue", ledger=tmp_path / "ledger.db")
    port = free_port()
    with LiveServer(create_app([net], ServerSettings(port=port)), port=port) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        completion = client.chat.completions.create(
            model="research-team", messages=[{"role": "user", "content": "the costs"}]
        )
        facts = (completion.model_extra or {})["rede"]
        record = httpx.get(f"{server.url}/v1/runs/{facts['run_id']}").json()
    assert facts["status"] == "ok" and facts["partial"] and facts["missing"] == ["s2"]
    content = completion.choices[0].message.content or ""
    assert content.startswith("the final answer") and "[partial answer: step s2" in content
    assert record["partial"] and record["missing"][0]["step"] == "s2"
    assert any(d["name"] == "step_failed" for d in record["decisions"])


def test_the_web_page_shows_the_failed_step_and_the_partial_run() -> None:
    from test_serve_web import chromium

    executable = chromium()
    from playwright.sync_api import expect, sync_playwright

    net, _ = demo_like(lambda r: USER_PLAN, policy="continue")
    port = free_port()
    with (
        LiveServer(create_app([net], ServerSettings(port=port)), port=port) as server,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url + "/")
            expect(page.locator("#agents tr[data-agent=planner]")).to_be_visible()
            page.fill("#request", "What do the two items cost together?")
            page.click("#run")
            status = page.locator("#run-status")
            expect(status).to_have_attribute("data-state", "partial", timeout=30_000)
            node = page.locator("#graph .node[data-step=s2]")
            expect(node).to_have_attribute("data-state", "failed")
            expect(node).to_contain_text("failed → continued")
            expect(page.locator("#graph .node[data-step=s3]")).to_have_attribute("data-state", "ok")
            expect(page.locator("#answer")).to_contain_text("[partial answer: step s2")
            page.locator("#history tbody tr").first.click()  # the same run, from its record
            expect(page.locator("#decisions")).to_contain_text("step_failed step=s2")
            expect(node).to_contain_text("failed → continued")
            expect(status).to_have_attribute("data-state", "partial")
            assert not errors, errors
        finally:
            browser.close()


def test_a_plan_may_mark_a_step_required_though_planners_are_not_offered_it() -> None:
    """A person's plan (or a planner's prompt of one's own) may mark a step required; the
    schema a planner model decodes under does not offer it: one more optional field made
    the tiny real model's plans longer than its context (tests/test_real_server.py)."""
    schema = plan_output_schema({"research", "arithmetic"}, max_steps=2)
    assert "required" not in schema["$defs"]["s2"]["properties"]
    parsed = parse_plan(
        USER_PLAN.replace('"review": false}', '"review": false, "required": true}', 1),
        {"research", "arithmetic", "write"},
        max_steps=4,
    )
    assert [st.required for st in parsed.steps] == [True, False, False]
