"""MATH level 5 and CRUXEval as ZeroEval asks and scores them, through replayed real models.

The fixtures (``tests/fixtures/zeroeval-math-l5``, ``tests/fixtures/zeroeval-crux``) are the
first 20 records of three models' published ZeroEval outputs (see
``tests/fixtures/README.md``). The full sets in ``../shared/data`` are read by the last
tests only, which are skipped on a checkout without them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rede.answers import crux_literal, math_number
from rede.cli.app import app
from rede.errors import ConfigError
from rede.evals.qa import run_qa
from rede.evals.systems import ModelSystem
from rede.evals.zeroeval import Crux, MathL5
from rede.models.replay import ReplayModel

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
MATH = FIXTURES / "zeroeval-math-l5"
CRUX = FIXTURES / "zeroeval-crux"
SHARED = ROOT.parent / "shared" / "data"
N = 20

RIGHT = {  # of the fixtures' 20: counted with this scorer, which the last tests tie to ZeroEval
    ("math-l5", "gemma-2-9b-it"): 4,
    ("math-l5", "Meta-Llama-3.1-8B-Instruct"): 5,
    ("math-l5", "Meta-Llama-3.1-70B-Instruct"): 10,
    ("crux", "gemma-2-9b-it"): 9,
    ("crux", "Meta-Llama-3.1-8B-Instruct"): 10,
    ("crux", "Meta-Llama-3.1-70B-Instruct"): 16,
}


def bench(name: str) -> MathL5 | Crux:
    return MathL5(MATH) if name == "math-l5" else Crux(CRUX)


@pytest.mark.parametrize(("task", "model"), sorted(RIGHT))
async def test_a_replayed_model_scores_as_zeroeval_scores_it(
    task: str, model: str, tmp_path: Path
) -> None:
    data = bench(task)
    system = ModelSystem(ReplayModel.from_path(data.root / "outputs" / f"{model}.json"))
    summary = await run_qa(system, data, out=tmp_path, progress=False)
    assert summary.n == N and summary.errors == 0
    assert summary.accuracy == pytest.approx(100 * RIGHT[(task, model)] / N)
    assert summary.source == "replay"


@pytest.mark.parametrize("task", ["math-l5", "crux"])
def test_the_prompt_is_the_one_zeroeval_sent(task: str) -> None:
    data = bench(task)
    records = json.loads((data.root / "outputs" / "gemma-2-9b-it.json").read_text())
    for record, question in zip(records, data.questions(), strict=True):
        assert data.prompt(question) == record["chat_history"][0]


@pytest.mark.parametrize(
    ("answer", "number"),
    [
        ('{"reasoning": "r", "answer": "105"}', "105"),
        ('{"answer": "3/4"}', "0.75"),  # a fraction with '/' is evaluated
        ('{"answer": "\\\\frac{3}{4}"}', "3"),  # LaTeX is not: its first number counts
        ('{"answer": "$1,000"}', "1000"),
        ('"answer": 12 and more', "12"),  # the loose pattern
        ("so the total is $\\boxed{36}$", "36"),  # the boxed fallback
        ('{"answer": "\\\\sqrt{2}/2"}', "2"),  # not arithmetic: left as it is
        ("no answer here", None),
    ],
)
def test_math_answers_are_read_as_zeroeval_reads_them(answer: str, number: str | None) -> None:
    assert math_number(answer) == number


@pytest.mark.parametrize(
    ("answer", "literal"),
    [
        ('{"answer": "\'bcksrutq\'"}', "bcksrutq"),  # quotes stripped
        ('{"answer": "bcksrutq"}', "bcksrutq"),
        ('{"answer": [1, 2]}', "[1, 2]"),  # a JSON value as Python writes it
        ('{"answer": true}', "True"),
        ('{"reasoning": "x", "answer": "a\\nb"}', "a\\nb"),  # a newline written \n
        ("nothing", None),
    ],
)
def test_crux_answers_are_read_as_zeroeval_reads_them(answer: str, literal: str | None) -> None:
    assert crux_literal(answer) == literal


def test_gold_literals_compare_without_their_quotes() -> None:
    data = Crux(CRUX)
    question = data.questions()[3]
    assert question.target == "bcksrutq"
    assert data.score('{"answer": "bcksrutq"}', question).correct
    assert not data.score('{"answer": "bcksrut"}', question).correct


def test_cli_runs_math_l5_and_writes_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "out"
    model = "replay:" + str(MATH / "outputs" / "Meta-Llama-3.1-70B-Instruct.json")
    run = CliRunner().invoke(
        app, ["bench", "math-l5", "--data", str(MATH), "--model", model, "--out", str(out), "-q"]
    )
    assert run.exit_code == 0, run.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["benchmark"] == "math-l5" and summary["n"] == N
    assert summary["accuracy"] == pytest.approx(100 * 10 / N)
    assert "replayed" in run.output


def test_data_of_another_benchmark_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match="holds recordings of math-l5, not crux"):
        Crux(MATH)
    with pytest.raises(ConfigError, match="does not exist"):
        MathL5(MATH / "nowhere")


def test_a_model_recorded_on_another_benchmark_is_refused_before_any_run(tmp_path: Path) -> None:
    model = "replay:" + str(MATH / "outputs" / "gemma-2-9b-it.json")
    out = tmp_path / "out"
    run = CliRunner().invoke(
        app, ["bench", "crux", "--data", str(CRUX), "--model", model, "--out", str(out), "-q"]
    )
    assert run.exit_code == 1
    assert "has no recording of crux question crux-test-#0" in run.output
    assert not (out / "crux.jsonl").exists()


def test_a_question_missing_from_a_recording_is_named(tmp_path: Path) -> None:
    records = json.loads((MATH / "outputs" / "gemma-2-9b-it.json").read_text())
    short = tmp_path / "short.json"
    short.write_text(json.dumps(records[:5]))
    run = CliRunner().invoke(
        app,
        ["bench", "math-l5", "--data", str(MATH), "--model", f"replay:{short}",
         "--out", str(tmp_path / "out"), "-q"],
    )  # fmt: skip
    assert run.exit_code == 1
    assert f"no recording of math-l5 question {records[5]['id']}" in run.output


PUBLISHED = {  # ZeroEval's result_dirs/<task>.summary.md (see README, "MATH level 5 ...")
    ("math-l5", "Qwen2.5-7B-Instruct.json"): 51.46,
    ("math-l5", "Meta-Llama-3.1-70B-Instruct.json"): 43.13,
    ("math-l5", "Meta-Llama-3.1-405B-Instruct@hyperbolic.json"): 51.56,  # of its 706
    ("crux", "gpt-4o-2024-08-06.json"): 87.00,
    ("crux", "Meta-Llama-3.1-405B-Instruct@hyperbolic.json"): 73.50,
}


@pytest.mark.skipif(not (SHARED / "zeroeval-crux").is_dir(), reason="needs ../shared/data")
@pytest.mark.parametrize(("task", "file"), sorted(PUBLISHED))
def test_full_recordings_reproduce_the_published_accuracy(task: str, file: str) -> None:
    folder = SHARED / ("zeroeval-math-l5" if task == "math-l5" else "zeroeval-crux")
    path = folder / "outputs" / file
    data = MathL5(path) if task == "math-l5" else Crux(path)  # the file's own questions
    records = json.loads(path.read_text())
    right = sum(
        data.score(r["output"][0], q).correct
        for r, q in zip(records, data.questions(), strict=True)
    )
    assert 100 * right / len(records) == pytest.approx(PUBLISHED[(task, file)], abs=0.5)
