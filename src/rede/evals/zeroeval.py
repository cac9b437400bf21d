"""ZeroEval's MATH level 5 and CRUXEval: its prompt, its scoring, questions from its files.

ZeroEval (github.com/yuchenlin/ZeroEval) publishes, per task, one JSON file of recorded
answers per model (``result_dirs/<task>/<model>.json``); each record carries the question,
its gold answer and the prompt sent. These benchmarks read their questions from such files:
``--data`` is a folder holding ``outputs/*.json`` (or ``*.json``), whose questions are the
union of the files' (by id, in file order), or one file, whose questions are its own (one
model's run, e.g. Llama-3.1-405B's 706 MATH answers, scored as ZeroEval scores that file).

- :class:`MathL5`: MATH level 5 (721 problems). Prompt: ZeroEval's zero-shot JSON prompt
  (the one GSM8K uses). Scoring: ZeroEval's ``math_eval.py`` (``math_number`` in
  :mod:`rede.answers`): the first number of the sanitised answer against the gold's.
- :class:`Crux`: CRUXEval output prediction (800 functions). Same prompt; scoring:
  ZeroEval's ``crux_eval.py`` (``crux_literal``): the answer, quotes stripped, against the
  gold literal, quotes stripped, as exact strings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rede.answers import crux_gold, crux_literal, math_answer_number, math_number
from rede.errors import ConfigError
from rede.evals.datasets import GSM8K_PROMPT, Question, Scored

ZEROEVAL_PROMPT = GSM8K_PROMPT
"""ZeroEval sends every one of these tasks the same zero-shot prompt around the question."""


class ZeroEvalTask:
    """Questions of one ZeroEval task, read from its recorded-output files."""

    name = ""
    answer = ""
    """The extractor (:data:`rede.answers.EXTRACTORS`) the task compares answers with."""
    dataset = ""
    """The ``dataset`` field of the task's records, as ZeroEval writes it."""
    text_key = "question"

    def __init__(self, path: str | Path) -> None:
        root = Path(path).expanduser()
        if not root.exists():
            raise ConfigError(f"{self.name} data {str(root)!r} does not exist")
        self.root = root
        self.files = self._files(root)
        self._questions = self._read()

    def _files(self, root: Path) -> list[Path]:
        if root.is_file():
            return [root]
        files = sorted((root / "outputs").glob("*.json")) or sorted(root.glob("*.json"))
        if not files:
            raise ConfigError(
                f"{self.name} data {str(root)!r} holds no outputs/*.json; give ZeroEval's "
                f"folder of recorded outputs for {self.dataset} or one of its files"
            )
        return files

    def _read(self) -> list[Question]:
        found: dict[str, Question] = {}
        self._recorded_by: dict[str, int] = {}
        for file in self.files:
            for n, item in enumerate(self._records(file)):
                qid = str(item.get("id"))
                self._recorded_by[qid] = self._recorded_by.get(qid, 0) + 1
                if qid not in found:
                    found[qid] = self._question(len(found), qid, item, file, n)
        if not found:
            raise ConfigError(f"{self.name} data {str(self.root)!r} holds no questions")
        return list(found.values())

    def _records(self, file: Path) -> list[dict[str, Any]]:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ConfigError(f"cannot read {self.name} data {str(file)!r}: {exc}") from None
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise ConfigError(f"{file} is not ZeroEval output: expected a JSON list of records")
        kinds = {item.get("dataset") for item in data} - {None}
        if kinds and kinds != {self.dataset}:
            raise ConfigError(
                f"{file} holds recordings of {', '.join(sorted(map(str, kinds)))}, not "
                f"{self.dataset}; give the {self.name} outputs"
            )
        return data

    def _question(self, index: int, qid: str, item: dict[str, Any], file: Path, n: int) -> Question:
        text, gold = item.get(self.text_key), item.get("answer")
        if not isinstance(text, str) or not isinstance(gold, str):
            raise ConfigError(
                f"record {n} of {file} is not a {self.name} record: expected a string "
                f"{self.text_key!r} and a string 'answer'"
            )
        return Question(index, qid, text, self.gold(gold))

    def gold(self, raw: str) -> str:
        raise NotImplementedError

    def questions(self, limit: int | None = None) -> list[Question]:
        return self._questions[:limit]

    def common_questions(self) -> list[Question]:
        """The questions that every file read recorded."""
        every = len(self.files)
        return [q for q in self._questions if self._recorded_by[q.id] == every]

    def prompt(self, question: Question) -> str:
        return ZEROEVAL_PROMPT.format(question=question.text)

    def score(self, text: str, question: Question) -> Scored:
        raise NotImplementedError


class MathL5(ZeroEvalTask):
    """MATH level 5 as ZeroEval asks and scores it."""

    name = "math-l5"
    answer = "math_number"
    dataset = "math-l5"
    text_key = "problem"

    def gold(self, raw: str) -> str:
        # ZeroEval drops '#' from the gold, sanitises it and keeps its first number; a gold
        # without a number ("\\text{(C)}") is never matched
        return math_answer_number(raw.replace("#", "").strip()) or ""

    def score(self, text: str, question: Question) -> Scored:
        found = math_number(text)
        ok = found is not None and question.target != "" and float(found) == float(question.target)
        return Scored(found, ok)


class Crux(ZeroEvalTask):
    """CRUXEval (output prediction) as ZeroEval asks and scores it."""

    name = "crux"
    answer = "crux_literal"
    dataset = "crux"

    def gold(self, raw: str) -> str:
        return crux_gold(raw)

    def score(self, text: str, question: Question) -> Scored:
        found = crux_literal(text)
        return Scored(found, found is not None and found == question.target)


ZEROEVAL_BENCHMARKS: dict[str, type[MathL5] | type[Crux]] = {"math-l5": MathL5, "crux": Crux}

__all__ = ["ZEROEVAL_BENCHMARKS", "ZEROEVAL_PROMPT", "Crux", "MathL5", "ZeroEvalTask"]
