"""MMLU-Pro's published ``eval_results/model_outputs_<model>_5shots.json`` files replay in full.

Those files (12,032 records for the whole test set) are lists of the test set's records with
the model's reply added, as MMLU-Pro's ``evaluate_from_*.py`` write them (``json.dumps`` of the
list): ``question_id``, ``question``, ``options`` (``N/A`` padding removed), ``answer``,
``answer_index``, ``cot_content``, ``category``, ``src``, ``pred`` (the letter its
``extract_answer`` found, or null) and ``model_outputs`` (the completion). Its test set asks
some question texts more than once with other options (questions 884 and 885), so a recording
is the question *with* its options.

No published file can be fetched here: ``tests/fixtures/mmlu-pro`` holds a small generated one
in that exact format, and :func:`published_file` generates large ones. Accuracy is checked
against the file's own ``pred`` scored as MMLU-Pro's ``compute_accuracy.py`` scores: the
letter against ``answer``, and a reply with no letter as the fixed guess that script draws
(``random.seed(12345)`` then ``random.choice`` of A-J: G)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rede.cli.app import app
from rede.errors import ConfigError
from rede.evals.datasets import MMLUPro
from rede.models import ModelRequest
from rede.models.replay import RecordingNotFound, ReplayModel

FIXTURE = (
    Path(__file__).resolve().parent
    / "fixtures"
    / "mmlu-pro"
    / "model_outputs_generated-model_5shots.json"
)
LETTERS = "ABCDEFGHIJ"


def pred_accuracy(records: list[dict[str, Any]]) -> float:
    """MMLU-Pro's accuracy of a file from its ``pred`` fields (``compute_accuracy.py``)."""
    right = sum((r["pred"] or "G") == r["answer"] for r in records)
    return 100.0 * right / len(records)


def run_cli(file: Path, out: Path, *extra: str) -> dict[str, Any]:
    args = ["bench", "mmlu-pro", "--model", f"replay:{file}", "--data", str(file)]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "-q", *extra])
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return summary


# --------------------------------------------------------------------------- the fixture


def test_the_fixture_asks_one_text_twice_with_other_options_and_answers() -> None:
    records = json.loads(FIXTURE.read_text())
    first, second = (r for r in records if r["question_id"] in (884, 885))
    assert first["question"] == second["question"]
    assert first["options"] != second["options"] and first["answer"] != second["answer"]
    assert first["options"] == [*second["options"][:3], first["options"][3]]


async def test_the_same_text_with_other_options_is_another_question(tmp_path: Path) -> None:
    bench = MMLUPro(FIXTURE)
    model = ReplayModel.from_path(FIXTURE)
    records = {r["question_id"]: r for r in json.loads(FIXTURE.read_text())}
    for q in bench.questions():
        wrapped = f"You are a specialist.\n\nRequest:\n{bench.prompt(q)}\n\nCONFIDENCE: x"
        reply = await model.complete(ModelRequest.of(wrapped))
        assert reply.text == records[int(q.id)]["model_outputs"], q.id


def test_the_fixture_replays_with_the_accuracy_of_its_pred_fields(tmp_path: Path) -> None:
    summary = run_cli(FIXTURE, tmp_path / "out")
    records = json.loads(FIXTURE.read_text())
    assert summary["n"] == len(records) and summary["errors"] == 0
    assert summary["accuracy"] == pytest.approx(pred_accuracy(records))
    assert summary["source"] == "replay"


def test_a_question_missing_from_the_recordings_is_one_clear_line(tmp_path: Path) -> None:
    records = json.loads(FIXTURE.read_text())
    partial = tmp_path / "model_outputs_partial_5shots.json"
    partial.write_text(json.dumps([r for r in records if r["question_id"] != 885]))
    args = ["bench", "mmlu-pro", "--model", f"replay:{partial}", "--data", str(FIXTURE)]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code != 0
    line = result.output.strip()
    assert "\n" not in line and "no recording of mmlu-pro question 885" in line
    assert "Blackstone's maxim" in line and str(partial) in line


def test_one_question_recorded_twice_with_other_answers_is_refused(tmp_path: Path) -> None:
    records = json.loads(FIXTURE.read_text())
    twice = tmp_path / "model_outputs_twice_5shots.json"
    other = {**records[0], "question_id": 9999, "model_outputs": "The answer is (B)."}
    twice.write_text(json.dumps([records[0], other]))
    bench = MMLUPro(FIXTURE)
    with pytest.raises(RecordingNotFound, match=r"recorded 2 times in .* with different answers"):
        ReplayModel.from_path(twice).lookup(bench.prompt(bench.questions()[0]))
    args = ["bench", "mmlu-pro", "--model", f"replay:{twice}", "--data", str(twice)]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code != 0 and "\n" not in result.output.strip()
    assert "question 884 (" in result.output and "2 times in" in result.output
    assert "another benchmark" not in result.output


def test_options_padded_with_na_are_dropped_as_mmlu_pro_does(tmp_path: Path) -> None:
    record = json.loads(FIXTURE.read_text())[0]
    padded = tmp_path / "test.json"
    padded.write_text(json.dumps([{**record, "options": record["options"] + ["N/A", "N/A"]}]))
    (question,) = MMLUPro(padded).questions()
    assert question.options == tuple(record["options"])


# --------------------------------------------------------------------------- generated files

WORDS = (
    "court statute contract plaintiff defendant energy velocity enzyme market price demand "
    "supply theorem integral series function cell protein memory culture empire treaty river "
    "signal circuit voltage molecule acid reaction firm cost revenue patient dose therapy "
    "argument premise virtue duty belief policy inflation rate charge field wave particle"
).split()
OPENINGS = (
    "Which of the following",
    "Which of the following statements is true?",
    "What is the",
    "A man",
    "Statement 1 |",
    "Which of the following best describes",
)
"""Starts MMLU-Pro questions share; the second is a whole question text asked many times."""


def _phrase(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _reply(rng: random.Random, letter: str | None) -> str:
    """A completion in one of the shapes MMLU-Pro's extractor reads, and its ``pred``."""
    reasoning = f" {_phrase(rng, 5, 60)}."
    if letter is None:
        return reasoning + "\n\n"  # lower case only: no letter A-J anywhere
    shape = rng.randrange(3)
    if shape == 0:
        return f"{reasoning} The answer is ({letter}).\n\n"
    if shape == 1:
        return f"{reasoning}\nAnswer: {letter}\n\n"
    return f"{reasoning} so {letter}\n\n"


def published_file(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` records in the published format; about a third re-ask an earlier question's
    text with other options (sometimes the same first options, sometimes more or fewer), and
    some texts contain another question's whole text."""
    rng = random.Random(seed)
    texts: list[str] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    options_of: dict[str, list[str]] = {}
    out: list[dict[str, Any]] = []
    while len(out) < n:
        roll = rng.random()
        if texts and roll < 0.35:
            text = rng.choice(texts)
        elif texts and roll < 0.45:
            text = f"{_phrase(rng, 3, 12)}. {rng.choice(texts)}"
        else:
            text = f"{rng.choice(OPENINGS)} {_phrase(rng, 0, 40)}".strip()
        count = rng.choice((10, 10, 10, 10, 10, 9, 8, 7, 6, 5, 4, 3))
        options = [_phrase(rng, 1, 6) for _ in range(count)]
        if text in options_of and rng.random() < 0.5:  # the same first options
            options = (options_of[text][: rng.randint(1, count)] + options)[:count]
        if (text, tuple(options)) in seen:
            continue
        seen.add((text, tuple(options)))
        options_of.setdefault(text, options)
        texts.append(text)
        index = rng.randrange(count)
        pred: str | None = LETTERS[index] if rng.random() < 0.55 else rng.choice(LETTERS[:count])
        if rng.random() < 0.08:
            pred = None
        out.append(
            {
                "question_id": 70 + len(out),
                "question": text,
                "options": options,
                "answer": LETTERS[index],
                "answer_index": index,
                "cot_content": "",
                "category": rng.choice(("law", "physics", "math", "biology", "economics")),
                "src": "generated",
                "pred": pred,
                "model_outputs": _reply(rng, pred),
            }
        )
    return out


def test_the_generated_file_asks_many_texts_again_with_other_options() -> None:
    records = published_file(3000)
    texts = [r["question"] for r in records]
    assert len(set(texts)) < 0.75 * len(texts)
    by_text: dict[str, set[tuple[str, ...]]] = {}
    for r in records:
        by_text.setdefault(r["question"], set()).add(tuple(r["options"]))
    assert sum(len(v) > 1 for v in by_text.values()) > 100
    assert any(None is r["pred"] and r["answer"] == "G" for r in records)


def test_a_generated_published_file_replays_in_full_at_its_pred_accuracy(
    tmp_path: Path,
) -> None:
    records = published_file(3000, seed=7)
    file = tmp_path / "model_outputs_generated_5shots.json"
    file.write_text(json.dumps(records))
    summary = run_cli(file, tmp_path / "out", "--concurrency", "32")
    assert summary["n"] == len(records) and summary["errors"] == 0
    assert summary["accuracy"] == pytest.approx(pred_accuracy(records))


async def test_every_generated_question_is_served_its_own_recording(tmp_path: Path) -> None:
    records = published_file(3000, seed=11)
    file = tmp_path / "model_outputs_generated_5shots.json"
    file.write_text(json.dumps(records))
    bench = MMLUPro(file)
    model = ReplayModel.from_path(file)
    for q, record in zip(bench.questions(), records, strict=True):
        assert model.lookup(bench.prompt(q)).prediction == record["model_outputs"], q.id


def test_a_data_file_in_another_shape_names_what_it_needs(tmp_path: Path) -> None:
    bad = tmp_path / "model_outputs_bad_5shots.json"
    bad.write_text(json.dumps([{"question_id": 1, "question": "q?", "options": "A, B"}]))
    with pytest.raises(ConfigError, match=r"recording 0 in .* needs a string 'question'"):
        ReplayModel.from_path(bad)
