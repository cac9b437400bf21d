"""Benchmarks: BIG-Bench Hard through a model or a whole network, scored as in the paper.

    from rede.evals import BBH, ModelSystem, run_bbh
    from rede.models import model_from_spec

    data = BBH("path/to/bbh")
    system = ModelSystem(model_from_spec("replay:path/to/bbh/outputs/code-davinci-002-cot"))
    summary = await run_bbh(system, data, out=Path("bench/cot"), mode="cot", limit=20)
    print(summary.average, summary.tasks["date_understanding"].accuracy)

MATH level 5 and CRUXEval (``MathL5``, ``Crux``: ZeroEval's prompt and scoring) and the
mixed workload of those with GSM8K (``MixedWorkload``, ``run_mix``: split into dev and test,
no labels, a routed network's dispatcher a ``DomainClassifier``) run the same way.

``compare`` runs several systems on the same examples and writes a markdown report and a
chart. The ``rede bench`` command (``rede.evals.cli``) is a thin layer over these.
"""

from __future__ import annotations

from rede.evals.bbh import BBH, MODES, TASKS, Example, Mode, TaskPrompt, paper_averages
from rede.evals.classifier import DomainClassifier, dispatch_tool
from rede.evals.harness import BenchSummary, ExampleRecord, TaskScore, load_summary, run_bbh
from rede.evals.mix import MixedWorkload, run_mix
from rede.evals.mix_summary import MixSummary
from rede.evals.report import Comparison, compare
from rede.evals.scoring import Scored, extract_answer, normalise, score
from rede.evals.systems import Answer, ModelSystem, NetworkSystem, System
from rede.evals.zeroeval import Crux, MathL5

__all__ = [
    "BBH",
    "MODES",
    "TASKS",
    "Answer",
    "BenchSummary",
    "Comparison",
    "Crux",
    "DomainClassifier",
    "Example",
    "ExampleRecord",
    "MathL5",
    "MixSummary",
    "MixedWorkload",
    "Mode",
    "ModelSystem",
    "NetworkSystem",
    "Scored",
    "System",
    "TaskPrompt",
    "TaskScore",
    "compare",
    "dispatch_tool",
    "extract_answer",
    "load_summary",
    "normalise",
    "paper_averages",
    "run_bbh",
    "run_mix",
    "score",
]
