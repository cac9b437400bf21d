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
  "pred", "generated_text"}`` (``model_outputs`` in older files). Served to any prompt that
  contains the question; questions recorded twice are told apart by their options.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rede.errors import ConfigError

FORMATS = (
    'BIG-Bench Hard {"outputs": [{"input", "prediction"}]}, '
    'ZeroEval [{"question", "output": [...]}] or '
    'MMLU-Pro [{"question_id", "question", "options", "generated_text"}]'
)


@dataclass(frozen=True, slots=True)
class Recording:
    """One recorded completion."""

    input: str
    """The whole prompt recorded (BIG-Bench Hard), or the question (ZeroEval, MMLU-Pro)."""
    prediction: str
    file: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    contained: bool = False
    """Serve any prompt that contains ``input`` (a question), not only one that is it."""
    prompt: str | None = None
    """The prompt the recording was made with, where the file keeps it beside the question."""
    details: tuple[str, ...] = ()
    """Texts that tell apart recordings of the same question (a question's options)."""
    generator: str | None = None
    """The model that produced it, where the file says."""


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
        text = item.get("generated_text", item.get("model_outputs"))
        options = item.get("options")
        if not (
            isinstance(item.get("question"), str)
            and isinstance(text, str)
            and isinstance(options, list)
            and all(isinstance(o, str) for o in options)
        ):
            raise _bad(
                file, i, "a string 'question', a list of string 'options' and 'generated_text'"
            )
        recordings.append(
            Recording(
                input=item["question"],
                prediction=text,
                file=str(file),
                contained=True,
                details=tuple(options),
            )
        )
    return recordings


__all__ = ["FORMATS", "Recording", "load_recordings"]
