"""Calibrate the ``sim`` backend from real models' recorded GSM8K answers.

    python benchmarks/calibrate_sim.py --data ../shared/data/gsm8k-zeroeval
    python benchmarks/calibrate_sim.py --data DIR --check     # compare with the committed file

Reads ZeroEval's recorded replies of 19 real models to the 1,319 GSM8K test questions
(``outputs/<model>.json``), scores them with ZeroEval's own rule (``rede.answers.json_number``)
and derives what the sim needs to fail the way real models fail:

- accuracy per model, and per sim size from the models mapped to it (``SIZE_OF`` below);
- how errors concentrate on hard questions: how many of the mapped models get each question
  wrong, against what the sim's one-factor model predicts;
- per pair of models: P(both wrong) against the independence product, P(same wrong answer |
  both wrong), and agreement as an error detector (P(wrong | agree), P(wrong | disagree), and
  the AUROC of "disagrees with the other model" as a detector of this model's errors);
- ``rho``: the share of a question's error propensity that is common to every model (a
  shared latent difficulty), fitted so that the sim's P(both wrong) matches the measured one
  over all pairs of mapped models;
- ``same_wrong``: P(same wrong answer | both wrong), pooled over those pairs;
- per size, ``confidence_auroc``: how well agreement with another model of the same size
  detects a model's errors. The sim's stated confidence is drawn so that its AUROC for
  right-vs-wrong is this value, so confidence is no better a detector than agreement is.

It writes ``src/rede/models/sim_calibration.json``, which ``rede.models.sim`` loads. Only the
standard library and ``rede.answers`` are used.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

from rede.answers import canonical_number, json_number

OUT = Path(__file__).resolve().parents[1] / "src" / "rede" / "models" / "sim_calibration.json"
COMMAND = "python benchmarks/calibrate_sim.py --data ../shared/data/gsm8k-zeroeval"

SIZE_OF: dict[str, str] = {
    # 2-4B: gemma-2-2b (2.6B) and Phi-3.5-mini (3.8B)
    "gemma-2-2b-it": "3b",
    "Phi-3.5-mini-instruct": "3b",
    # 7-9B dense models
    "Meta-Llama-3-8B-Instruct": "7b",
    "Meta-Llama-3.1-8B-Instruct": "7b",
    "Qwen2-7B-Instruct": "7b",
    "Yi-1.5-9B-Chat": "7b",
    "gemma-2-9b-it": "7b",
    # 12B dense: the only recorded model near 13B
    "Mistral-Nemo-Instruct-2407": "13b",
    # 70-72B dense
    "Meta-Llama-3-70B-Instruct": "70b",
    "Meta-Llama-3.1-70B-Instruct": "70b",
    "Qwen2-72B-Instruct": "70b",
}
"""Recorded models behind each sim size. Left out of the sizes (but in the difficulty
histogram over all 19): Mixtral-8x7B (a 47B mixture with 13B active, which fits no dense size,
and 3% of its replies have no parsable answer), Yi-1.5-34B and gemma-2-27b (between 13b and
70b), Llama-3.1-405B and the closed API models (no size given, or far above 70b)."""
EIGHT_B = ("Meta-Llama-3-8B-Instruct", "Meta-Llama-3.1-8B-Instruct")
"""The sim's ``8b`` profile: the Llama 3 8B models alone; it shares the 7b class's pairs."""
SIZES = ("1b", "3b", "7b", "8b", "13b", "70b")
AUROC_PARTNERS = {"3b": "3b", "7b": "7b", "8b": "7b", "13b": "7b", "70b": "70b"}
"""Agreement AUROC of a size is measured against partners of this size (13b has one model,
so its partners are the 7b class)."""

N = NormalDist()


def load(data: Path) -> tuple[list[str | None], dict[str, list[str | None]]]:
    """Gold answers and every model's extracted answers, in question order."""
    gold: list[str | None] | None = None
    answers: dict[str, list[str | None]] = {}
    for path in sorted((data / "outputs").glob("*.json")):
        records = json.loads(path.read_text())
        if gold is None:
            gold = [canonical_number(r["answer"].replace("#", "")) for r in records]
        answers[path.stem] = [json_number(r["output"][0]) if r["output"] else None for r in records]
    if gold is None:
        raise SystemExit(f"no outputs/*.json under {data}")
    return gold, answers


def same(a: str | None, b: str | None) -> bool:
    """Equal as numbers (ZeroEval's comparison); a missing answer agrees with nothing."""
    return a is not None and b is not None and float(a) == float(b)


@dataclass
class Pair:
    a: str
    b: str
    wrong_a: float
    wrong_b: float
    both_wrong: float
    same_wrong: int
    n_both_wrong: int
    wrong_if_agree: float
    wrong_if_disagree: float
    auroc_a: float
    """AUROC of "a disagrees with b" as a detector of a's errors."""
    auroc_b: float


def agreement_auroc(wrong: list[bool], agree: list[bool]) -> float:
    """AUROC of a binary detector (flag = disagree) for ``wrong``: (TPR + 1 - FPR) / 2."""
    n_wrong = sum(wrong)
    tpr = sum(w and not g for w, g in zip(wrong, agree, strict=True)) / n_wrong
    fpr = sum(not w and not g for w, g in zip(wrong, agree, strict=True)) / (len(wrong) - n_wrong)
    return (1 + tpr - fpr) / 2


def pair(a: str, b: str, ok: dict[str, list[bool]], ans: dict[str, list[str | None]]) -> Pair:
    n = len(ok[a])
    wa = [not x for x in ok[a]]
    wb = [not x for x in ok[b]]
    agree = [same(x, y) for x, y in zip(ans[a], ans[b], strict=True)]
    both = [x and y for x, y in zip(wa, wb, strict=True)]
    n_agree = sum(agree)
    return Pair(
        a,
        b,
        sum(wa) / n,
        sum(wb) / n,
        sum(both) / n,
        sum(bw and g for bw, g in zip(both, agree, strict=True)),
        sum(both),
        sum(w for w, g in zip(wa, agree, strict=True) if g) / max(1, n_agree),
        sum(w for w, g in zip(wa, agree, strict=True) if not g) / max(1, n - n_agree),
        agreement_auroc(wa, agree),
        agreement_auroc(wb, agree),
    )


# --------------------------------------------------------------------------- the sim's model
# Question j has a latent difficulty d_j ~ N(0, 1), shared by every model. Model m answers it
# wrong when sqrt(rho) * d_j + sqrt(1 - rho) * e_mj > Phi^-1(accuracy_m), e_mj ~ N(0, 1) its own.

_GRID = [i / 20 for i in range(-160, 161)]  # d from -8 to 8
_WEIGHTS = [N.pdf(d) / 20 for d in _GRID]


def p_wrong_given_d(accuracy: float, rho: float, d: float) -> float:
    threshold = N.inv_cdf(accuracy)
    return 1 - N.cdf((threshold - math.sqrt(rho) * d) / math.sqrt(1 - rho))


def p_both_wrong(acc_a: float, acc_b: float, rho: float) -> float:
    return sum(
        w * p_wrong_given_d(acc_a, rho, d) * p_wrong_given_d(acc_b, rho, d)
        for d, w in zip(_GRID, _WEIGHTS, strict=True)
    )


def wrong_count_histogram(accuracies: list[float], rho: float, n: int) -> list[float]:
    """Expected number of questions (of ``n``) that exactly k of these models get wrong."""
    out = [0.0] * (len(accuracies) + 1)
    for d, w in zip(_GRID, _WEIGHTS, strict=True):
        dist = [1.0]
        for acc in accuracies:
            p = p_wrong_given_d(acc, rho, d)
            dist = [
                (dist[k] if k < len(dist) else 0) * (1 - p) + (dist[k - 1] * p if k else 0)
                for k in range(len(dist) + 1)
            ]
        for k, v in enumerate(dist):
            out[k] += w * v * n
    return out


def fit_rho(pairs: list[Pair]) -> float:
    """The rho whose predicted P(both wrong) is closest (least squares) over ``pairs``."""
    best = (math.inf, 0.0)
    for i in range(0, 96):
        rho = i / 100
        err = sum(
            (p_both_wrong(1 - p.wrong_a, 1 - p.wrong_b, rho) - p.both_wrong) ** 2 for p in pairs
        )
        best = min(best, (err, rho))
    lo = best[1]
    for i in range(-10, 11):  # refine to 0.001
        rho = min(0.95, max(0.0, lo + i / 1000))
        err = sum(
            (p_both_wrong(1 - p.wrong_a, 1 - p.wrong_b, rho) - p.both_wrong) ** 2 for p in pairs
        )
        best = min(best, (err, rho))
    return best[1]


# --------------------------------------------------------------------------- main


def calibrate(data: Path) -> tuple[dict[str, Any], str]:
    gold, ans = load(data)
    n = len(gold)
    ok = {m: [same(a, g) for a, g in zip(v, gold, strict=True)] for m, v in ans.items()}
    acc = {m: sum(v) / n for m, v in ok.items()}
    lines = [f"# Sim calibration from {len(ans)} models x {n} GSM8K questions (ZeroEval)\n"]

    lines.append("## Accuracy per model (ZeroEval's rule)\n")
    lines.append("| model | accuracy | no answer | sim size |\n|---|---:|---:|---|")
    for m in sorted(acc, key=acc.get):  # type: ignore[arg-type]
        missing = sum(a is None for a in ans[m])
        lines.append(f"| {m} | {acc[m]:.3f} | {missing} | {SIZE_OF.get(m, '-')} |")

    mapped = [m for m in SIZE_OF if m in acc]
    missing_models = sorted(set(SIZE_OF) - set(acc))
    if missing_models:
        raise SystemExit(f"recordings missing for {', '.join(missing_models)}")
    size_models = {s: [m for m in mapped if SIZE_OF[m] == s] for s in SIZES}
    size_models["8b"] = list(EIGHT_B)
    size_acc: dict[str, float] = {
        s: statistics.fmean(acc[m] for m in ms) for s, ms in size_models.items() if ms
    }
    # No recorded model is below 2B: 1b takes one more probit step down, the 3b->7b one.
    step = N.inv_cdf(size_acc["7b"]) - N.inv_cdf(size_acc["3b"])
    size_acc["1b"] = N.cdf(N.inv_cdf(size_acc["3b"]) - step)

    pairs = [pair(a, b, ok, ans) for a, b in itertools.combinations(mapped, 2)]
    rho = fit_rho(pairs)
    same_wrong = sum(p.same_wrong for p in pairs) / sum(p.n_both_wrong for p in pairs)

    def classes(p: Pair) -> tuple[str, str]:
        a, b = sorted((SIZE_OF[p.a], SIZE_OF[p.b]), key=SIZES.index)
        return a, b

    lines.append("\n## Pairs of models, by size class (means over the pairs)\n")
    lines.append(
        "| sizes | pairs | P(both wrong) | independence | sim (rho fit) | P(same wrong, given both "
        "wrong) | P(wrong, given agree) | P(wrong, given disagree) | agreement AUROC |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    by_class: dict[str, dict[str, float]] = {}
    for key, group_it in itertools.groupby(
        sorted(pairs, key=lambda p: [SIZES.index(c) for c in classes(p)]), key=classes
    ):
        group = list(group_it)
        row = {
            "pairs": len(group),
            "both_wrong": statistics.fmean(p.both_wrong for p in group),
            "independent": statistics.fmean(p.wrong_a * p.wrong_b for p in group),
            "sim": statistics.fmean(p_both_wrong(1 - p.wrong_a, 1 - p.wrong_b, rho) for p in group),
            "same_wrong": sum(p.same_wrong for p in group)
            / max(1, sum(p.n_both_wrong for p in group)),
            "wrong_if_agree": statistics.fmean(p.wrong_if_agree for p in group),
            "wrong_if_disagree": statistics.fmean(p.wrong_if_disagree for p in group),
            "auroc": statistics.fmean(x for p in group for x in (p.auroc_a, p.auroc_b)),
        }
        by_class[f"{key[0]}-{key[1]}"] = {k: round(v, 4) for k, v in row.items()}
        lines.append(
            f"| {key[0]}-{key[1]} | {row['pairs']} | {row['both_wrong']:.3f} | "
            f"{row['independent']:.3f} | {row['sim']:.3f} | {row['same_wrong']:.2f} | "
            f"{row['wrong_if_agree']:.3f} | {row['wrong_if_disagree']:.3f} | {row['auroc']:.3f} |"
        )

    def auroc_for(size: str) -> float:
        """Mean AUROC of agreement for models of ``size`` with a partner of its partner size."""
        part = AUROC_PARTNERS[size]
        own = size_models[size]
        values = [
            p.auroc_a if p.a == m else p.auroc_b
            for p in pairs
            for m in own
            if m in (p.a, p.b) and SIZE_OF[p.b if p.a == m else p.a] == part
        ]
        return statistics.fmean(values)

    auroc = {s: auroc_for(s) for s in SIZES if s != "1b"}
    auroc["1b"] = auroc["3b"]  # extrapolated like its accuracy: no recorded model

    small = [p for p in pairs if "70b" not in (SIZE_OF[p.a], SIZE_OF[p.b])]
    summary = {
        "pairs": len(pairs),
        "both_wrong_over_independent": round(
            statistics.fmean(p.both_wrong / (p.wrong_a * p.wrong_b) for p in pairs), 3
        ),
        "small_pairs": len(small),
        "small_wrong_if_agree": round(statistics.fmean(p.wrong_if_agree for p in small), 4),
        "small_wrong_if_disagree": round(statistics.fmean(p.wrong_if_disagree for p in small), 4),
        "small_agreement_auroc": round(
            statistics.fmean(x for p in small for x in (p.auroc_a, p.auroc_b)), 4
        ),
    }

    lines.append(
        f"\n## How errors concentrate (questions that k of the {len(mapped)} mapped models "
        "get wrong)\n"
    )
    real_hist = [0] * (len(mapped) + 1)
    for j in range(n):
        real_hist[sum(not ok[m][j] for m in mapped)] += 1
    sim_hist = wrong_count_histogram([acc[m] for m in mapped], rho, n)
    indep_hist = wrong_count_histogram([acc[m] for m in mapped], 0.0, n)
    lines.append("| k wrong | " + " | ".join(str(k) for k in range(len(real_hist))) + " |")
    lines.append("|---|" + "---:|" * len(real_hist))
    lines.append("| real | " + " | ".join(str(v) for v in real_hist) + " |")
    lines.append(f"| sim, rho {rho:.3f} | " + " | ".join(f"{v:.0f}" for v in sim_hist) + " |")
    lines.append("| independent errors | " + " | ".join(f"{v:.0f}" for v in indep_hist) + " |")
    errors_by_q = sorted((sum(not ok[m][j] for m in mapped) for j in range(n)), reverse=True)
    total_errors = sum(errors_by_q)
    hardest = {
        f"{share:.0%}": round(sum(errors_by_q[: round(share * n)]) / total_errors, 3)
        for share in (0.05, 0.1, 0.2)
    }
    all_wrong = sum(all(not ok[m][j] for m in ans) for j in range(n))
    lines.append(
        "\nShare of all errors (mapped models) on the hardest questions: "
        + ", ".join(f"{k} of questions hold {v:.0%}" for k, v in hardest.items())
        + f". Questions that all {len(ans)} models get wrong: {all_wrong}."
    )

    lines.append("\n## Derived sim parameters\n")
    lines.append(
        f"rho (shared latent difficulty) = {rho:.3f}; same wrong answer = {same_wrong:.3f}\n"
    )
    lines.append("| size | accuracy | confidence AUROC | from |\n|---|---:|---:|---|")
    for s in SIZES:
        src = ", ".join(size_models.get(s, [])) or "extrapolated (no recorded model below 2B)"
        lines.append(f"| {s} | {size_acc[s]:.3f} | {auroc[s]:.3f} | {src} |")

    calibration = {
        "source": "ZeroEval GSM8K recordings (github.com/yuchenlin/ZeroEval result_dirs/gsm, "
        "570c6269), scored with rede.answers.json_number",
        "command": COMMAND,
        "questions": n,
        "rho": round(rho, 3),
        "same_wrong": round(same_wrong, 3),
        "sizes": {
            s: {
                "accuracy": round(size_acc[s], 3),
                "confidence_auroc": round(auroc[s], 3),
                "models": size_models.get(s, []),
            }
            for s in SIZES
        },
        "measured": {
            "accuracy": {m: round(a, 4) for m, a in sorted(acc.items())},
            "pairs_by_size": by_class,
            "summary": summary,
            "errors_on_hardest": hardest,
            "all_models_wrong": all_wrong,
            "wrong_count_histogram": {"real": real_hist, "sim": [round(v) for v in sim_hist]},
        },
    }
    return calibration, "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the gsm8k-zeroeval folder")
    ap.add_argument("--out", type=Path, default=OUT, help=f"default {OUT}")
    ap.add_argument("--check", action="store_true", help="compare with --out, write nothing")
    args = ap.parse_args()
    calibration, report = calibrate(args.data)
    print(report)
    text = json.dumps(calibration, indent=1) + "\n"
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"\n{args.out} differs from what the recordings give", file=sys.stderr)
            return 1
        print(f"\n{args.out} is up to date", file=sys.stderr)
        return 0
    args.out.write_text(text)
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
