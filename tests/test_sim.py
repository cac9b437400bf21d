"""The simulation environment: faults have the effects they claim, metrics are computed right,
scenarios run on the real runtime (memory and Redis buses), and the CLI reports them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from rede.errors import ConfigError
from rede.network import Network
from rede.orchestration.plan import Plan, Step
from rede.orchestration.run import RunResult, StepRecord
from rede.protocol.messages import Usage
from rede.sim import (
    FaultConfig,
    Scenario,
    SimReport,
    SimTask,
    WorkloadConfig,
    aggregate,
    bundled_scenarios,
    decomposition,
    garble,
    generate,
    grade,
    percentile,
    run_scenario,
    task_outcome,
)
from rede.sim.buses import Traffic
from rede.sim.cli import sim_app
from rede.sim.faults import validate_faults
from rede.sim.report import write
from rede.sim.runner import SystemReport
from rede.sim.workload import Part

CHEAP = {"price": {"input_per_1k": 0.00001, "output_per_1k": 0.00001}}
DEAR = {"price": {"input_per_1k": 0.01, "output_per_1k": 0.01}}


def pairs_network(**limits: Any) -> dict[str, Any]:
    """A planner, two math agents (math-a is cheaper, so chosen first), geography, synthesis.
    Planning is perfect, so every run's plan is the ideal one."""
    return {
        "name": "tiny",
        "models": {
            "planner": {"spec": "sim:3b", "sim": {"quality": {"plan": 1.0}}},
            "math-cheap": {"spec": "sim:3b", "sim": {"quality": {"math": 1.0}, **CHEAP}},
            "math-dear": {"spec": "sim:3b", "sim": {"quality": {"math": 1.0}, **DEAR}},
            "geo": {"spec": "sim:3b", "sim": {"quality": {"geography": 1.0}}},
            "synth": {"spec": "sim:3b", "sim": {"quality": {"synthesise": 1.0}}},
        },
        "agents": [
            {"name": "planner", "capabilities": ["plan"], "model": "planner"},
            {"name": "math-a", "capabilities": ["math"], "model": "math-cheap"},
            {"name": "math-b", "capabilities": ["math"], "model": "math-dear"},
            {"name": "geo", "capabilities": ["geography"], "model": "geo"},
            {"name": "synth", "capabilities": ["synthesise"], "model": "synth"},
        ],
        "routing": {"strategy": "cheapest"},
        "heartbeat_s": 0.05,
        "agent_ttl_s": 0.3,
        "limits": {"wall_time_s": 20, "step_timeout_s": 5, **limits},
    }


def scenario(
    faults: list[dict[str, Any]],
    *,
    tasks: int = 3,
    network: dict[str, Any] | None = None,
    calm: bool = False,
    **extra: Any,
) -> Scenario:
    systems = [{"name": "faulty", "network": network or pairs_network(), "faults": faults}]
    if calm:
        systems.insert(0, {"name": "calm", "network": network or pairs_network()})
    data = {
        "name": "tiny",
        "time_scale": 0.0,
        "seed": 5,
        "concurrency": 1,
        "workload": {
            "kind": "multipart",
            "tasks": tasks,
            "parts": 2,
            "domains": ["math", "geography"],
        },
        "systems": systems,
        **extra,
    }
    return Scenario.from_dict(data)


def decisions(run: RunResult | None, name: str) -> list[dict[str, Any]]:
    assert run is not None
    return [d for d in run.decisions if d["name"] == name]


async def run_collecting(
    sc: Scenario, **kw: Any
) -> tuple[SimReport, dict[str, list[RunResult | None]]]:
    runs: dict[str, list[RunResult | None]] = {}
    report = await run_scenario(
        sc, on_run=lambda system, task, run: runs.setdefault(system, []).append(run), **kw
    )
    return report, runs


def agent_of_step(run: RunResult | None, capability: str) -> str | None:
    assert run is not None
    return next(s.agent for s in run.steps if s.capability == capability and s.kind == "step")


# --------------------------------------------------------------------------- faults


async def test_agent_killed_holding_a_task_is_survived_and_reported() -> None:
    sc = scenario([{"kind": "kill", "agent": "math-a", "at_call": 1}])
    report, runs = await run_collecting(sc)
    storm = report.system("faulty")
    assert storm.metrics.success_rate == 1.0
    assert storm.metrics.accuracy == 1.0  # perfect agents: the crash cost no answer
    (kill,) = storm.faults
    assert kill["triggered"] and kill["effects"] == {"replicas_killed": 1}
    assert kill["tasks_exposed"] == 3 and kill["tasks_answered"] == 3
    assert kill["tasks_recovered"] == 1
    assert storm.metrics.recovered_tasks == 1
    assert storm.metrics.success_under_faults == 1.0
    first = runs["faulty"][0]
    (reroute,) = decisions(first, "reroute")
    assert reroute["agent"] == "math-a" and "vanished" in reroute["reason"]
    assert all(agent_of_step(r, "math") == "math-b" for r in runs["faulty"])


async def test_dropped_task_messages_time_out_and_are_rerouted() -> None:
    sc = scenario(
        [{"kind": "drop", "topic": "rede.task.math.math-a", "kinds": ["task"]}],
        network=pairs_network(step_timeout_s=0.3),
        tasks=2,
    )
    report, runs = await run_collecting(sc)
    (drop,) = report.system("faulty").faults
    assert drop["effects"]["dropped"] >= 1
    assert report.system("faulty").metrics.success_rate == 1.0
    reroutes = [d for r in runs["faulty"] for d in decisions(r, "reroute")]
    assert reroutes and all(d["agent"] == "math-a" for d in reroutes)
    assert all("no reply within" in d["reason"] for d in reroutes)
    assert all(agent_of_step(r, "math") == "math-b" for r in runs["faulty"])


async def test_delayed_replies_arrive_late_but_are_used() -> None:
    sc = scenario(
        [{"kind": "delay", "agent": "math-a", "kinds": ["result"], "delay_s": 0.2}], tasks=2
    )
    report, runs = await run_collecting(sc)
    (delay,) = report.system("faulty").faults
    assert delay["effects"] == {"delayed": 2}  # one math result per task
    for run in runs["faulty"]:
        assert run is not None and run.status == "ok"
        assert agent_of_step(run, "math") == "math-a"  # no re-route: late, not lost
        assert not decisions(run, "reroute")
        assert run.wall_time_s >= 0.2
    assert report.system("faulty").metrics.accuracy == 1.0


async def test_corrupted_outputs_are_wrong_but_confident() -> None:
    data = pairs_network()
    data["agents"] = [a for a in data["agents"] if a["name"] in ("planner", "geo")]
    sc = Scenario.from_dict(
        {
            "name": "corrupt",
            "time_scale": 0.0,
            "concurrency": 2,
            "workload": {"kind": "multipart", "tasks": 4, "parts": 1, "domains": ["geography"]},
            "systems": [
                {"name": "calm", "network": data},
                {
                    "name": "faulty",
                    "network": data,
                    "faults": [{"kind": "corrupt", "agent": "geo"}],
                },
            ],
        }
    )
    report, runs = await run_collecting(sc)
    assert report.system("calm").metrics.accuracy == 1.0
    faulty = report.system("faulty")
    assert faulty.metrics.success_rate == 1.0  # corruption is silent
    assert faulty.metrics.accuracy == 0.0
    assert faulty.faults[0]["effects"] == {"corrupted": 4}
    for run in runs["faulty"]:
        assert run is not None and run.confidence > 0


async def test_partitioned_agent_vanishes_and_its_work_moves() -> None:
    sc = scenario([{"kind": "partition", "agents": ["math-a"]}], tasks=2)
    report, runs = await run_collecting(sc)
    faulty = report.system("faulty")
    assert faulty.metrics.success_rate == 1.0
    assert faulty.faults[0]["effects"]["dropped"] >= 2  # its task and its heartbeats
    (reroute,) = decisions(runs["faulty"][0], "reroute")
    assert reroute["agent"] == "math-a"
    assert all(agent_of_step(r, "math") == "math-b" for r in runs["faulty"])


async def test_slowed_agent_reports_its_latency_multiplied() -> None:
    sc = scenario(
        [{"kind": "slow", "agent": "math-a", "factor": 4}],
        tasks=2,
        calm=True,
        time_scale=0.01,
    )
    report, runs = await run_collecting(sc)
    assert report.system("faulty").faults[0]["effects"] == {"slowed_calls": 2}
    for calm, slow in zip(runs["calm"], runs["faulty"], strict=True):
        assert calm is not None and slow is not None
        base = next(s for s in calm.steps if s.capability == "math").usage.latency_s
        slowed = next(s for s in slow.steps if s.capability == "math").usage.latency_s
        assert base > 0 and slowed == pytest.approx(4 * base)
        assert slow.critical_path_s > calm.critical_path_s


async def test_task_window_bounds_a_fault() -> None:
    sc = scenario(
        [{"kind": "drop", "topic": "rede.task.math.math-a", "at_task": 1, "for_tasks": 1}],
        network=pairs_network(step_timeout_s=0.3),
        tasks=3,
    )
    report, runs = await run_collecting(sc)
    assert [bool(decisions(r, "reroute")) for r in runs["faulty"]] == [False, True, False]
    (drop,) = report.system("faulty").faults
    assert drop["tasks_exposed"] == 1 and drop["effects"]["dropped"] == 1
    assert [agent_of_step(r, "math") for r in runs["faulty"]] == ["math-a", "math-b", "math-a"]


def test_fault_configs_are_checked() -> None:
    with pytest.raises(ValueError, match="needs 'agent'"):
        FaultConfig.model_validate({"kind": "kill"})
    with pytest.raises(ValueError, match="one of at_s, at_task, at_call"):
        FaultConfig.model_validate({"kind": "kill", "agent": "x", "at_s": 1, "at_task": 2})
    net = Network.from_dict(pairs_network())
    with pytest.raises(ConfigError, match="not in network"):
        validate_faults(net, [FaultConfig(kind="slow", agent="nobody")])


def test_garble_changes_every_value_and_keeps_confidence() -> None:
    text = "[simulated x] done\n- p1: 391\n- p2: Ostrand\nCONFIDENCE: 0.91"
    out = garble(text)
    assert "391" not in out and "Ostrand" not in out
    assert "- p1: " in out and "CONFIDENCE: 0.91" in out
    assert garble("plain words\nCONFIDENCE: 0.5").endswith("CONFIDENCE: 0.5")


# --------------------------------------------------------------------------- metrics


def two_part_task() -> SimTask:
    parts = [
        Part(id="a", question="Find A.", capability="research", truth="1", wrong=["2"]),
        Part(
            id="b",
            question="Derive B.",
            capability="analyse",
            truth="10",
            wrong=["20"],
            depends_on=["a"],
        ),
    ]
    ideal = Plan(
        steps=[
            Step(id="a", capability="research", instruction="Find A."),
            Step(id="b", capability="analyse", instruction="Derive B.", depends_on=["a"]),
        ]
    )
    return SimTask(id="t0", request="A and B", parts=parts, ideal_plan=ideal)


def test_decomposition_against_the_ideal_plan() -> None:
    ideal = two_part_task().ideal_plan
    assert decomposition(ideal, ideal).score == 1.0
    merged = Plan(steps=[Step(id="x", capability="research", instruction="Find A. Derive B.")])
    d = decomposition(merged, ideal)
    assert d.capability_f1 == pytest.approx(2 / 3)  # {research} vs {research, analyse}
    assert d.step_f1 == pytest.approx(2 / 3)  # one match of 1 actual + 2 ideal
    assert d.edge_f1 == 0.0
    flat = Plan(
        steps=[
            Step(id="s1", capability="research", instruction="Find A."),
            Step(id="s2", capability="research", instruction="Derive B."),
        ]
    )
    d = decomposition(flat, ideal)
    assert (d.capability_f1, d.step_f1, d.edge_f1) == (0.5, 1.0, 0.0)
    no_edges = Plan(steps=[Step(id="x", capability="math", instruction="Q")])
    assert decomposition(no_edges, no_edges).edge_f1 is None
    assert decomposition(None, ideal).score == 0.0


def test_task_outcome_from_a_hand_built_run() -> None:
    task = two_part_task()
    run = RunResult(
        run_id="run-1",
        request=task.request,
        status="ok",
        answer="Report\n- a: 1\n- b: 20\n",
        plan=task.ideal_plan,
        usage=Usage(prompt_tokens=100, completion_tokens=50, cost_usd=0.002, calls=3),
        steps=[StepRecord(id="a", capability="research", instruction="Find A.")],
        decisions=[{"name": "route"}, {"name": "reroute"}, {"name": "retry"}],
        wall_time_s=3.0,
        critical_path_s=2.0,
    )
    traffic = Traffic()
    for kind, size in [("task", 100), ("result", 200), ("event", 50)]:
        traffic.add(kind, size)
    out = task_outcome(task, run, traffic=traffic, started_s=1.0, ended_s=4.0, windows=[(3.5, 9.0)])
    assert (out.correct, out.parts_correct, out.parts) == (False, 1, 2)
    assert out.overhead == 1.5
    assert (out.messages, out.events, out.bytes) == (2, 1, 350)
    assert (out.tokens, out.cost_usd, out.model_calls) == (150, 0.002, 3)
    assert out.recoveries == 2 and out.exposed
    assert out.decomposition.score == 1.0
    assert grade(task, "- a: 1\n- b: 10") == {"a": True, "b": True}
    failed = task_outcome(task, run.model_copy(update={"status": "failed", "error": "boom"}))
    assert failed.correct is False and failed.parts_correct == 0 and failed.error == "boom"
    assert task_outcome(task, None, error="never ran").status == "failed"


def test_percentiles_and_aggregate() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5.0], 95) == 5.0
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    task = two_part_task()

    def run(status: str, answer: str, wall: float) -> RunResult:
        return RunResult(
            run_id="r",
            request="q",
            status=status,  # type: ignore[arg-type]
            answer=answer,
            plan=task.ideal_plan,
            usage=Usage(cost_usd=0.01, prompt_tokens=10),
            wall_time_s=wall,
            critical_path_s=wall / 2,
        )

    outcomes = [
        task_outcome(task, run("ok", "- a: 1\n- b: 10", 1.0)),
        task_outcome(task, run("ok", "- a: 1\n- b: 20", 2.0), windows=[(0, 1)], ended_s=1),
        task_outcome(task, run("failed", "", 3.0), windows=[(0, 1)], ended_s=1),
        task_outcome(task, run("ok", "- a: 1\n- b: 10", 4.0)),
    ]
    m = aggregate(outcomes, wall_s=9.0)
    assert m.tasks == 4 and m.accuracy == 0.5
    assert m.part_accuracy == 5 / 8
    assert m.success_rate == 0.75
    assert m.latency_p50_s == 2.5 and m.latency_p95_s == pytest.approx(3.85)
    assert m.overhead_p50 == 2.0
    assert m.exposed_tasks == 2 and m.success_under_faults == 0.5
    assert m.cost_per_task_usd == pytest.approx(0.01) and m.total_cost_usd == pytest.approx(0.04)
    assert aggregate([task_outcome(task, run("ok", "", 1.0))]).success_under_faults is None


# --------------------------------------------------------------------------- workload, runs


def test_workloads_are_deterministic_and_gradable() -> None:
    conf = WorkloadConfig(kind="multipart", tasks=3, parts=3, domains=["math", "custom"])
    a, b = generate(conf, 1), generate(conf, 1)
    assert a == b and generate(conf, 2) != a
    for task in a:
        assert len(task.ideal_plan.steps) == 3
        right = "\n".join(f"- {p.id}: {p.truth}" for p in task.parts)
        assert all(grade(task, right).values())
        first = task.parts[0]
        assert not grade(task, right.replace(f"{first.id}: {first.truth}", f"{first.id}: x"))[
            first.id
        ]
    report = generate(WorkloadConfig(kind="report", tasks=1), 0)[0]
    market = report.part("market")
    assert market.depends_on == ["revenue", "share"]
    assert int(market.truth) == round(
        int(report.part("revenue").truth) * 100 / int(report.part("share").truth)
    )


async def test_comparison_on_a_small_workload_reports_both_systems() -> None:
    sc = Scenario.from_yaml(bundled_scenarios()["comparison"])
    report = await run_scenario(sc, tasks=4, time_scale=0.0)
    assert report.simulated and "SIMULATED" in report.note
    big, small = report.system("one-70b"), report.system("four-specialists")
    assert big.metrics.messages_per_task == 2.0  # one task, one result: a single step
    assert small.metrics.messages_per_task > big.metrics.messages_per_task
    assert small.metrics.decomposition > big.metrics.decomposition
    assert all(o.status == "ok" for s in report.systems for o in s.tasks)


def test_bundled_scenarios_are_valid() -> None:
    bundled = bundled_scenarios()
    assert {"comparison", "research-report", "fault-storm"} <= set(bundled)
    for path in bundled.values():
        sc = Scenario.from_yaml(path)
        for system in sc.systems:
            validate_faults(Network(sc.network_config(system)), system.faults)


async def test_scenario_on_redis(redis_server: Any) -> None:
    sc = scenario([{"kind": "kill", "agent": "math-a", "at_call": 1}], tasks=2)
    report = await run_scenario(sc, bus_url=redis_server.url)
    faulty = report.system("faulty")
    assert faulty.bus.startswith("redis://")
    assert faulty.metrics.success_rate == 1.0 and faulty.metrics.recovered_tasks == 1


# --------------------------------------------------------------------------- CLI


def test_cli_runs_a_tiny_scenario_and_writes_reports(tmp_path: Path) -> None:
    sc = {
        "name": "cli-tiny",
        "time_scale": 0.0,
        "workload": {"kind": "multipart", "tasks": 2, "parts": 2, "domains": ["math", "geography"]},
        "systems": [
            {
                "name": "tiny",
                "network": pairs_network(),
                "faults": [{"kind": "kill", "agent": "math-a", "at_task": 1}],
            }
        ],
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(sc))
    result = CliRunner().invoke(sim_app, [str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "SIMULATED" in result.output and "faults injected into tiny" in result.output
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["simulated"] is True and data["systems"][0]["metrics"]["tasks"] == 2
    assert data["systems"][0]["faults"][0]["effects"] == {"replicas_killed": 1}
    assert "Simulated models" in (tmp_path / "out" / "report.md").read_text()


def test_cli_lists_bundled_scenarios_and_names_errors() -> None:
    listed = CliRunner().invoke(sim_app, ["--list"])
    assert listed.exit_code == 0 and "fault-storm" in listed.output
    missing = CliRunner().invoke(sim_app, ["no-such-scenario"])
    assert missing.exit_code == 1 and "bundled" in missing.output


# --------------------------------------------------------------------------- regressions


def hand_run(task: SimTask, status: str = "ok", wall: float = 1.0, **kw: Any) -> RunResult:
    return RunResult(
        run_id=kw.pop("run_id", "r"),
        request=task.request,
        status=status,  # type: ignore[arg-type]
        answer=kw.pop("answer", "- a: 1\n- b: 10"),
        plan=kw.pop("plan", task.ideal_plan),
        wall_time_s=wall,
        critical_path_s=kw.pop("critical_path_s", wall / 2),
        **kw,
    )


def test_runs_with_no_record_do_not_count_as_zero_latency(tmp_path: Path) -> None:
    task = two_part_task()
    outcomes = [
        task_outcome(task, hand_run(task, wall=4.0)),
        task_outcome(task, hand_run(task, wall=6.0)),
        task_outcome(task, None, error="never ran"),
    ]
    m = aggregate(outcomes)
    assert m.latency_p50_s == 5.0 and m.latency_p95_s == pytest.approx(5.9)
    assert m.success_rate == pytest.approx(2 / 3) and m.accuracy == pytest.approx(2 / 3)
    nothing = aggregate([task_outcome(task, None, error="never ran")])
    assert nothing.latency_p50_s is None and nothing.latency_p95_s is None
    report = SimReport(
        scenario="s", time_scale=0, seed=0, concurrency=1, workload=WorkloadConfig(tasks=1)
    )
    report.systems.append(
        SystemReport(name="x", network="n", agents=[], bus="memory://", metrics=nothing)
    )
    write(report, tmp_path)  # a report of only failed runs is still valid JSON
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["systems"][0]["metrics"]["latency_p50_s"] is None


def test_a_misspelt_envelope_kind_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"systems\.0\.faults\.0\.kinds\.0"):
        scenario([{"kind": "drop", "topic": "rede.task.math.math-a", "kinds": ["results"]}])
    assert scenario([{"kind": "delay", "kinds": ["result"]}]).systems[0].faults[0].kinds == [
        "result"
    ]


def test_a_run_without_a_plan_does_not_invent_an_edge_score() -> None:
    flat = Plan(steps=[Step(id="p1", capability="math", instruction="Q1")])
    assert decomposition(None, flat).edge_f1 is None and decomposition(None, flat).score == 0.0
    assert decomposition(None, two_part_task().ideal_plan).edge_f1 == 0.0
    task = SimTask(
        id="t",
        request="Q1",
        parts=[Part(id="p1", question="Q1", capability="math", truth="1", wrong=["2"])],
        ideal_plan=flat,
    )
    ok = task_outcome(task, hand_run(task, answer="- p1: 1", plan=flat))
    m = aggregate([ok, task_outcome(task, None, error="never ran")])
    assert m.edge_f1 is None  # no run's plan nor ideal plan has dependencies
    assert m.decomposition == 0.5


async def test_a_bad_fault_in_a_later_system_fails_before_any_run() -> None:
    sc = scenario([{"kind": "slow", "agent": "nobody"}], calm=True)
    ran: list[str] = []
    with pytest.raises(ConfigError, match=r"system 'faulty'.*'nobody'"):
        await run_scenario(sc, on_run=lambda system, task, run: ran.append(system))
    assert ran == []  # the calm system did not run first
