"""The mixed workload: GSM8K, MATH level 5 and CRUXEval interleaved without labels, a
dispatcher that classifies each request and routes it to its domain's specialists.

Runs on the fixtures (10 GSM8K questions, 20 MATH-L5, 20 CRUXEval, each answered by
gemma-2-9b-it, Llama-3.1-8B and Llama-3.1-70B as ZeroEval recorded them; see
``tests/fixtures/README.md``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from rede.cli.app import app
from rede.errors import ConfigError
from rede.evals.classifier import DomainClassifier, check_domains, dispatch_tool
from rede.evals.mix import DOMAINS, MixedWorkload, run_mix
from rede.evals.mix_cli import build_system, train_classifier
from rede.evals.systems import NetworkSystem
from rede.network import Network

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DATA = {
    "gsm8k": FIXTURES / "gsm8k-zeroeval",
    "math": FIXTURES / "zeroeval-math-l5",
    "crux": FIXTURES / "zeroeval-crux",
}
FILES = {
    "gemma9b": "gemma-2-9b-it.json",
    "llama8b": "Meta-Llama-3.1-8B-Instruct.json",
    "llama70b": "Meta-Llama-3.1-70B-Instruct.json",
}
ANSWER = {"gsm8k": "json_number", "math": "math_number", "crux": "crux_literal"}


def workload() -> MixedWorkload:
    return MixedWorkload.from_paths(DATA["gsm8k"], DATA["math"], DATA["crux"])


def replay_folder(tmp_path: Path, model: str, domains: tuple[str, ...] = DOMAINS) -> Path:
    """A model's recordings of several datasets, as one replay folder."""
    folder = tmp_path / "replay" / f"{model}-{'-'.join(domains)}"
    folder.mkdir(parents=True, exist_ok=True)
    for d in domains:
        (folder / f"{d}.json").symlink_to(DATA[d] / "outputs" / FILES[model])
    return folder


def routed_yaml(tmp_path: Path, domains: tuple[str, ...] = DOMAINS) -> Path:
    """A dispatcher and, per domain, two small models that must agree, else the 70B."""
    conf: dict = {
        "name": "mix-test",
        "models": {
            m: {
                "spec": f"replay:{replay_folder(tmp_path, m)}",
                "price": {"input_per_1k": 0.001, "output_per_1k": 0.001},
            }
            for m in FILES
        },
        "agents": [{"name": "dispatcher", "tool": "dispatch", "capabilities": ["plan"]}],
        "routing": {"agreement": {}},
        "limits": {"step_retries": 0, "plan_repairs": 0},
    }
    for d in domains:
        for m in FILES:
            conf["agents"].append({"name": f"{d}-{m}", "capabilities": [d], "model": m})
        conf["routing"]["agreement"][d] = {
            "answer": ANSWER[d],
            "tiers": [{"agents": [f"{d}-gemma9b", f"{d}-llama8b"], "min_agree": 2},
                      {"agents": [f"{d}-llama70b"]}],
        }  # fmt: skip
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


def bench_mix(network: Path, out: Path, *more: str) -> Result:
    """``rede bench mix`` of ``network`` on the fixtures' three datasets."""
    return CliRunner().invoke(
        app,
        ["bench", "mix", "--network", str(network), "--gsm8k", str(DATA["gsm8k"]),
         "--math", str(DATA["math"]), "--crux", str(DATA["crux"]), "--out", str(out), *more],
    )  # fmt: skip


def test_every_dataset_is_split_once_into_dev_and_test() -> None:
    work = workload()
    for d, total in (("gsm8k", 10), ("math", 20), ("crux", 20)):
        dev = {q.id for q in work.questions(d, "dev")}
        test = {q.id for q in work.questions(d, "test")}
        assert not dev & test and len(dev | test) == total
        assert len(dev) == round(0.3 * total)
    again = workload()
    assert [(i.domain, i.question.id) for i in again.items("test")] == [
        (i.domain, i.question.id) for i in work.items("test")
    ]
    domains = [i.domain for i in work.items("test")]
    assert domains != sorted(domains), "the split's questions are interleaved"


def test_a_request_is_the_question_and_zeroeval_prompt_only() -> None:
    work = workload()
    for item in work.items("test"):
        prompt = work.prompt(item)
        assert item.question.text in prompt
        assert item.domain not in prompt.lower().split("## instruction")[1]


def test_the_classifier_learns_domains_from_dev_text_alone() -> None:
    work = workload()
    clf = train_classifier(work)
    assert clf.domains == sorted(DOMAINS)
    test = work.items("test")
    right = sum(clf.classify(work.prompt(it))[0] == it.domain for it in test)
    assert right >= 0.8 * len(test)
    again = DomainClassifier.from_json(clf.to_json())
    assert [again.classify(work.prompt(it)) for it in test] == [
        clf.classify(work.prompt(it)) for it in test
    ]


def test_a_classifier_naming_an_unknown_domain_is_refused() -> None:
    clf = DomainClassifier.train(["a sum", "some code", "a poem"], ["math", "crux", "poetry"])
    with pytest.raises(ConfigError, match="names domain 'poetry', which no specialist"):
        check_domains(clf, {"math", "crux", "plan"}, "network 'x'")


async def test_the_dispatcher_routes_and_the_ledger_records_it(tmp_path: Path) -> None:
    work = workload()
    tool = dispatch_tool(train_classifier(work))
    item = next(it for it in work.items("test") if it.domain == "crux")
    ledger = tmp_path / "runs.db"
    async with Network.from_yaml(routed_yaml(tmp_path), tools=[tool], ledger=ledger) as net:
        result = await net.ask(work.prompt(item))
    plan = next(d for d in result.decisions if d["name"] == "plan")
    assert plan["intent"].startswith("domain:crux")
    assert [s["capability"] for s in plan["plan"]["steps"]] == ["crux"]
    votes = {d["agent"] for d in result.decisions if d["name"] == "vote"}
    assert {"crux-gemma9b", "crux-llama8b"} <= votes
    assert any(d["name"] == "agreement" for d in result.decisions)
    shown = CliRunner().invoke(app, ["trace", "--ledger", str(ledger)])
    assert shown.exit_code == 0 and "vote" in shown.output and "agreement" in shown.output


async def test_run_mix_scores_each_domain_and_counts_routing(tmp_path: Path) -> None:
    work = workload()
    system, _ = build_system(work, routed_yaml(tmp_path), None)
    try:
        summary = await run_mix(system, work, split="test", out=tmp_path / "out", progress=False)
    finally:
        await system.aclose()
    assert summary.n == len(work.items("test")) and summary.errors == 0
    assert set(summary.by_domain) == set(DOMAINS)
    assert summary.misrouted_pct is not None
    gsm = summary.by_domain["gsm8k"]
    assert 2.0 <= gsm.model_calls_per_task <= 3.0  # the pair always, the 70B on a split
    assert summary.by_agent.get("dispatcher") is None  # a tool: not a model call
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["accuracy"] == pytest.approx(summary.accuracy)
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_a_network_without_a_domain_is_refused_naming_it(tmp_path: Path) -> None:
    path = routed_yaml(tmp_path, domains=("gsm8k", "math"))
    run = bench_mix(path, tmp_path / "out", "-q")
    assert run.exit_code == 1
    assert "names domain 'crux', which no specialist" in run.output
    assert not (tmp_path / "out" / "summary.json").exists()


async def test_run_mix_refuses_a_routed_network_missing_a_domain(tmp_path: Path) -> None:
    work = workload()
    tool = dispatch_tool(train_classifier(work))
    system = NetworkSystem(routed_yaml(tmp_path, domains=("gsm8k", "crux")), tools=[tool])
    with pytest.raises(ConfigError, match="no specialist for domain 'math'"):
        await run_mix(system, work, split="test", out=tmp_path / "out", progress=False)
    await system.aclose()


def test_specialists_recorded_on_another_benchmark_are_refused(tmp_path: Path) -> None:
    path = routed_yaml(tmp_path)
    conf = yaml.safe_load(path.read_text())
    wrong = replay_folder(tmp_path, "gemma9b", ("crux",))  # no GSM8K or MATH recordings
    conf["models"]["gemma9b"]["spec"] = f"replay:{wrong}"
    path.write_text(yaml.safe_dump(conf))
    run = bench_mix(path, tmp_path / "out", "-q")
    assert run.exit_code == 1
    assert "model 'gemma9b'" in run.output and "has no recording of" in run.output
    assert not (tmp_path / "out" / "summary.json").exists()


def test_cli_runs_the_test_split_and_prints_the_table(tmp_path: Path) -> None:
    run = bench_mix(
        routed_yaml(tmp_path), tmp_path / "out", "--split", "test", "--ledger",
        str(tmp_path / "runs.db"), "-q",
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    assert "replayed" in run.output and "misrouted" in run.output
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["split"] == "test" and saved["n"] == 7 + 14 + 14
    assert (tmp_path / "out" / "classifier.json").exists()
    shown = CliRunner().invoke(app, ["trace", "--ledger", str(tmp_path / "runs.db")])
    assert shown.exit_code == 0 and "plan" in shown.output and "vote" in shown.output
