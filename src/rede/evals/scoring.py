"""Answer extraction and exact-match scoring for BIG-Bench Hard, as in the paper.

- Chain of thought: the answer is the text after the first ``So the answer is`` up to the end
  of that sentence (``So the answer is (B).`` gives ``(B)``). No such phrase: no answer.
- Answer only: the answer is the start of the completion (its first line; for tasks whose
  answer is one token, its first token). A completion that reasons anyway and says
  ``So the answer is X`` is read as in CoT mode.

Both the answer and the target are then put in the task's canonical form and compared
exactly. The canonical forms only undo differences of spelling, never of content:
``(a)``/``A``/``(A)`` for an option, case for labels (``true``, ``Yes``, ``valid``),
``1,000``/``8.0`` for numbers, spacing for Dyck sequences (``]})`` = ``] } )``) and commas or
spacing in word lists. ``(A) or (B)`` stays wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from rede.evals.bbh import TASKS, Mode

Format = Literal["choice", "label", "number", "dyck", "words", "text"]

LABELS: dict[str, tuple[str, ...]] = {
    "boolean_expressions": ("True", "False"),
    "causal_judgement": ("Yes", "No"),
    "navigate": ("Yes", "No"),
    "web_of_lies": ("Yes", "No"),
    "sports_understanding": ("yes", "no"),
    "formal_fallacies": ("valid", "invalid"),
}
NUMBERS = frozenset({"multistep_arithmetic_two", "object_counting"})

_MARKER = re.compile(r"so the answer is\s*:?\s*", re.I)
_SENTENCE_END = re.compile(r"\.(?=\s|$)")
_CHOICE = re.compile(r"^\(?([A-Ra-r])\)?$")
_LEADING_CHOICE = re.compile(r"^\(([A-Ra-r])\)")
_NUMBER = re.compile(r"^[-+\u2212]?(\d[\d,]*)(\.\d+)?$")
_LEADING_NUMBER = re.compile(r"^[-+\u2212]?\d[\d,]*(\.\d+)?")
_BRACKETS = set("()[]{}<>")


def answer_format(task: str) -> Format:
    if task in LABELS:
        return "label"
    if task in NUMBERS:
        return "number"
    if task == "dyck_languages":
        return "dyck"
    if task == "word_sorting":
        return "words"
    return "choice" if task in TASKS else "text"


def extract_cot(completion: str) -> str:
    """The text after ``So the answer is`` up to the end of that sentence, or ``""``."""
    found = _MARKER.search(completion)
    if found is None:
        return ""
    rest = completion[found.end() :].split("\n", 1)[0]
    end = _SENTENCE_END.search(rest)
    return (rest[: end.start()] if end else rest).strip()


def extract_direct(completion: str, task: str) -> str:
    """The answer at the start of an answer-only completion."""
    first = completion.strip().split("\n", 1)[0].strip()
    fmt = answer_format(task)
    if fmt == "choice":
        lead = _LEADING_CHOICE.match(first)
        if lead:
            return f"({lead.group(1)})"
    elif fmt == "label":
        word = re.match(r"^[A-Za-z]+", first)
        if word and word.group(0).lower() in {x.lower() for x in LABELS[task]}:
            return word.group(0)
    elif fmt == "number":
        num = _LEADING_NUMBER.match(first)
        if num:
            return num.group(0)
    if _MARKER.search(completion):
        return extract_cot(completion)
    return first.removesuffix(".").strip()


def extract_answer(completion: str, task: str, mode: Mode) -> str:
    return extract_cot(completion) if mode == "cot" else extract_direct(completion, task)


def normalise(answer: str, task: str) -> str:
    """The canonical form of an answer (or a target) for a task."""
    text = " ".join(answer.split()).removesuffix(".").strip()
    fmt = answer_format(task)
    if fmt == "choice":
        m = _CHOICE.match(text)
        return f"({m.group(1).upper()})" if m else text
    if fmt == "label":
        for label in LABELS[task]:
            if text.lower() == label.lower():
                return label
        return text
    if fmt == "number":
        m = _NUMBER.match(text)
        if not m:
            return text
        value = float(text.replace(",", "").replace("\u2212", "-"))
        return str(int(value)) if value.is_integer() else repr(value)
    if fmt == "dyck":
        compact = text.replace(" ", "")
        return " ".join(compact) if compact and set(compact) <= _BRACKETS else text
    if fmt == "words":
        return " ".join(w for w in re.split(r"[\s,]+", text) if w)
    return text


@dataclass(frozen=True, slots=True)
class Scored:
    answer: str
    """What was extracted from the completion ("" when nothing was)."""
    normalised: str
    target: str
    correct: bool


def score(completion: str, target: str, task: str, mode: Mode) -> Scored:
    answer = extract_answer(completion, task, mode)
    norm = normalise(answer, task)
    correct = bool(answer) and norm == normalise(target, task)
    return Scored(answer, norm, target, correct)


__all__ = [
    "LABELS",
    "NUMBERS",
    "Format",
    "Scored",
    "answer_format",
    "extract_answer",
    "extract_cot",
    "extract_direct",
    "normalise",
    "score",
]
