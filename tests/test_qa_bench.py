"""GSM8K and MMLU-Pro through replayed real models and agreement networks.

Tests that need recorded GSM8K outputs read a small cut of them in
``tests/fixtures/gsm8k-zeroeval`` (the first 10 questions, three models; see
``tests/fixtures/README.md``); full benchmark runs read ``../shared/data/gsm8k-zeroeval``. The
MMLU-Pro format and every error path use small files written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rede.cli.app import app
from rede.errors import ConfigError
from rede.evals.datasets import GSM8K, MMLUPro
from rede.evals.qa import run_qa
from rede.evals.systems import ModelSystem, NetworkSystem
from rede.models import ModelRequest
from rede.models.replay import RecordingNotFound, ReplayModel

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "fixtures" / "gsm8k-zeroeval"
N = 10
"""Questions in the fixture."""

RIGHT = {  # of the fixture's 10, by ZeroEval's rule (the JSON "answer" equals the gold number)
    "gemma-2-9b-it": 9,
    "Meta-Llama-3.1-8B-Instruct": 6,
    "Meta-Llama-3.1-70B-Instruct": 9,
}
"""Counted from the fixture's records with ``rede.answers.json_number`` against the gold
answers (on all 1,319 questions ZeroEval published 87.41 % for gemma-2-9b-it and 94.16 % for
Llama-3.1-70B; ``rede bench gsm8k --data ../shared/data/gsm8k-zeroeval`` is that full run)."""


def fixture_network(tmp_path: Path) -> Path:
    """The agreement example network, its replayed models read from the fixture."""
    conf = yaml.safe_load((ROOT / "examples" / "gsm8k-agree-70b.yaml").read_text())
    for model in conf["models"].values():
        model["spec"] = "replay:" + str(DATA / "outputs" / Path(model["spec"]).name)
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


@pytest.mark.parametrize("model", sorted(RIGHT))
async def test_a_replayed_model_scores_what_it_answered(model: str, tmp_path: Path) -> None:
    system = ModelSystem(ReplayModel.from_path(DATA / "outputs" / f"{model}.json"))
    summary = await run_qa(system, GSM8K(DATA), out=tmp_path, progress=False)
    assert summary.n == N and summary.errors == 0
    assert summary.accuracy == pytest.approx(100 * RIGHT[model] / N)
    assert summary.source == "replay" and summary.tokens_estimated


def test_cli_runs_the_agreement_network_and_writes_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = CliRunner().invoke(
        app,
        [
            "bench", "gsm8k", "--network", str(fixture_network(tmp_path)),
            "--data", str(DATA), "--limit", str(N), "--out", str(out), "-q",
        ],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    summary = json.loads((out / "summary.json").read_text())
    for key in ("accuracy", "n", "cost_usd_per_task", "calls_per_task", "escalated_pct"):
        assert key in summary
    assert summary["n"] == N and summary["source"] == "replay"
    assert set(summary["by_agent"]) == {"gemma-2-9b", "llama31-8b", "llama31-70b"}
    assert summary["by_agent"]["gemma-2-9b"]["calls"] == N  # the first tier answers everything
    escalated = summary["by_agent"]["llama31-70b"]["calls"]
    assert escalated > 0, "the two small models disagree on some of the fixture's questions"
    assert summary["escalated_pct"] == pytest.approx(100 * escalated / N)
    assert summary["calls_per_task"] == pytest.approx(2 + escalated / N)
    assert summary["cost_usd_per_task"] > 0
    assert "replayed" in run.output


def test_example_prices_are_the_cited_catalogue_prices() -> None:
    catalogue = yaml.safe_load((ROOT / "benchmarks" / "gsm8k" / "models.yaml").read_text())
    by_file = {m["file"]: m for m in catalogue["models"].values()}
    for example in sorted((ROOT / "examples").glob("gsm8k-*.yaml")):
        conf = yaml.safe_load(example.read_text())
        for name, model in conf["models"].items():
            listed = by_file[Path(model["spec"]).name]
            price = model["price"]
            assert price["input_per_1k"] == pytest.approx(listed["input"] / 1000), name
            assert price["output_per_1k"] == pytest.approx(listed["output"] / 1000), name


async def test_a_network_whose_agreement_is_not_the_benchmarks_is_refused(tmp_path: Path) -> None:
    path = fixture_network(tmp_path)
    conf = yaml.safe_load(path.read_text())
    conf["routing"]["agreement"]["solve"]["answer"] = "choice"
    path.write_text(yaml.safe_dump(conf))
    with pytest.raises(ConfigError, match="scored with 'json_number'"):
        await run_qa(NetworkSystem(path), GSM8K(DATA), out=tmp_path / "out", progress=False)


def test_gsm8k_data_errors_name_the_thing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        GSM8K(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"has no test\.jsonl"):
        GSM8K(tmp_path)
    (tmp_path / "test.jsonl").write_text('{"question": "Q?", "answer": "no marker"}\n')
    with pytest.raises(ConfigError, match=r"test.jsonl:1 is not a GSM8K record"):
        GSM8K(tmp_path)


def _zeroeval(path: Path, records: list[tuple[str, str]]) -> Path:
    path.write_text(
        json.dumps(
            [
                {"id": f"q{i}", "question": q, "output": [reply], "generator": "test/model"}
                for i, (q, reply) in enumerate(records)
            ]
        )
    )
    return path


async def test_a_question_missing_from_the_recordings_is_refused_before_any_run(
    tmp_path: Path,
) -> None:
    data = tmp_path / "gsm"
    data.mkdir()
    questions = ["How many ducks are there in the pond today?", "What is six times seven?"]
    lines = [
        json.dumps({"question": q, "answer": f"...\n#### {i}"}) for i, q in enumerate(questions)
    ]
    (data / "test.jsonl").write_text("\n".join(lines) + "\n")
    recorded = _zeroeval(tmp_path / "rec.json", [(questions[0], '{"answer": "0"}')])
    system = ModelSystem(ReplayModel.from_path(recorded))
    with pytest.raises(ConfigError, match=r"no recording of gsm8k question gsm8k-main-test-#1"):
        await run_qa(system, GSM8K(data), out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "gsm8k.jsonl").exists()  # nothing ran
    summary = await run_qa(system, GSM8K(data), out=tmp_path / "one", limit=1, progress=False)
    assert summary.accuracy == 100.0


async def test_replay_finds_the_question_inside_any_prompt(tmp_path: Path) -> None:
    short = "What is six times seven?"
    longer = "Tom has 3 apples. " + short
    model = ReplayModel.from_path(
        _zeroeval(tmp_path / "rec.json", [(short, "short"), (longer, "longer")])
    )
    assert model.generator == "test/model"
    wrapped = f"You are a specialist.\n\nRequest:\n## Question:\n\n{longer}\n\nCONFIDENCE: x"
    assert (await model.complete(ModelRequest.of(wrapped))).text == "longer"
    assert (await model.complete(ModelRequest.of(f"Q: {short}"))).text == "short"
    with pytest.raises(RecordingNotFound, match="contains none of the recorded questions"):
        await model.complete(ModelRequest.of("What is six times eight?"))


MMLU = [
    {
        "question_id": 70,
        "question": "Which gas makes up most of Earth's atmosphere?",
        "options": ["Oxygen", "Nitrogen", "Argon", "Carbon dioxide"],
        "answer": "B",
        "answer_index": 1,
        "category": "physics",
        "pred": "B",
        "generated_text": "Air is mostly nitrogen. The answer is (B).",
    },
    {
        "question_id": 71,
        "question": "Which gas makes up most of Earth's atmosphere?",
        "options": ["Helium", "Neon", "Nitrogen", "Xenon"],
        "answer": "C",
        "answer_index": 2,
        "category": "physics",
        "pred": "A",
        "generated_text": "Answer: A",
    },
    {
        "question_id": 72,
        "question": "What is the capital of France?",
        "options": ["Paris", "Rome", "Madrid", "Berlin", "Lisbon", "Vienna", "Oslo"],
        "answer": "G",
        "answer_index": 6,
        "category": "geography",
        "pred": None,
        "generated_text": "i am not sure.",
    },
]


async def test_mmlu_pro_recordings_replay_and_score_as_published(tmp_path: Path) -> None:
    file = tmp_path / "model_outputs_test-model_5shots.json"
    file.write_text(json.dumps(MMLU))
    bench = MMLUPro(file)
    model = ReplayModel.from_path(file)
    # the same question twice, told apart by its options
    assert (await model.complete(ModelRequest.of(bench.prompt(bench.questions()[1])))).text == (
        "Answer: A"
    )
    summary = await run_qa(ModelSystem(model), bench, out=tmp_path / "out", progress=False)
    # right; wrong; no letter at all counts as the published script's fixed guess G: right
    assert summary.correct == 2 and summary.n == 3


def test_mmlu_pro_data_errors_name_the_thing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"question": "x"}]))
    with pytest.raises(ConfigError, match="is not MMLU-Pro data"):
        MMLUPro(bad)
    bad.write_text(json.dumps([{**MMLU[0], "answer": "Z"}]))
    with pytest.raises(ConfigError, match="question 70"):
        MMLUPro(bad)
    with pytest.raises(ConfigError, match="in no known format"):
        ReplayModel.from_path(_bbh_like(tmp_path))


def _bbh_like(tmp_path: Path) -> Path:
    path = tmp_path / "other.json"
    path.write_text(json.dumps([{"prompt": "x", "completion": "y"}]))
    return path
