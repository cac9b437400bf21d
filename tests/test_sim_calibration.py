"""The sim backend fails as the real models it is calibrated from fail: per-size accuracy,
errors shared across models on hard questions, the same wrong answer at the measured rate,
and a stated confidence that detects errors no better than agreement between two real
models does (``src/rede/models/sim_calibration.json``, from recorded GSM8K answers)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from rede.models._base import ModelRequest
from rede.models.sim import CALIBRATION, PROFILES, SAME_WRONG, SimModel

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "gsm8k-zeroeval"
N = 2000


async def answers(model: SimModel, n: int = N) -> list[tuple[str, bool, float]]:
    """(answer, right, confidence) for ``n`` questions with nine wrong answers each."""
    out = []
    for i in range(n):
        truth = str(1000 + i)
        meta = {
            "capability": "answer",
            "request": f"Question {i}: how many?",
            "truth": truth,
            "wrong": [str(5000 + 10 * i + k) for k in range(9)],
        }
        reply = await model.complete(ModelRequest.of(f"Question {i}: how many?", metadata=meta))
        found = re.search(r"the answer is (\S+)\.", reply.text)
        stated = re.search(r"CONFIDENCE: (\S+)", reply.text)
        assert found and stated
        out.append((found.group(1), found.group(1) == truth, float(stated.group(1))))
    return out


def auroc(points: list[tuple[float, bool]]) -> float:
    """P(a right answer's confidence > a wrong one's), ties counting half."""
    right = sorted(c for c, ok in points if ok)
    wrong = sorted(c for c, ok in points if not ok)
    total = 0.0
    for c in wrong:
        above = sum(1 for r in right if r > c)
        ties = sum(1 for r in right if r == c)
        total += above + ties / 2
    return total / (len(right) * len(wrong))


def sim(size: str, name: str, seed: int, **overrides: float) -> SimModel:
    return SimModel.from_profile(size, seed=seed, time_scale=0, name=name, overrides=overrides)


def test_profiles_take_their_accuracy_and_auroc_from_the_calibration() -> None:
    for size, measured in CALIBRATION["sizes"].items():
        assert PROFILES[size].base_quality == measured["accuracy"]
        assert PROFILES[size].confidence_auroc == measured["confidence_auroc"]
    assert CALIBRATION["sizes"]["1b"]["models"] == []  # extrapolated, and says so


@pytest.mark.parametrize("size", ["3b", "7b", "70b"])
async def test_accuracy_per_size_is_the_measured_one(size: str) -> None:
    got = await answers(sim(size, f"acc-{size}", 3))
    accuracy = sum(ok for _, ok, _ in got) / len(got)
    assert accuracy == pytest.approx(CALIBRATION["sizes"][size]["accuracy"], abs=0.03)


async def test_two_7b_models_are_wrong_together_at_the_measured_rate() -> None:
    a = await answers(sim("7b", "seven-a", 1))
    b = await answers(sim("7b", "seven-b", 2))
    wrong_a = [not ok for _, ok, _ in a]
    wrong_b = [not ok for _, ok, _ in b]
    both = sum(x and y for x, y in zip(wrong_a, wrong_b, strict=True)) / N
    independent = sum(wrong_a) / N * sum(wrong_b) / N
    measured = CALIBRATION["measured"]["pairs_by_size"]["7b-7b"]["both_wrong"]
    assert both == pytest.approx(measured, abs=0.015)
    assert both > 1.8 * independent  # real models share hard questions; independence does not
    together = [i for i in range(N) if wrong_a[i] and wrong_b[i]]
    same = sum(a[i][0] == b[i][0] for i in together) / len(together)
    assert same == pytest.approx(SAME_WRONG, abs=0.07)


async def test_a_small_and_a_large_model_fail_on_the_same_questions() -> None:
    small = await answers(sim("3b", "small", 5))
    large = await answers(sim("70b", "large", 6))
    wrong_large = [not ok for _, ok, _ in large]
    wrong_small = [not ok for _, ok, _ in small]
    p_large = sum(wrong_large) / N
    p_large_given_small = sum(
        wl for wl, ws in zip(wrong_large, wrong_small, strict=True) if ws
    ) / sum(wrong_small)
    assert p_large_given_small > 1.8 * p_large  # escalating a small model's error helps less


async def test_without_shared_difficulty_errors_are_independent() -> None:
    a = await answers(sim("7b", "indep-a", 1, shared_difficulty=0.0))
    b = await answers(sim("7b", "indep-b", 2, shared_difficulty=0.0))
    wrong_a = [not ok for _, ok, _ in a]
    wrong_b = [not ok for _, ok, _ in b]
    both = sum(x and y for x, y in zip(wrong_a, wrong_b, strict=True)) / N
    assert both == pytest.approx(sum(wrong_a) / N * sum(wrong_b) / N, abs=0.012)


@pytest.mark.parametrize("size", ["1b", "7b", "70b"])
async def test_confidence_detects_errors_no_better_than_agreement_does(size: str) -> None:
    got = await answers(sim(size, f"conf-{size}", 9))
    measured = CALIBRATION["sizes"][size]["confidence_auroc"]
    value = auroc([(c, ok) for _, ok, c in got])
    assert value <= measured + 0.03
    assert value >= 0.75  # still a signal: a wrong answer tends to be stated less surely


async def test_the_sim_is_deterministic_per_seed() -> None:
    first = await answers(sim("7b", "det", 4), n=50)
    again = await answers(sim("7b", "det", 4), n=50)
    other = await answers(sim("7b", "det", 5), n=50)
    assert first == again
    assert first != other


@pytest.mark.skipif(not DATA.is_dir(), reason="the recorded GSM8K outputs are not here")
def test_the_committed_calibration_is_what_the_recordings_give(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = importlib.util.spec_from_file_location(
        "calibrate_sim", ROOT / "benchmarks" / "calibrate_sim.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "calibrate_sim", module)  # its dataclasses look it up
    spec.loader.exec_module(module)
    derived, _ = module.calibrate(DATA)
    committed = json.loads((ROOT / "src" / "rede" / "models" / "sim_calibration.json").read_text())
    assert derived == committed
