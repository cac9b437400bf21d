"""Question-answer benchmarks scored as their authors score them: GSM8K and MMLU-Pro.

Each reads its questions from a path the user gives (``--data``); nothing is shipped.

- :class:`GSM8K`: a folder holding ``test.jsonl`` (the GSM8K test split, ``{"question",
  "answer": "... #### 18"}`` a line), or that file. The prompt is ZeroEval's zero-shot prompt,
  which asks for ``{"reasoning": ..., "answer": ...}``; a reply is scored by ZeroEval's rule
  (``json_number`` in :mod:`rede.answers`): the answer compared with the gold as a number.
- :class:`MMLUPro`: a JSON list of ``{"question_id", "question", "options", "answer",
  "category"}`` (the test set, or a published ``model_outputs_*.json`` which carries the same
  fields; ``N/A`` options are dropped, as MMLU-Pro's ``preprocess`` does), or a folder of such
  files. The prompt is the MMLU-Pro chain-of-thought prompt with no examples (zero-shot; the
  published runs use 5 examples from the validation split); a reply is scored by the
  published ``compute_accuracy.py``: ``answer is (X)``, then ``Answer: X``, then the last
  letter A-J; a reply with none counts as that script's fixed "random" guess (it seeds 12345
  before each draw, which always gives G).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rede.answers import canonical_number, choice, json_number
from rede.errors import ConfigError
from rede.models.recordings import LETTERS, mmlu_pro_question

MMLU_PRO_NO_ANSWER = "G"
"""What MMLU-Pro's ``compute_accuracy.py`` scores a reply without a letter as: it calls
``random.seed(12345)`` then ``random.choice`` of A-J, which is G every time."""

GSM8K_PROMPT = (
    "\n## Question: \n\n{question}\n\n\n## Instruction \n\n"
    "Please answer this question by first reasoning and then providing your answer.\n"
    "Present your reasoning and solution in the following json format. \n"
    'Please show your final answer in the `answer` field, e.g.,`"answer": "42"`.\n\n'
    '```json\n{{\n    "reasoning": "___",\n    "answer": "___"\n}}\n```\n'
)
"""ZeroEval's GSM8K prompt, as its recordings hold it (``chat_history[0]``)."""

MMLU_PRO_PROMPT = (
    "The following are multiple choice questions (with answers) about {category}. Think step "
    'by step and then finish your answer with "the answer is (X)" where X is the correct '
    "letter choice.\n\nQuestion: {question}\nAnswer: Let's think step by step."
)
"""``{question}`` is the question with its options (:func:`mmlu_pro_question`)."""


@dataclass(frozen=True, slots=True)
class Question:
    index: int
    """Position in the data (line of ``test.jsonl``, place in the MMLU-Pro list)."""
    id: str
    text: str
    target: str
    """The gold answer, canonical: a number string (GSM8K) or a letter (MMLU-Pro)."""
    options: tuple[str, ...] = ()
    category: str = ""


@dataclass(frozen=True, slots=True)
class Scored:
    answer: str | None
    correct: bool


class QABenchmark(Protocol):
    name: str
    answer: str
    """The extractor (:data:`rede.answers.EXTRACTORS`) the benchmark compares answers with."""
    root: Path

    def questions(self, limit: int | None = None) -> list[Question]: ...

    def prompt(self, question: Question) -> str: ...

    def score(self, text: str, question: Question) -> Scored: ...


def _existing(path: str | Path, what: str) -> Path:
    root = Path(path).expanduser()
    if not root.exists():
        raise ConfigError(f"{what} data {str(root)!r} does not exist")
    return root


class GSM8K:
    """GSM8K test questions, ZeroEval's prompt and ZeroEval's scoring."""

    name = "gsm8k"
    answer = "json_number"

    def __init__(self, path: str | Path) -> None:
        root = _existing(path, "GSM8K")
        self.root = root
        self.file = root / "test.jsonl" if root.is_dir() else root
        if not self.file.is_file():
            raise ConfigError(
                f"GSM8K data {str(root)!r} has no test.jsonl; give the folder that holds it "
                "(e.g. ../shared/data/gsm8k-zeroeval) or the file"
            )
        self._questions = self._read()

    def _read(self) -> list[Question]:
        try:
            lines = self.file.read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read GSM8K data {str(self.file)!r}: {exc}") from None
        out: list[Question] = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                gold = canonical_number(item["answer"].rpartition("####")[2])
                assert isinstance(item["question"], str) and gold is not None
            except (ValueError, KeyError, TypeError, AttributeError, AssertionError):
                raise ConfigError(
                    f"{self.file}:{n} is not a GSM8K record: expected "
                    '{"question": ..., "answer": "... #### <number>"}'
                ) from None
            i = len(out)
            out.append(Question(i, f"gsm8k-main-test-#{i}", item["question"], gold))
        if not out:
            raise ConfigError(f"GSM8K data {str(self.file)!r} holds no questions")
        return out

    def questions(self, limit: int | None = None) -> list[Question]:
        return self._questions[:limit]

    def prompt(self, question: Question) -> str:
        return GSM8K_PROMPT.format(question=question.text)

    def score(self, text: str, question: Question) -> Scored:
        found = json_number(text)
        correct = found is not None and float(found) == float(question.target)
        return Scored(found, correct)


class MMLUPro:
    """MMLU-Pro questions, its chain-of-thought prompt (zero-shot) and its scoring."""

    name = "mmlu-pro"
    answer = "choice"

    def __init__(self, path: str | Path) -> None:
        root = _existing(path, "MMLU-Pro")
        self.root = root
        files = [root] if root.is_file() else sorted(root.glob("*.json"))
        if not files:
            raise ConfigError(f"MMLU-Pro data {str(root)!r} holds no *.json file")
        self._questions: list[Question] = []
        seen: set[str] = set()
        for file in files:
            for item in self._read(file):
                qid = str(item["question_id"])
                if qid not in seen:
                    seen.add(qid)
                    self._questions.append(self._question(len(self._questions), item))

    @staticmethod
    def _read(file: Path) -> list[dict[str, Any]]:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ConfigError(f"cannot read MMLU-Pro data {str(file)!r}: {exc}") from None
        need = ("question_id", "question", "options", "answer")
        if not isinstance(data, list) or not all(
            isinstance(item, dict) and all(k in item for k in need) for item in data
        ):
            raise ConfigError(
                f"{file} is not MMLU-Pro data: expected a JSON list of records with "
                f"{', '.join(need)}"
            )
        return data

    @staticmethod
    def _question(index: int, item: dict[str, Any]) -> Question:
        options = item["options"]
        if isinstance(options, list):  # as MMLU-Pro's evaluate scripts (``preprocess``) do
            options = [o for o in options if o != "N/A"]
        answer = item["answer"]
        if not (
            isinstance(options, list)
            and 0 < len(options) <= len(LETTERS)
            and isinstance(answer, str)
            and answer in LETTERS[: len(options)]
        ):
            raise ConfigError(
                f"MMLU-Pro question {item['question_id']}: 'options' must be a list of up to "
                f"10 and 'answer' one of their letters, got {answer!r}"
            )
        return Question(
            index,
            str(item["question_id"]),
            str(item["question"]),
            answer,
            tuple(str(o) for o in options),
            str(item.get("category", "")),
        )

    def questions(self, limit: int | None = None) -> list[Question]:
        return self._questions[:limit]

    def prompt(self, question: Question) -> str:
        return MMLU_PRO_PROMPT.format(
            category=question.category or "general knowledge",
            question=mmlu_pro_question(question.text, question.options),
        )

    def score(self, text: str, question: Question) -> Scored:
        found = choice(text)
        return Scored(found, (found or MMLU_PRO_NO_ANSWER) == question.target)


BENCHMARKS: dict[str, type[GSM8K] | type[MMLUPro]] = {"gsm8k": GSM8K, "mmlu-pro": MMLUPro}

__all__ = ["BENCHMARKS", "GSM8K", "MMLUPro", "QABenchmark", "Question", "Scored"]
