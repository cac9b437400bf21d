"""The Rede half of the side-by-side benchmark (benchmarks/peers) runs end to end.

The peers (AutoGen, LangGraph, CrewAI) live in their own venv and are not part of CI; this
runs ``benchmarks/peers/run.py`` for Rede alone, once per model latency, so the script, the
workflow's YAML network and the deterministic model cannot rot.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import yaml

PEERS = Path(__file__).resolve().parents[1] / "benchmarks" / "peers"
_spec = importlib.util.spec_from_file_location("peers_workflow", PEERS / "workflow.py")
assert _spec is not None and _spec.loader is not None
workflow = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(workflow)


def test_rede_yaml_uses_the_shared_role_texts() -> None:
    """Every framework gets the same prompts: the YAML network's templates open with them."""
    network = yaml.safe_load((PEERS / "rede_workflow.yaml").read_text())
    prompts = {cap: text for a in network["agents"] for cap, text in a["prompts"].items()}
    assert prompts["plan"].startswith(workflow.PLANNER)
    assert prompts["research"].startswith(workflow.RESEARCHER)
    assert prompts["write"].startswith(workflow.WRITER)
    assert prompts["critique"].startswith(workflow.CRITIC)


def test_the_model_asks_for_exactly_one_revision() -> None:
    def ask(role_text: str, *shown: str) -> str:
        messages = [{"role": "system", "content": role_text}]
        messages += [{"role": "user", "content": text} for text in shown]
        return workflow.respond({"messages": messages})

    plan = ask(workflow.PLANNER, workflow.REQUEST)
    assert workflow.parse_sub_questions(plan) == list(workflow.SUB_QUESTIONS)
    draft = ask(workflow.WRITER, "findings")
    critique = ask(workflow.CRITIC, draft)
    assert critique.startswith(workflow.REVISE_MARK)
    revision = ask(workflow.WRITER, "findings", draft, critique)
    assert revision.startswith(workflow.REVISED_MARK)
    assert ask(workflow.CRITIC, draft, critique, revision) == workflow.APPROVED


def test_rede_half_of_the_benchmark_runs(tmp_path: Path) -> None:
    command = [
        sys.executable,
        str(PEERS / "run.py"),
        "--frameworks",
        "rede",
        "--n",
        "1",
        "--warmup",
        "0",
        "--latency-ms",
        "20",
        "--setup",
        "never",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    results = json.loads((tmp_path / "results.json").read_text())
    rede = results["frameworks"]["rede"]
    assert rede["status"] == "ok", rede["error"]
    for label in ("0ms", "20ms"):
        (task,) = rede["tasks"][label]
        assert task["calls"] == {
            "planner": 1,
            "researcher": 2,
            "writer": 2,
            "critic": 2,
            "other": 0,
        }
        assert task["research_branches"] == [1, 1]
        assert task["final_is_revision"]
        assert task["prompt_tokens"] > 0
    assert rede["tasks"]["20ms"][0]["researchers_overlapped"]
    assert rede["peak_rss_kb"] > 0

    report = (tmp_path / "RESULTS.md").read_text()
    assert "| Rede |" in report
    assert "End-to-end latency within" in report
