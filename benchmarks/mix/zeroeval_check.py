"""Every replayed model's MATH level 5 and CRUXEval accuracy against ZeroEval's published one.

    python benchmarks/mix/zeroeval_check.py        # 40 rows; exits 1 if any is 0.5 points off

Scores each model's recorded file with ``rede.evals.MathL5`` / ``Crux`` (ZeroEval's prompt and
rules; each file's own questions, as ZeroEval scores a file). Published figures: ZeroEval's
``result_dirs/math-l5.summary.md`` and ``result_dirs/crux.summary.md``, the latest versions
(read through the public GitHub index; the CRUX ones as carried by the fork ruxiliang/ZeroEval
at 3c4103fc, an older upstream summary at 39430d44 has figures about 2 points lower, from
before ZeroEval stripped quotes from CRUX answers).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rede.evals.zeroeval import Crux, MathL5

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
PUBLISHED = {
    "math-l5": {
        "Qwen2.5-72B-Instruct": 60.19, "Qwen2.5-32B-Instruct": 59.50, "gpt-4o-2024-08-06": 55.34,
        "gpt-4o-mini-2024-07-18": 52.15, "claude-3-5-sonnet-20240620": 51.87,
        "Meta-Llama-3.1-405B-Instruct@hyperbolic": 51.56, "Qwen2.5-7B-Instruct": 51.46,
        "Meta-Llama-3.1-70B-Instruct": 43.13, "gemma-2-27b-it": 26.63, "Qwen2.5-3B-Instruct": 25.52,
        "Qwen2-7B-Instruct": 23.86, "Meta-Llama-3.1-8B-Instruct": 22.19, "Yi-1.5-9B-Chat": 19.97,
        "gemma-2-9b-it": 19.42, "Phi-3.5-mini-instruct": 18.72, "Yi-1.5-34B-Chat": 18.17,
        "claude-3-haiku-20240307": 15.12, "gpt-3.5-turbo-0125": 13.73,
        "Meta-Llama-3-8B-Instruct": 7.91, "gemma-2-2b-it": 4.30,
    },
    "crux": {
        "gpt-4o-2024-08-06": 87.00, "claude-3-5-sonnet-20240620": 80.75,
        "gpt-4o-mini-2024-07-18": 75.88, "Qwen2.5-72B-Instruct": 73.88,
        "Meta-Llama-3.1-405B-Instruct@hyperbolic": 73.50, "Qwen2.5-32B-Instruct": 69.88,
        "Meta-Llama-3.1-70B-Instruct": 64.25, "gemma-2-27b-it": 57.25,
        "claude-3-haiku-20240307": 54.75, "gpt-3.5-turbo-0125": 54.75, "Qwen2.5-7B-Instruct": 52.75,
        "gemma-2-9b-it": 46.00, "Yi-1.5-9B-Chat": 44.75, "Yi-1.5-34B-Chat": 44.12,
        "Phi-3.5-mini-instruct": 42.12, "Meta-Llama-3.1-8B-Instruct": 39.88,
        "Qwen2-7B-Instruct": 37.88, "Meta-Llama-3-8B-Instruct": 37.75, "Qwen2.5-3B-Instruct": 33.12,
        "gemma-2-2b-it": 21.50,
    },
}  # fmt: skip
FOLDER = {"math-l5": ("zeroeval-math-l5", MathL5), "crux": ("zeroeval-crux", Crux)}


def main() -> int:
    worst = 0.0
    for task, published in PUBLISHED.items():
        folder, kind = FOLDER[task]
        for model, figure in published.items():
            path = SHARED / folder / "outputs" / f"{model}.json"
            bench = kind(path)
            records = json.loads(path.read_text())
            right = sum(
                bench.score(r["output"][0], q).correct
                for r, q in zip(records, bench.questions(), strict=True)
            )
            acc = 100 * right / len(records)
            worst = max(worst, abs(acc - figure))
            print(f"{task:8s} {model:42s} {acc:6.2f}  published {figure:6.2f}  {acc - figure:+.2f}")
    print(f"largest difference: {worst:.2f} points")
    return 0 if worst <= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
