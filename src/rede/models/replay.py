"""A recorded model: serves completions recorded earlier, so an evaluation runs end to end
without any model server.

``ReplayModel.from_path(path)`` loads recordings in the format of the BIG-Bench Hard
outputs (``{"outputs": [{"input": <full prompt>, "prediction": <completion>, ...}]}``): one
such file, a folder of them, or a folder of such folders. A request is served the recording
whose input it equals or contains. Look-up, fastest first:

1. the whole prompt, whitespace normalised;
2. the *question*: the last ``Q: ...`` block of the prompt and the answer cue that follows it
   (``A: Let's think step by step.`` or ``A:``), so few-shot examples, a system message or
   text after the cue do not matter;
3. a question that is the start of exactly one recorded question with the same cue (a
   task file that truncates an input the recording holds in full).

Anything else raises :class:`RecordingNotFound`, naming the start of the prompt and where
the recordings came from. Token counts are estimated (``estimated=True``) unless a recording
carries ``usage``; latency is 0 unless ``latency_s`` is set.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rede.errors import ConfigError, ModelError
from rede.models._base import ChatModel, ModelRequest, ModelResponse, Price, estimate_tokens

MIN_PREFIX_CHARS = 16
"""A truncated question must be at least this long to be matched by its start."""


class RecordingNotFound(ModelError):
    """No recording matches the prompt of a request (or several disagree)."""

    def __init__(self, prompt: str, origin: str, detail: str = "") -> None:
        self.prompt = prompt
        self.origin = origin
        start = " ".join(prompt.split())[:120]
        why = f" ({detail})" if detail else ""
        super().__init__(
            f"no recording for the prompt starting {start!r} in {origin}{why}; replay serves "
            "only prompts that equal or contain a recorded input"
        )


@dataclass(frozen=True, slots=True)
class Recording:
    """One recorded completion."""

    input: str
    prediction: str
    file: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def normalise(text: str) -> str:
    """Whitespace collapsed to single spaces, ends stripped."""
    return " ".join(text.split())


def question_key(prompt: str) -> str | None:
    """The last ``Q: ...`` block of a prompt with its answer cue, whitespace normalised.

    ``None`` when the prompt has no ``Q:`` block followed by an ``A:`` cue."""
    start = prompt.rfind("\nQ: ")
    if start >= 0:
        start += 1
    elif prompt.startswith("Q: "):
        start = 0
    else:
        return None
    body = prompt[start + 3 :]
    cue_at = body.find("\nA:")
    if cue_at < 0:
        return None
    question = body[:cue_at]
    cue = body[cue_at + 3 :].split("\n", 1)[0]
    return f"{normalise(question)}\x00{normalise(cue)}"


def _digest(text: str) -> bytes:
    return hashlib.blake2b(normalise(text).encode(), digest_size=16).digest()


class ReplayModel(ChatModel):
    """Serves recorded completions; see the module docstring for how prompts are matched."""

    source = "replay"

    def __init__(
        self,
        recordings: Iterable[Recording],
        *,
        name: str = "replay",
        origin: str = "(recordings given in Python)",
        price: Price | None = None,
        latency_s: float = 0.0,
    ) -> None:
        if latency_s < 0:
            raise ConfigError(f"replay latency_s must be >= 0, got {latency_s}")
        self.name = name
        self.origin = origin
        self.price = price or Price()
        self.latency_s = latency_s
        self.calls = 0
        self.hits: dict[str, int] = {"prompt": 0, "question": 0, "prefix": 0}
        self._by_prompt: dict[bytes, list[Recording]] = {}
        self._by_question: dict[str, list[Recording]] = {}
        for rec in recordings:
            self._by_prompt.setdefault(_digest(rec.input), []).append(rec)
            key = question_key(rec.input) or normalise(rec.input)
            self._by_question.setdefault(key, []).append(rec)
        self._sorted_questions = sorted(self._by_question)
        self.size = sum(len(v) for v in self._by_question.values())

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        *,
        name: str | None = None,
        price: Price | dict[str, float] | None = None,
        latency_s: float = 0.0,
    ) -> ReplayModel:
        """Load one recordings file, a folder of them, or a folder of such folders."""
        root = Path(path).expanduser()
        if not root.exists():
            raise ConfigError(
                f"replay recordings {str(root)!r} do not exist; give a JSON file of "
                '{"outputs": [{"input": ..., "prediction": ...}]} or a folder of them'
            )
        if root.is_file():
            files = [root]
        else:
            files = sorted(root.glob("*.json")) + sorted(root.glob("*/*.json"))
        if not files:
            raise ConfigError(f"no recordings (*.json) in {str(root)!r} or its sub-folders")
        recordings = [rec for file in files for rec in _load_file(file)]
        if isinstance(price, dict):
            price = Price.model_validate(price)
        label = root.stem if root.is_file() else root.name
        return cls(
            recordings,
            name=name or f"replay:{label}",
            origin=str(root),
            price=price,
            latency_s=latency_s,
        )

    # ------------------------------------------------------------------ serving

    def lookup(self, prompt: str) -> Recording:
        """The recording for a prompt, or :class:`RecordingNotFound`."""
        same = self._by_prompt.get(_digest(prompt))
        if same is not None:
            self.hits["prompt"] += 1
            return self._one(prompt, same)
        key = question_key(prompt)
        if key is None:
            raise RecordingNotFound(prompt, self.origin, "the prompt has no 'Q: ... A:' block")
        found = self._by_question.get(key)
        if found:
            self.hits["question"] += 1
            return self._one(prompt, found)
        question, _, cue = key.partition("\x00")
        if len(question) >= MIN_PREFIX_CHARS:
            matches = self._starting_with(question, cue)
            if len(matches) == 1:
                self.hits["prefix"] += 1
                return self._one(prompt, self._by_question[matches[0]])
            if len(matches) > 1:
                raise RecordingNotFound(
                    prompt, self.origin, f"its question starts {len(matches)} recorded questions"
                )
        raise RecordingNotFound(prompt, self.origin)

    def _starting_with(self, question: str, cue: str) -> list[str]:
        at = bisect.bisect_left(self._sorted_questions, question)
        out: list[str] = []
        while at < len(self._sorted_questions):
            key = self._sorted_questions[at]
            if not key.startswith(question):
                break
            if key.partition("\x00")[2] == cue:
                out.append(key)
            at += 1
        return out

    def _one(self, prompt: str, candidates: list[Recording]) -> Recording:
        if len({rec.prediction for rec in candidates}) == 1:
            return candidates[0]
        # Several runs recorded the same question differently: the few-shot part decides.
        flat = normalise(prompt)
        inside = [rec for rec in candidates if normalise(rec.input) in flat]
        if len({rec.prediction for rec in inside}) == 1:
            return inside[0]
        files = sorted({rec.file for rec in candidates})
        raise RecordingNotFound(
            prompt,
            self.origin,
            f"its question has {len(candidates)} different recordings ({', '.join(files)}) "
            "and the rest of the prompt does not tell them apart; replay one run at a time",
        )

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        rec = self.lookup(request.prompt_text)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if rec.prompt_tokens is not None and rec.completion_tokens is not None:
            usage = self.usage(rec.prompt_tokens, rec.completion_tokens, self.latency_s)
        else:
            usage = self.usage(
                estimate_tokens(request.prompt_text),
                estimate_tokens(rec.prediction),
                self.latency_s,
                estimated=True,
            )
        return ModelResponse(text=rec.prediction, usage=usage, finish_reason="stop")


def _load_file(file: Path) -> list[Recording]:
    try:
        data: Any = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read recordings {str(file)!r}: {exc}") from None
    outputs = data.get("outputs") if isinstance(data, dict) else None
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
            raise ConfigError(
                f"recording {i} in {str(file)!r} needs string fields 'input' and 'prediction'"
            )
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


__all__ = ["Recording", "RecordingNotFound", "ReplayModel", "question_key"]
