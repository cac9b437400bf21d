"""The sim's calibration measured on all three datasets: GSM8K, MATH level 5 and CRUXEval.

    python benchmarks/mix/calibrate_mix.py          # writes benchmarks/mix/sim_calibration_mix.json

``benchmarks/calibrate_sim.py`` fits the ``sim`` backend's parameters to GSM8K alone. This
measures the same quantities per dataset, from the recorded answers of the models of
``models.yaml`` (every question of each dataset, scored by its own ZeroEval rule), with the
same one-factor model (``calibrate_sim.fit_rho``):

- accuracy per sim size (3b: 2-4B models, 7b: 7-9B, 70b: 70-72B) and per model;
- ``rho``: the share of error propensity common to every model (shared difficulty), fitted to
  P(both wrong) over every pair of models of the sizes;
- ``same_wrong``: P(same wrong answer | both wrong), pooled over those pairs;
- per size, ``confidence_auroc``: how well disagreeing with another model of that size
  detects a model's errors.

CALIBRATION ONLY: the file is a measurement, labelled as such; the ``sim`` backend still
loads its GSM8K calibration (``src/rede/models/sim_calibration.json``). It shows how far a
GSM8K-calibrated sim is from MATH and CRUX (far lower accuracy, other shared-error levels).
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from networks import ANSWER, SHARED, catalogue, recording

from calibrate_sim import agreement_auroc, fit_rho
from rede.answers import extractor
from rede.evals.mix import DOMAINS, MixedWorkload
from rede.models.replay import ReplayModel

HERE = Path(__file__).resolve().parent
OUT = HERE / "sim_calibration_mix.json"
SIZES = {
    "3b": ["gemma-2-2b", "phi35-mini", "qwen25-3b"],
    "7b": ["llama-3-8b", "llama31-8b", "qwen2-7b", "qwen25-7b", "yi15-9b", "gemma-2-9b"],
    "70b": ["llama31-70b", "qwen25-72b"],
}


def answers(work: MixedWorkload, domain: str) -> dict[str, tuple[list[str | None], list[bool]]]:
    """Per model recorded on ``domain``: its extracted answers and correctness, per question."""
    bench = work.benches[domain]
    questions = [*work.questions(domain, "dev"), *work.questions(domain, "test")]
    read = extractor(ANSWER[domain])
    out = {}
    for key, entry in catalogue().items():
        if domain not in entry["files"]:
            continue
        model = ReplayModel.from_path(recording(SHARED, domain, entry))
        texts = [model.lookup(bench.prompt(q)).prediction for q in questions]
        out[key] = (
            [read(t) for t in texts],
            [bench.score(t, q).correct for t, q in zip(texts, questions, strict=True)],
        )
    return out


def domain_calibration(found: dict[str, tuple[list[str | None], list[bool]]]) -> dict[str, Any]:
    mapped = [m for ms in SIZES.values() for m in ms if m in found]
    pairs, same_wrong, both_wrong = [], 0, 0
    for a, b in itertools.combinations(mapped, 2):
        (ans_a, ok_a), (ans_b, ok_b) = found[a], found[b]
        both = [not x and not y for x, y in zip(ok_a, ok_b, strict=True)]
        n = len(both)
        pairs.append(SimpleNamespace(wrong_a=ok_a.count(False) / n, wrong_b=ok_b.count(False) / n,
                                     both_wrong=sum(both) / n))  # fmt: skip
        both_wrong += sum(both)
        same_wrong += sum(
            w and x is not None and x == y for w, x, y in zip(both, ans_a, ans_b, strict=True)
        )
    sizes = {}
    for size, models in SIZES.items():
        have = [m for m in models if m in found]
        aurocs = []
        for a, b in itertools.permutations(have, 2):
            (ans_a, ok_a), (ans_b, _) = found[a], found[b]
            agree = [x is not None and x == y for x, y in zip(ans_a, ans_b, strict=True)]
            aurocs.append(agreement_auroc([not x for x in ok_a], agree))
        accs = [sum(found[m][1]) / len(found[m][1]) for m in have]
        sizes[size] = {
            "accuracy": round(sum(accs) / len(accs), 3) if accs else None,
            "confidence_auroc": round(sum(aurocs) / len(aurocs), 3) if aurocs else None,
            "models": have,
        }
    return {
        "questions": len(next(iter(found.values()))[1]),
        "rho": fit_rho(pairs),  # type: ignore[arg-type]
        "same_wrong": round(same_wrong / max(1, both_wrong), 3),
        "sizes": sizes,
        "accuracy": {m: round(sum(ok) / len(ok), 4) for m, (_, ok) in sorted(found.items())},
    }


def main() -> None:
    work = MixedWorkload.from_paths(
        SHARED / "gsm8k-zeroeval", SHARED / "zeroeval-math-l5", SHARED / "zeroeval-crux"
    )
    result: dict[str, Any] = {
        "label": "CALIBRATION MEASURED on recorded answers (ZeroEval, 570c6269) of GSM8K, "
        "MATH level 5 and CRUXEval; not loaded by the sim backend",
        "command": "python benchmarks/mix/calibrate_mix.py",
        "rho_of_the_gsm8k_sim_file": json.loads(
            (HERE.parents[1] / "src/rede/models/sim_calibration.json").read_text()
        )["rho"],
        "domains": {d: domain_calibration(answers(work, d)) for d in DOMAINS},
    }
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    for d, c in result["domains"].items():
        sizes = ", ".join(f"{s} {v['accuracy']}" for s, v in c["sizes"].items())
        print(f"{d:6s} rho {c['rho']:.3f}  same_wrong {c['same_wrong']:.3f}  accuracy {sizes}")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
