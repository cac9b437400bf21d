"""BIG-Bench Hard (Suzgun et al., 2022): tasks, few-shot prompts and answer formats.

The data is read from a folder the user gives (``--data``), laid out as the authors' repository:
``tasks/<task>.json`` (``{"examples": [{"input", "target"}]}``) and ``cot-prompts/<task>.txt``
(a canary line, ``-----``, a task description, then three worked examples). Nothing of it is
shipped with Rede.

Prompts are built as the paper built them, so that the recorded outputs of the paper's runs
match them character for character:

- chain of thought (``cot``): the prompt file after ``-----``, then ``"\\n\\nQ: " + input +
  "\\nA: Let's think step by step."``;
- answer only (``direct``): the first paragraph of the task description and the same three
  examples with their final answers only (``Q: ...\\nA: (B)``), then ``"\\n\\nQ: " + input +
  "\\nA:"``. Two of the paper's answer-only prompts differ from its CoT exemplars in one place
  each; :data:`ANSWER_ONLY_EDITS` reproduces them.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rede.errors import ConfigError

Mode = Literal["cot", "direct"]
MODES: tuple[Mode, ...] = ("cot", "direct")

TASKS: tuple[str, ...] = (
    "boolean_expressions",
    "causal_judgement",
    "date_understanding",
    "disambiguation_qa",
    "dyck_languages",
    "formal_fallacies",
    "geometric_shapes",
    "hyperbaton",
    "logical_deduction_five_objects",
    "logical_deduction_seven_objects",
    "logical_deduction_three_objects",
    "movie_recommendation",
    "multistep_arithmetic_two",
    "navigate",
    "object_counting",
    "penguins_in_a_table",
    "reasoning_about_colored_objects",
    "ruin_names",
    "salient_translation_error_detection",
    "snarks",
    "sports_understanding",
    "temporal_sequences",
    "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects",
    "tracking_shuffled_objects_three_objects",
    "web_of_lies",
    "word_sorting",
)
"""The 27 task files; the paper counts 23 tasks (two come in three sizes each)."""

FAMILIES: dict[str, str] = {
    **{f"logical_deduction_{n}_objects": "logical_deduction" for n in ("three", "five", "seven")},
    **{
        f"tracking_shuffled_objects_{n}_objects": "tracking_shuffled_objects"
        for n in ("three", "five", "seven")
    },
}
"""Task files the paper reports as one task, averaged."""

ALGORITHMIC: frozenset[str] = frozenset(
    {
        "boolean_expressions",
        "dyck_languages",
        "geometric_shapes",
        "logical_deduction",
        "multistep_arithmetic_two",
        "navigate",
        "object_counting",
        "temporal_sequences",
        "tracking_shuffled_objects",
        "web_of_lies",
        "word_sorting",
    }
)
"""The paper's algorithmic tasks (by family name); the other twelve are its NLP tasks."""

ANSWER_ONLY_EDITS: dict[str, tuple[tuple[str, str], ...]] = {
    # The paper's answer-only exemplar lists option (B) as 01/03/1961; its CoT exemplar
    # (and the right answer) say 01/03/1963.
    "date_understanding": (("(B) 01/03/1963\n", "(B) 01/03/1961\n"),),
    # A typo in the paper's answer-only prompt, kept so the recordings match.
    "tracking_shuffled_objects_three_objects": (
        (
            "At the end of the dance, Alice is dancing with",
            "At the end of thehg sy dance, Alice is dancing with",
        ),
    ),
}

COT_CUE = "Let's think step by step."
_ANSWER = "So the answer is "


@dataclass(frozen=True, slots=True)
class Example:
    task: str
    index: int
    input: str
    target: str


@dataclass(frozen=True, slots=True)
class Shot:
    """One worked example of a few-shot prompt."""

    question: str
    reasoning: str
    """The chain of thought after ``A: Let's think step by step.``, ending with the answer."""
    answer: str


@dataclass(frozen=True, slots=True)
class TaskPrompt:
    """The few-shot prompt of one task, in both modes."""

    task: str
    preamble: str
    """Everything before the first example: the description, sometimes more paragraphs."""
    shots: tuple[Shot, ...]
    cot_prefix: str
    """The prompt file's text after ``-----``, verbatim."""

    @property
    def description(self) -> str:
        return self.preamble.split("\n\n", 1)[0]

    @property
    def answer_only_prefix(self) -> str:
        text = self.description + "".join(f"\n\nQ: {s.question}\nA: {s.answer}" for s in self.shots)
        for old, new in ANSWER_ONLY_EDITS.get(self.task, ()):
            text = text.replace(old, new)
        return text

    def build(self, question: str, mode: Mode) -> str:
        """The full prompt for one input."""
        if mode == "cot":
            return f"{self.cot_prefix}\n\nQ: {question}\nA: {COT_CUE}"
        if mode == "direct":
            return f"{self.answer_only_prefix}\n\nQ: {question}\nA:"
        raise ConfigError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")


def parse_cot_prompt(task: str, text: str) -> TaskPrompt:
    """Split a ``cot-prompts/<task>.txt`` file into its preamble and worked examples."""
    _, sep, body = text.partition("-----\n")
    if not sep:
        body = text
    first = body.find("\n\nQ: ")
    if first < 0:
        raise ConfigError(f"CoT prompt of {task!r} has no 'Q: ' example")
    shots: list[Shot] = []
    for block in re.split(r"\n\n(?=Q: )", body[first + 2 :]):
        question, cue, reasoning = block.partition(f"\nA: {COT_CUE}")
        if not cue or _ANSWER not in reasoning:
            raise ConfigError(
                f"CoT prompt of {task!r}: an example lacks 'A: {COT_CUE}' or '{_ANSWER}...': "
                f"{block[:80]!r}"
            )
        answer = reasoning.rsplit(_ANSWER, 1)[1].strip().removesuffix(".").strip()
        shots.append(Shot(question.removeprefix("Q: "), reasoning.lstrip("\n"), answer))
    return TaskPrompt(task, body[:first], tuple(shots), body)


class BBH:
    """A BIG-Bench Hard data folder (``tasks/`` and ``cot-prompts/``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise ConfigError(
                f"BIG-Bench Hard data folder {str(self.root)!r} does not exist; pass --data PATH "
                "to a folder holding tasks/ and cot-prompts/"
            )
        missing = [d for d in ("tasks", "cot-prompts") if not (self.root / d).is_dir()]
        if missing:
            raise ConfigError(
                f"{str(self.root)!r} is not a BIG-Bench Hard data folder: it lacks "
                f"{' and '.join(d + '/' for d in missing)}"
            )
        self._examples: dict[str, tuple[tuple[str, str], ...]] = {}
        self._prompts: dict[str, TaskPrompt] = {}

    def tasks(self) -> list[str]:
        """Tasks with both a task file and a CoT prompt here."""
        have = {p.stem for p in (self.root / "tasks").glob("*.json")}
        prompts = {p.stem for p in (self.root / "cot-prompts").glob("*.txt")}
        return sorted(have & prompts)

    def resolve(self, tasks: str | Iterable[str] | None) -> list[str]:
        """Task names from ``t1,t2`` (or a list), validated; ``None``/``all`` is every task."""
        available = self.tasks()
        if tasks is None or tasks == "all":
            if not available:
                raise ConfigError(f"no BIG-Bench Hard tasks in {str(self.root)!r}")
            return available
        names = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else list(tasks)
        names = [n for n in names if n]
        if not names:
            raise ConfigError(f"no task named; valid: {', '.join(available)}")
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ConfigError(
                f"unknown task{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(available)}"
            )
        return list(dict.fromkeys(names))

    def examples(self, task: str, limit: int | None = None) -> list[Example]:
        if task not in self._examples:
            self._examples[task] = _read_examples(self.root / "tasks" / f"{task}.json")
        items = self._examples[task]
        chosen = items if limit is None else items[:limit]
        return [Example(task, i, inp, tgt) for i, (inp, tgt) in enumerate(chosen)]

    def prompt(self, task: str) -> TaskPrompt:
        if task not in self._prompts:
            self._prompts[task] = _read_prompt(self.root / "cot-prompts" / f"{task}.txt", task)
        return self._prompts[task]


def _read_examples(path: Path) -> tuple[tuple[str, str], ...]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return tuple((str(e["input"]), str(e["target"])) for e in data["examples"])
    except FileNotFoundError:
        raise ConfigError(f"no task file {str(path)!r}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read task file {str(path)!r}: {exc}") from None


def _read_prompt(path: Path, task: str) -> TaskPrompt:
    try:
        return parse_cot_prompt(task, path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no CoT prompt file {str(path)!r}") from None


def family(task: str) -> str:
    return FAMILIES.get(task, task)


def paper_averages(accuracy: Mapping[str, float]) -> dict[str, float]:
    """Averages as the paper reports them: tasks of one family averaged first, then the mean
    over all, over the algorithmic and over the NLP tasks (each only if any were run)."""
    groups: dict[str, list[float]] = {}
    for task, acc in accuracy.items():
        groups.setdefault(family(task), []).append(acc)
    per_family = {f: statistics.fmean(v) for f, v in groups.items()}
    out: dict[str, float] = {}
    if per_family:
        out["all"] = statistics.fmean(per_family.values())
    algorithmic = [v for f, v in per_family.items() if f in ALGORITHMIC]
    nlp = [v for f, v in per_family.items() if f not in ALGORITHMIC]
    if algorithmic:
        out["algorithmic"] = statistics.fmean(algorithmic)
    if nlp:
        out["nlp"] = statistics.fmean(nlp)
    return out


_OPTION = re.compile(r"^\(([A-R])\)", re.M)


def wrong_answers(example: Example, limit: int = 4) -> list[str]:
    """Plausible wrong answers for an example, for simulated models (``metadata["wrong"]``)."""
    target = example.target
    options = [f"({x})" for x in _OPTION.findall(example.input)]
    if target in options:
        return [o for o in options if o != target][:limit]
    pairs: Sequence[tuple[str, str]] = (
        ("True", "False"),
        ("Yes", "No"),
        ("yes", "no"),
        ("valid", "invalid"),
    )
    for a, b in pairs:
        if target in (a, b):
            return [b if target == a else a]
    try:
        n = int(target)
    except ValueError:
        pass
    else:
        return [str(n + d) for d in (1, -1, 2, -10)][:limit]
    words = target.split()
    if len(words) > 1:
        return [" ".join(reversed(words)), " ".join(words[1:] + words[:1])][:limit]
    return [f"not {target}"]


__all__ = [
    "ALGORITHMIC",
    "ANSWER_ONLY_EDITS",
    "BBH",
    "FAMILIES",
    "MODES",
    "TASKS",
    "Example",
    "Mode",
    "Shot",
    "TaskPrompt",
    "family",
    "paper_averages",
    "parse_cot_prompt",
    "wrong_answers",
]
