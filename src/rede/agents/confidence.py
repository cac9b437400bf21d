"""Confidence by agreement of k samples, as a wrapper around any specialist.

An agent declares its method in the network YAML (``confidence:`` of an agent, see
:class:`~rede.config.ConfidenceConfig`): ``self`` (the default), ``logprobs``, or
``{method: agreement, k: 3}``; :func:`llm_specialist` builds the specialist for it.

How each confidence method is computed (``result.data["confidence_method"]``):

- ``self_reported``: the model ends its reply with ``CONFIDENCE: x`` as its prompt asks
  (:class:`~rede.specialists.LLMSpecialist`); x is clipped to [0, 1].
- ``logprobs``: the geometric mean token probability of the completion,
  ``exp(mean(logprobs))``. With ``confidence: logprobs`` the log-probabilities are requested
  from the server and preferred to the line; with ``self`` they are used only when the
  server returns them unasked and no line was written. A server that returns none falls
  back to the line, then ``none``.
- ``agreement_k`` (:class:`AgreementSpecialist`): the task is run k times as independent
  samples (``metadata["sample"] = i``; real servers vary by temperature, the sim by seed);
  outputs are grouped by their answer (:func:`answer_key`), the largest group's answer is
  returned, and the confidence is that group's share of the k samples (failed samples
  count as disagreeing). It costs k calls; usage is their sum.
- ``tool``: 1.0 for a tool's successful result; ``none``: 0.5, nothing was reported.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable
from functools import reduce

from rede.agents.specialists import LLMSpecialist, Specialist, TaskContext
from rede.config import ConfidenceConfig
from rede.models._base import ChatModel
from rede.protocol.messages import Budget, Critique, Result, Task, Usage

_ANSWER = re.compile(r"(?:answer is|answer:)\s*(.+?)\s*(?:[.\n]|$)", re.I)
_TAG = re.compile(r"\[simulated [^\]]*\]")


def answer_key(text: str) -> str:
    """What two outputs must share to agree: the stated answer ("the answer is X",
    "Answer: X") if there is one, else the whole text, lower-cased, spaces collapsed."""
    found = _ANSWER.findall(text)
    core = found[-1] if found else _TAG.sub("", text)
    return " ".join(core.lower().split()).strip(" .")


class AgreementSpecialist(Specialist):
    """Runs the wrapped specialist ``k`` times and reports the agreement as confidence."""

    def __init__(
        self, inner: Specialist, k: int = 5, key: Callable[[str], str] = answer_key
    ) -> None:
        if k < 2:
            raise ValueError("agreement needs at least 2 samples")
        self.inner = inner
        self.k = k
        self.key = key
        self.kind = inner.kind
        self.model_name = inner.model_name
        self.simulated = inner.simulated

    async def handle(self, task: Task, ctx: TaskContext) -> Result | Critique:
        if task.capability in ("plan", "critique"):
            return await self.inner.handle(task, ctx)
        budget = _share(task.budget, self.k)  # k samples together stay within the task's
        samples = await asyncio.gather(
            *(
                self.inner.handle(
                    task.model_copy(
                        update={"metadata": {**task.metadata, "sample": i}, "budget": budget}
                    ),
                    ctx,
                )
                for i in range(self.k)
            ),
            return_exceptions=True,
        )
        usage = reduce(
            lambda a, b: a + b,
            (s.usage for s in samples if isinstance(s, Result | Critique)),
            Usage(),
        )
        ok = [s for s in samples if isinstance(s, Result) and s.status == "ok"]
        if not ok:
            errors = [str(s) if isinstance(s, BaseException) else s.error for s in samples]
            return Result(
                status="failed",
                error=f"all {self.k} samples failed: {errors[0]}",
                usage=usage,
            )
        votes = Counter(self.key(s.output) for s in ok)
        best, n = votes.most_common(1)[0]
        chosen = max((s for s in ok if self.key(s.output) == best), key=lambda s: s.confidence)
        return Result(
            output=chosen.output,
            confidence=n / self.k,
            usage=usage,
            data={
                **(chosen.data or {}),
                "confidence_method": f"agreement_{self.k}",
                "votes": dict(votes),
                "self_reported": chosen.confidence,
            },
        )


def _share(budget: Budget, k: int) -> Budget:
    """One of ``k`` equal shares of a task's budget (at least a token each)."""
    return Budget(
        max_tokens=None if budget.max_tokens is None else max(1, budget.max_tokens // k),
        max_cost_usd=None if budget.max_cost_usd is None else budget.max_cost_usd / k,
    )


def llm_specialist(
    model: ChatModel, prompts: dict[str, str] | None, confidence: ConfidenceConfig | None
) -> Specialist:
    """An LLM specialist whose results carry confidence by the declared method."""
    method = confidence.method if confidence is not None else "self"
    inner = LLMSpecialist(model, prompts, confidence="logprobs" if method == "logprobs" else "self")
    if method == "agreement":
        assert confidence is not None
        return AgreementSpecialist(inner, k=confidence.k or 5)
    return inner
