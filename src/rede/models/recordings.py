"""Recorded completions on disk, read into :class:`Recording` objects for the replay backend.

Three published formats are read, told apart by their shape:

- **BIG-Bench Hard** (the chain-of-thought paper's outputs): ``{"outputs": [{"input": <full
  prompt>, "prediction": <completion>}, ...]}``. Served to a prompt that equals or contains the
  recorded input (see :mod:`rede.models.replay`).
- **ZeroEval** (``result_dirs/<task>/<model>.json``, e.g. its GSM8K results): a JSON list of
  ``{"id", "question", "chat_history": [<prompt>], "output": [<reply>], "generator", ...}``
  (MATH level 5 names the question ``problem``).
  Served to any prompt that contains the question.
- **MMLU-Pro** (``eval_results/model_outputs_<model>_5shots.json``): a JSON list of
  ``{"question_id", "question", "options": [...], "answer", "answer_index", "category",
  "pred", "model_outputs"}`` (``generated_text`` in some). Keyed by what identifies a question:
  its text and its options as MMLU-Pro's prompt lays them out (:func:`mmlu_pro_question`), so
  the same text asked with other options is another question. Served to any prompt that
  contains that block.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rede.errors import ConfigError

FORMATS = (
    'BIG-Bench Hard {"outputs": [{"input", "prediction"}]}, '
    'ZeroEval [{"question", "output": [...]}] or '
    'MMLU-Pro [{"question_id", "question", "options", "model_outputs"}]'
)


@dataclass(frozen=True, slots=True)
class Recording:
    """One recorded completion."""

    input: str
    """The whole prompt recorded (BIG-Bench Hard), the question (ZeroEval), or the question
    with its options (MMLU-Pro)."""
    prediction: str
    file: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    contained: bool = False
    """Serve any prompt that contains ``input`` (a question), not only one that is it."""
    prompt: str | None = None
    """The prompt the recording was made with, where the file keeps it beside the question."""
    generator: str | None = None
    """The model that produced it, where the file says."""


LETTERS = "ABCDEFGHIJ"
"""MMLU-Pro's option letters (up to ten options)."""


def mmlu_pro_question(question: str, options: Sequence[str]) -> str:
    """A question and its options as MMLU-Pro's chain-of-thought prompt shows them
    (``format_cot_example`` in its ``evaluate_from_*.py``): the text, ``Options:``, then
    ``A. <option>`` a line."""
    lines = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
    return f"{question}\nOptions:\n{lines}"


def load_recordings(file: Path) -> list[Recording]:
    """The recordings of one file, in any of the formats above; a ConfigError naming the file
    and the formats when it is none of them."""
    try:
        data: Any = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ConfigError(f"cannot read recordings {str(file)!r}: {exc}") from None
    if isinstance(data, dict) and "outputs" in data:
        return _bbh(file, data["outputs"])
    if isinstance(data, list) and data and isinstance(data[0], dict):
        first = data[0]
        if "output" in first and ("question" in first or "problem" in first):
            return _zeroeval(file, data)
        if "question_id" in first and "options" in first:
            return _mmlu_pro(file, data)
    raise ConfigError(f"recordings {str(file)!r} are in no known format; expected {FORMATS}")


def _bad(file: Path, i: int, need: str) -> ConfigError:
    return ConfigError(f"recording {i} in {str(file)!r} needs {need}")


def _bbh(file: Path, outputs: Any) -> list[Recording]:
    if not isinstance(outputs, list):
        raise ConfigError(
            f"recordings {str(file)!r} have no 'outputs' list; expected "
            '{"outputs": [{"input": ..., "prediction": ...}]}'
        )
    recordings: list[Recording] = []
    for i, item in enumerate(outputs):
        if not (
            isinstance(item, dict)
            and isinstance(item.get("input"), str)
            and isinstance(item.get("prediction"), str)
        ):
            raise _bad(file, i, "string fields 'input' and 'prediction'")
        usage = item.get("usage") if isinstance(item.get("usage"), dict) else {}
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        recordings.append(
            Recording(
                input=item["input"],
                prediction=item["prediction"],
                file=str(file),
                prompt_tokens=prompt_tokens if isinstance(prompt_tokens, int) else None,
                completion_tokens=completion_tokens if isinstance(completion_tokens, int) else None,
            )
        )
    return recordings


def _zeroeval(file: Path, items: list[Any]) -> list[Recording]:
    recordings: list[Recording] = []
    for i, item in enumerate(items):
        output = item.get("output") if isinstance(item, dict) else None
        question = item.get("question", item.get("problem")) if isinstance(item, dict) else None
        if not (
            isinstance(question, str)
            and isinstance(output, list)
            and output
            and isinstance(output[0], str)
        ):
            raise _bad(file, i, "a string 'question' (or 'problem') and an 'output' list")
        history = item.get("chat_history")
        prompt = history[0] if isinstance(history, list) and history else None
        generator = item.get("generator")
        recordings.append(
            Recording(
                input=question,
                prediction=output[0],
                file=str(file),
                contained=True,
                prompt=prompt if isinstance(prompt, str) else None,
                generator=generator if isinstance(generator, str) else None,
            )
        )
    return recordings


def _mmlu_pro(file: Path, items: list[Any]) -> list[Recording]:
    recordings: list[Recording] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _bad(file, i, "to be an object")
        text = item.get("model_outputs", item.get("generated_text"))
        options = item.get("options")
        if not (
            isinstance(item.get("question"), str)
            and isinstance(text, str)
            and isinstance(options, list)
            and 0 < len(options) <= len(LETTERS)
            and all(isinstance(o, str) for o in options)
        ):
            raise _bad(
                file,
                i,
                f"a string 'question', a list of 1 to {len(LETTERS)} string 'options' and "
                "'model_outputs'",
            )
        recordings.append(
            Recording(
                input=mmlu_pro_question(item["question"], options),
                prediction=text,
                file=str(file),
                contained=True,
            )
        )
    return recordings


__all__ = ["FORMATS", "LETTERS", "Recording", "load_recordings", "mmlu_pro_question"]
