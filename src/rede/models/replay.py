"""A recorded model: serves completions recorded earlier, so an evaluation runs end to end
without any model server.

``ReplayModel.from_path(path)`` loads recordings of BIG-Bench Hard, ZeroEval (GSM8K and its
other tasks) or MMLU-Pro (formats in :mod:`rede.models.recordings`): one such file, a folder
of them, or a folder of such folders. A request is served the recording whose input it
equals or contains. Look-up, fastest first:

1. the whole prompt, whitespace normalised (a BIG-Bench Hard input, a ZeroEval prompt);
2. a recorded *question* (ZeroEval; MMLU-Pro: the question with its options) anywhere in the
   prompt, whatever Rede's agent wrapped around it; where several are, of those not inside a
   longer one found, the one that starts last (the question asked after few-shot examples);
3. the *question* of a BIG-Bench Hard prompt: the last ``Q: ...`` block of the prompt and the
   answer cue that follows it (``A: Let's think step by step.`` or ``A:``), so few-shot
   examples, a system message or text after the cue do not matter;
4. a question that is the start of exactly one recorded question with the same cue (a
   task file that truncates an input the recording holds in full).

Anything else raises :class:`RecordingNotFound`, naming the start of the prompt and where
the recordings came from. Token counts are estimated (``estimated=True``) unless a recording
carries ``usage``; latency is 0 unless ``latency_s`` is set. ``max_tokens`` cuts a recording
only where it surely runs past the limit (:func:`served`).
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import itertools
import re
from collections.abc import Iterable
from pathlib import Path

from rede.errors import ConfigError, ModelError
from rede.models._base import (
    ChatModel,
    ModelRequest,
    ModelResponse,
    Price,
    estimate_tokens,
)
from rede.models.recordings import FORMATS, Recording, load_recordings

MIN_PREFIX_CHARS = 16
"""A truncated question must be at least this long to be matched by its start."""
START_CHARS = 48
"""Contained questions at least this long are indexed by their first this many characters,
shorter ones by their first two words."""


class RecordingNotFound(ModelError):
    """No recording matches the prompt of a request (or several disagree)."""

    def __init__(
        self, prompt: str, origin: str, detail: str = "", *, ambiguous: bool = False
    ) -> None:
        self.prompt = prompt
        self.origin = origin
        self.detail = detail
        """Why, where known (``"it contains none of the recorded questions"``, ...)."""
        self.ambiguous = ambiguous
        """Recordings match, but disagree and the prompt does not tell them apart."""
        start = " ".join(prompt.split())[:120]
        why = f" ({detail})" if detail else ""
        super().__init__(
            f"no recording for the prompt starting {start!r} in {origin}{why}; replay serves "
            "only prompts that equal or contain a recorded input"
        )


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
        self.hits: dict[str, int] = {"prompt": 0, "contained": 0, "question": 0, "prefix": 0}
        self._by_prompt: dict[bytes, list[Recording]] = {}
        self._by_question: dict[str, list[Recording]] = {}
        self._contained: dict[str, list[Recording]] = {}
        """Normalised question -> its recordings, served to prompts that contain it."""
        self._starts: dict[str, list[str]] = {}
        """The first :data:`START_CHARS` characters of each contained question -> those."""
        self._heads: dict[tuple[str, str | None], list[str]] = {}
        """The first two words of each shorter contained question -> those questions."""
        self.size = 0
        for rec in recordings:
            self.size += 1
            if rec.prompt is not None:
                self._by_prompt.setdefault(_digest(rec.prompt), []).append(rec)
            if rec.contained:
                self._add_contained(rec)
                continue
            self._by_prompt.setdefault(_digest(rec.input), []).append(rec)
            key = question_key(rec.input) or normalise(rec.input)
            self._by_question.setdefault(key, []).append(rec)
        self._sorted_questions = sorted(self._by_question)
        generators = {rec.generator for rec in self._all() if rec.generator}
        self.generator = generators.pop() if len(generators) == 1 else None
        """The one model that made every recording, where the files say."""

    def _add_contained(self, rec: Recording) -> None:
        question = normalise(rec.input)
        if not question:
            raise ConfigError(f"a recording in {rec.file!r} has an empty question")
        same = self._contained.setdefault(question, [])
        if not same and len(question) >= START_CHARS:
            self._starts.setdefault(question[:START_CHARS], []).append(question)
        elif not same:
            words = question.split(" ")
            head = (words[0], words[1] if len(words) > 1 else None)
            self._heads.setdefault(head, []).append(question)
        same.append(rec)

    def _all(self) -> Iterable[Recording]:
        for found in (self._by_question, self._contained):
            for recs in found.values():
                yield from recs

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
                f"replay recordings {str(root)!r} do not exist; give a JSON file of recorded "
                f"outputs ({FORMATS}) or a folder of them"
            )
        if root.is_file():
            files = [root]
        else:
            files = sorted(root.glob("*.json")) + sorted(root.glob("*/*.json"))
        if not files:
            raise ConfigError(f"no recordings (*.json) in {str(root)!r} or its sub-folders")
        recordings = [rec for file in files for rec in load_recordings(file)]
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
        if self._contained:
            question = self._question_in(normalise(prompt))
            if question is not None:
                self.hits["contained"] += 1
                return self._one(prompt, self._contained[question])
            if not self._by_question:
                raise RecordingNotFound(
                    prompt, self.origin, "it contains none of the recorded questions"
                )
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

    def _question_in(self, flat: str) -> str | None:
        """The recorded question a normalised prompt asks: of the questions it contains, those
        not inside a longer one found, and of these the one that starts last."""
        found: list[tuple[int, int, str]] = []
        words = flat.split(" ")
        at = 0
        for i, word in enumerate(words):
            for question in self._questions_at(flat, at, word, words[i + 1 : i + 2]):
                end = at + len(question)
                if not flat.startswith(question, at):
                    continue
                if end < len(flat) and flat[end].isalnum() and flat[end - 1].isalnum():
                    continue  # the question's last word runs on in the prompt
                found.append((at, end, question))
            at += len(word) + 1
        outer = [
            (start, end, q)
            for start, end, q in found
            if not any(s <= start and end <= e and (s, e) != (start, end) for s, e, _ in found)
        ]
        return max(outer)[2] if outer else None

    def _questions_at(self, flat: str, at: int, word: str, nxt: list[str]) -> Iterable[str]:
        """The contained questions that may start at ``at``, where ``word`` starts."""
        if self._starts:
            yield from self._starts.get(flat[at : at + START_CHARS], ())
        if self._heads:
            if nxt:
                yield from self._heads.get((word, nxt[0]), ())
            yield from self._heads.get((word, None), ())

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
        where = (
            f"{len(candidates)} times in {files[0]} with different answers"
            if len(files) == 1
            else f"in {len(files)} files with different answers ({', '.join(files)}); replay "
            "one run at a time"
        )
        raise RecordingNotFound(
            prompt,
            self.origin,
            f"its question is recorded {where}, and the rest of the prompt does not tell "
            "them apart",
            ambiguous=True,
        )

    def prompt_tokens_bound(self, request: ModelRequest) -> int:
        try:
            recorded = self.lookup(request.prompt_text).prompt_tokens
        except RecordingNotFound:
            recorded = None  # the call will fail; it spends nothing
        return recorded if recorded is not None else estimate_tokens(request.prompt_text)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """The recorded answer, cut where it surely runs past ``max_tokens`` (see
        :func:`served`)."""
        self.calls += 1
        rec = self.lookup(request.prompt_text)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        text, completion, cut = served(rec, request.max_tokens)
        if rec.prompt_tokens is not None and completion is not None:
            usage = self.usage(rec.prompt_tokens, completion, self.latency_s)
        else:
            estimate = estimate_tokens(text)
            if request.max_tokens is not None:
                estimate = min(estimate, request.max_tokens)  # the recorded model kept to it
            usage = self.usage(
                estimate_tokens(request.prompt_text), estimate, self.latency_s, estimated=True
            )
        return ModelResponse(text=text, usage=usage, finish_reason="length" if cut else "stop")


def served(rec: Recording, max_tokens: int | None) -> tuple[str, int | None, bool]:
    """A recording's text as served under ``max_tokens``, its completion tokens where the
    recording counts them, and whether it was cut.

    A recording is what a real model wrote under its own limit, so it is cut only where it
    surely runs past ``max_tokens``: its recorded count is over it, or (no count) it has more
    words than that, as the tokenizers of today's models (byte-level BPE, SentencePiece) never
    join two whitespace-separated words in one token. A cut by the 4-characters-a-token estimate
    would cut real completions the model finished (some of BIG-Bench Hard's CoT recordings
    hold over 2,048 characters in fewer than 512 words) and change their scores."""
    text, counted = rec.prediction, rec.completion_tokens
    if max_tokens is None:
        return text, counted, False
    if counted is not None:
        if counted <= max_tokens:
            return text, counted, False
        return text[: len(text) * max_tokens // counted], max_tokens, True
    if len(text.split()) <= max_tokens:
        return text, None, False
    last = list(itertools.islice(re.finditer(r"\S+", text), max_tokens))[-1]
    return text[: last.end()], None, True


__all__ = ["Recording", "RecordingNotFound", "ReplayModel", "question_key"]
