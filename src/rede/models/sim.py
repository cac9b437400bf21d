"""Simulated small models: calibrated quality, latency and price, deterministic for a seed.

A ``SimModel`` does not understand language. It answers by the *capability* of the call
(``request.metadata["capability"]``), with the quality, speed and price of a profile, so that
networks can be studied and demonstrated without any model server. Every text it writes
starts with ``[simulated <name>]``, and its usage is marked ``source="simulated"``.

What it writes, by capability:

- ``plan``: a JSON plan decomposing the request into research steps and a writing step that
  depends on them, marked for review (``"review": true``). With probability
  ``1 - quality`` the first plan it writes is invalid (an unknown capability or a cycle), so
  the Dispatcher's repair path is exercised as it would be with a real small model.
- ``critique``: a JSON critique. Drafts written by sim models carry their simulated quality
  (``[sim quality 0.62]``); the critic scores it with noise and accepts above a threshold.
- anything else: a short text about the instruction, with a simulated quality that rises
  when a critique's advice is in the context (a revision), ending with ``CONFIDENCE: x``.
- with ``metadata["truth"]`` (simulation workloads with known answers): the correct answer
  with probability ``quality``, else one of ``metadata["wrong"]``, with a stated confidence.

Calibrated from real models (``sim_calibration.json``, written by ``python
benchmarks/calibrate_sim.py --data ../shared/data/gsm8k-zeroeval`` from 19 real models' recorded
GSM8K answers): each size's accuracy is that of the real models mapped to it, and errors
coincide as real models' do. A question has a latent difficulty ``d`` shared by every model
(drawn from a hash of the question alone, not of the model or its seed); a model is wrong when
``sqrt(rho) * d + sqrt(1 - rho) * e > Phi^-1(quality)``, with ``e`` its own noise, so models
fail on the same hard questions at the measured rate of joint errors. A wrong answer is the
question's one "attractive" wrong answer often enough that two wrong models give the same one at
the measured rate. The stated confidence carries only as much information about being right as
agreement between two real models does (its AUROC for right-vs-wrong is the profile's
``confidence_auroc``): confidence is the probability of being right given a noisy signal, pulled
``overconfidence`` of the way toward 1.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import re
from importlib import resources
from statistics import NormalDist
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rede.errors import ConfigError, ModelUnavailable
from rede.models._base import (
    ChatModel,
    ModelRequest,
    ModelResponse,
    Price,
    estimate_tokens,
    truncate,
)
from rede.protocol.codec import describe_validation_error

QUALITY_MARK = re.compile(r"\[sim quality (\d\.\d+)\]")

CALIBRATION: dict[str, Any] = json.loads(
    resources.files("rede.models").joinpath("sim_calibration.json").read_text()
)
"""What ``benchmarks/calibrate_sim.py`` derived from real models' recorded answers."""
SHARED_DIFFICULTY: float = CALIBRATION["rho"]
"""Share of a question's error propensity common to every model (measured: GSM8K)."""
SAME_WRONG: float = CALIBRATION["same_wrong"]
"""P(two models give the same wrong answer | both are wrong), measured on GSM8K."""
_N = NormalDist()


class SimProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_quality: float = Field(0.7, ge=0, le=1)
    quality: dict[str, float] = Field(default_factory=dict)
    """Per-capability quality in [0, 1]; capabilities not named use ``base_quality``."""
    ttft_s: float = Field(0.1, ge=0)
    tokens_per_s: float = Field(100.0, gt=0)
    price: Price = Field(default_factory=Price)
    failure_rate: float = Field(0.0, ge=0, le=1)
    """Probability that a call fails as an unavailable server would."""
    overconfidence: float = Field(0.1, ge=0, le=1)
    """How far stated confidence is pulled from the calibrated probability toward 1."""
    confidence_auroc: float = Field(0.85, ge=0.5, lt=1)
    """How well stated confidence separates right from wrong answers (AUROC; 0.5: not at
    all). Calibrated to how well agreement between two real models detects errors."""
    shared_difficulty: float = Field(SHARED_DIFFICULTY, ge=0, lt=1)
    """Share of a question's error propensity common to every model (0: independent)."""
    context_window: int = 8192

    def quality_for(self, capability: str) -> float:
        return self.quality.get(capability, self.base_quality)


def _calibrated(size: str, **fields: Any) -> SimProfile:
    measured = CALIBRATION["sizes"][size]
    return SimProfile(
        base_quality=measured["accuracy"], confidence_auroc=measured["confidence_auroc"], **fields
    )


# Representative open-weight sizes served by a hosted provider (USD per 1k tokens). Quality
# and confidence come from the calibration (1b is extrapolated: no recorded model below 2B).
PROFILES: dict[str, SimProfile] = {
    "1b": _calibrated(
        "1b",
        ttft_s=0.05,
        tokens_per_s=250,
        price=Price(input_per_1k=0.00002, output_per_1k=0.00002),
    ),
    "3b": _calibrated(
        "3b",
        ttft_s=0.08,
        tokens_per_s=180,
        price=Price(input_per_1k=0.00006, output_per_1k=0.00006),
    ),
    "7b": _calibrated(
        "7b",
        ttft_s=0.12,
        tokens_per_s=110,
        price=Price(input_per_1k=0.0002, output_per_1k=0.0002),
    ),
    "8b": _calibrated(
        "8b",
        ttft_s=0.12,
        tokens_per_s=105,
        price=Price(input_per_1k=0.0002, output_per_1k=0.0002),
    ),
    "13b": _calibrated(
        "13b",
        ttft_s=0.2,
        tokens_per_s=70,
        price=Price(input_per_1k=0.0003, output_per_1k=0.0003),
    ),
    "70b": _calibrated(
        "70b",
        ttft_s=0.4,
        tokens_per_s=30,
        price=Price(input_per_1k=0.0009, output_per_1k=0.0009),
        context_window=32768,
        overconfidence=0.05,
    ),
}

_WORDS = re.compile(r"[A-Za-z][A-Za-z\-]{3,}")
_STOP = set(
    "about with that this what which from into their there should would could write short brief "
    "give explain please compare research answer question report using them they does".split()
)


def _keywords(text: str, n: int = 4) -> list[str]:
    seen: list[str] = []
    for w in _WORDS.findall(text):
        lw = w.lower()
        if lw not in _STOP and lw not in seen:
            seen.append(lw)
    return seen[:n] or ["the request"]


def _subjects(request: str) -> list[str]:
    """Split a request into up to three sub-questions, the way a planner would."""
    body = re.sub(
        r"^(please\s+)?(write|give|produce|draft)\s+(me\s+)?(a|an)?\s*", "", request, flags=re.I
    )
    m = re.search(
        r"(?:compare|between)\s+(.+?)\s+(?:and|vs\.?|versus)\s+(.+?)(?:[,.?:;]|\s+for\s|\s+in\s|$)",
        body,
        re.I,
    )
    if m:
        return [m.group(1).strip(), m.group(2).strip()]
    parts = [p.strip() for p in re.split(r"\?|;|\band\b|,", body) if len(p.strip()) > 12]
    return parts[:3] or [request.strip()]


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _difficulty(key: str) -> float:
    """The latent difficulty of question ``key``, N(0, 1), the same for every model."""
    u = (int.from_bytes(_digest(f"difficulty|{key}")[:8], "big") + 0.5) / 2**64
    return _N.inv_cdf(u)


def question_key(request: ModelRequest, truth: str) -> str:
    """What identifies a question across models, seeds and samples: its text and answer."""
    meta = request.metadata
    text = meta.get("request") or meta.get("instruction") or request.prompt_text
    return f"{text}|{truth}"


class SimModel(ChatModel):
    source = "simulated"

    def __init__(
        self, name: str, profile: SimProfile, *, seed: int = 0, time_scale: float = 1.0
    ) -> None:
        self.name = name
        self.profile = profile
        self.price = profile.price
        self.seed = seed
        self.time_scale = time_scale
        self.calls = 0

    @classmethod
    def from_profile(
        cls,
        profile: str,
        *,
        seed: int = 0,
        time_scale: float = 1.0,
        overrides: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> SimModel:
        base = PROFILES.get(profile)
        if base is None:
            raise ConfigError(f"unknown sim profile {profile!r}; known: {', '.join(PROFILES)}")
        try:
            prof = SimProfile.model_validate({**base.model_dump(), **(overrides or {})})
        except ValidationError as exc:
            raise ConfigError(f"sim: {describe_validation_error(exc)}") from None
        return cls(name or f"sim-{profile}", prof, seed=seed, time_scale=time_scale)

    def _rng(self, request: ModelRequest) -> random.Random:
        digest = hashlib.sha256(
            f"{self.seed}|{self.name}|{request.prompt_text}|"
            f"{json.dumps(request.metadata, sort_keys=True, default=str)}".encode()
        ).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        rng = self._rng(request)
        capability = str(request.metadata.get("capability", "general"))
        quality = self.profile.quality_for(capability)
        prompt_tokens = estimate_tokens(request.prompt_text)
        if rng.random() < self.profile.failure_rate:
            await self._wait(self.profile.ttft_s)
            raise ModelUnavailable(f"simulated outage of {self.name} (failure_rate)")
        text, cut = truncate(self.write(request, rng, capability, quality), request.max_tokens)
        completion_tokens = estimate_tokens(text)
        latency = self.profile.ttft_s + completion_tokens / self.profile.tokens_per_s
        await self._wait(latency)
        return ModelResponse(
            text=text,
            # Simulated tokens are counted as the estimate rule counts them: say so.
            usage=self.usage(
                prompt_tokens, completion_tokens, latency * self.time_scale, estimated=True
            ),
            finish_reason="length" if cut else "stop",
        )

    def write(
        self, request: ModelRequest, rng: random.Random, capability: str, quality: float
    ) -> str:
        """The text of one call, by capability. The simulation environment's grounded model
        (:mod:`rede.sim.model`) overrides this to answer from a workload's answer key."""
        if capability == "plan":
            return self._plan(request, rng, quality)
        if capability == "critique":
            return self._critique(request, rng, quality)
        if "truth" in request.metadata:
            return self._answer(request, rng, quality)
        return self._text(request, rng, quality, capability)

    async def _wait(self, seconds: float) -> None:
        if self.time_scale > 0:
            await asyncio.sleep(seconds * self.time_scale)

    # ------------------------------------------------------------------ by capability

    def _tag(self) -> str:
        return f"[simulated {self.name}]"

    def _plan(self, request: ModelRequest, rng: random.Random, quality: float) -> str:
        user_request = str(request.metadata.get("request", request.messages[-1].content))
        caps = set(request.metadata.get("capabilities", []))
        repairing = bool(request.metadata.get("repair_of"))
        steps: list[dict[str, Any]] = []
        research_cap = next((c for c in ("research", "researcher") if c in caps), None)
        write_cap = next((c for c in ("write", "writer") if c in caps), None)
        ids = []
        if research_cap:
            for i, subject in enumerate(_subjects(user_request), start=1):
                sid = f"research_{i}"
                ids.append(sid)
                steps.append(
                    {
                        "id": sid,
                        "capability": research_cap,
                        "instruction": f"Research: {subject}",
                        "depends_on": [],
                    }
                )
        if write_cap:
            steps.append(
                {
                    "id": "draft",
                    "capability": write_cap,
                    "instruction": f"Write the answer to: {user_request}",
                    "depends_on": ids,
                    # what the prompt asks: mark the step a critic should check. The
                    # dispatcher offers no `critique` capability (review is not a step), and
                    # the orchestrator skips review in a network without a critic.
                    "review": True,
                }
            )
        if not steps:
            steps.append(
                {
                    "id": "answer",
                    "capability": sorted(caps)[0] if caps else "general",
                    "instruction": user_request,
                    "depends_on": [],
                }
            )
        if not repairing and rng.random() > quality and len(steps) > 1:
            # a small model's typical slip: a misspelt capability or a dependency loop
            if rng.random() < 0.5:
                steps[0]["capability"] = steps[0]["capability"][:-1] + "z"
            else:
                steps[0]["depends_on"] = [steps[-1]["id"]]
        return json.dumps({"intent": "compose", "steps": steps})

    def _critique(self, request: ModelRequest, rng: random.Random, quality: float) -> str:
        draft = request.messages[-1].content
        marks = QUALITY_MARK.findall(draft)
        draft_quality = float(marks[-1]) if marks else 0.6
        # a better critic sees the draft's quality more precisely
        noise = rng.gauss(0, 0.15 * (1.2 - quality))
        score = min(1.0, max(0.0, draft_quality + noise))
        accepted = score >= 0.7
        issues = (
            []
            if accepted
            else rng.sample(
                [
                    "misses a key comparison point",
                    "claims lack sources",
                    "structure is unclear",
                    "too long for the question",
                    "ignores one of the sub-questions",
                ],
                k=2,
            )
        )
        advice = "" if accepted else "Address: " + "; ".join(issues) + "."
        return json.dumps(
            {
                "score": round(score, 2),
                "accepted": accepted,
                "issues": issues,
                "advice": advice,
                "confidence": round(0.5 + quality / 2, 2),
            }
        )

    def _answer(self, request: ModelRequest, rng: random.Random, quality: float) -> str:
        truth = str(request.metadata["truth"])
        wrong = [str(w) for w in request.metadata.get("wrong", [])] or [f"not {truth}"]
        key = question_key(request, truth)
        correct = self.is_right(key, quality, rng)
        answer = truth if correct else self.wrong_answer(key, wrong, rng)
        confidence = self.stated_confidence(rng, correct, quality)
        return (
            f"{self._tag()} Reasoning about the question step by step. "
            f"So the answer is {answer}.\nCONFIDENCE: {confidence:.2f}"
        )

    # ------------------------------------------------------------------ calibrated errors

    def is_right(self, key: str, quality: float, rng: random.Random) -> bool:
        """Whether this call answers question ``key`` right: ``quality`` on average, with the
        question's shared difficulty deciding which questions every model tends to miss."""
        if quality >= 1:
            return True
        if quality <= 0:
            return False
        rho = self.profile.shared_difficulty
        latent = math.sqrt(rho) * _difficulty(key) + math.sqrt(1 - rho) * rng.gauss(0, 1)
        return latent < _N.inv_cdf(quality)

    @staticmethod
    def wrong_answer(key: str, wrong: list[str], rng: random.Random) -> str:
        """A wrong answer to question ``key``: its one attractive wrong answer with the share
        that makes two wrong models agree at the measured rate, else any of ``wrong``."""
        if len(wrong) == 1:
            return wrong[0]
        chance = 1 / len(wrong)  # two uniform picks agree this often already
        share = math.sqrt(max(0.0, SAME_WRONG - chance) / (1 - chance))
        if rng.random() < share:
            return wrong[int(_digest(f"wrong|{key}")[:8].hex(), 16) % len(wrong)]
        return rng.choice(wrong)

    def stated_confidence(self, rng: random.Random, correct: bool, quality: float) -> float:
        """The probability of being right given a signal that tells right from wrong with the
        profile's ``confidence_auroc``, pulled ``overconfidence`` of the way toward 1."""
        if quality >= 1 or quality <= 0:
            p = min(1.0, max(0.0, quality))
        else:
            shift = math.sqrt(2) * _N.inv_cdf(self.profile.confidence_auroc)
            signal = rng.gauss(shift if correct else 0.0, 1)
            right = quality * _N.pdf(signal - shift)
            p = right / (right + (1 - quality) * _N.pdf(signal))
        stated = p + self.profile.overconfidence * (1 - p)
        return min(0.99, max(0.01, stated))

    def _text(
        self, request: ModelRequest, rng: random.Random, quality: float, capability: str
    ) -> str:
        instruction = str(request.metadata.get("instruction", request.messages[-1].content))
        prompt = request.prompt_text
        revising = "Critique of the previous draft" in prompt
        q = rng.uniform(quality - 0.2, quality + 0.1)
        if revising:
            previous = [float(x) for x in QUALITY_MARK.findall(prompt)] or [q]
            q = previous[-1] + (1 - previous[-1]) * rng.uniform(0.4, 0.7)
        q = min(0.99, max(0.05, q))
        words = _keywords(f"{instruction} {request.metadata.get('request', '')}")
        n_points = 2 + int(q * 3)
        points = [
            f"{i}. On {words[i % len(words)]}: a point a {self.name} model would make "
            f"about {words[(i + 1) % len(words)]}."
            for i in range(1, n_points + 1)
        ]
        sources = len(request.metadata.get("context_steps", []))
        lead = {
            "research": f"Findings for '{instruction[:80]}'",
            "write": "Draft answer" + (" (revised after critique)" if revising else ""),
            "synthesise": f"Final answer drawing on {sources} step result(s)",
        }.get(capability, f"{capability.capitalize()} output")
        confidence = min(0.99, max(0.05, q + rng.gauss(0, 0.05)))
        return (
            f"{self._tag()} {lead}:\n"
            + "\n".join(points)
            + f"\n[sim quality {q:.2f}]\nCONFIDENCE: {confidence:.2f}"
        )
