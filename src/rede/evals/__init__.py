"""Benchmarks: BIG-Bench Hard through a model or a whole network, scored as in the paper.

    from rede.evals import BBH, ModelSystem, run_bbh
    from rede.models import model_from_spec

    data = BBH("path/to/bbh")
    system = ModelSystem(model_from_spec("replay:path/to/bbh/outputs/code-davinci-002-cot"))
    summary = await run_bbh(system, data, out=Path("bench/cot"), mode="cot", limit=20)
    print(summary.average, summary.tasks["date_understanding"].accuracy)

``compare`` runs several systems on the same examples and writes a markdown report and a
chart. The ``rede bench`` command (``rede.evals.cli``) is a thin layer over these.
"""

from __future__ import annotations

from rede.evals.bbh import BBH, MODES, TASKS, Example, Mode, TaskPrompt, paper_averages
from rede.evals.harness import BenchSummary, ExampleRecord, TaskScore, load_summary, run_bbh
from rede.evals.report import Comparison, compare
from rede.evals.scoring import Scored, extract_answer, normalise, score
from rede.evals.systems import Answer, ModelSystem, NetworkSystem, System

__all__ = [
    "BBH",
    "MODES",
    "TASKS",
    "Answer",
    "BenchSummary",
    "Comparison",
    "Example",
    "ExampleRecord",
    "Mode",
    "ModelSystem",
    "NetworkSystem",
    "Scored",
    "System",
    "TaskPrompt",
    "TaskScore",
    "compare",
    "extract_answer",
    "load_summary",
    "normalise",
    "paper_averages",
    "run_bbh",
    "score",
]
