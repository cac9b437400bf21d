"""Confidence by agreement of k samples, and its calibration against the sim's ground truth."""

from __future__ import annotations

import pytest

from rede.confidence import AgreementSpecialist, answer_key
from rede.messages import Result, Task
from rede.models import ModelRequest, ScriptedModel
from rede.models.sim import SimModel
from rede.specialists import NO_CONTEXT, LLMSpecialist


def test_answer_key_compares_stated_answers() -> None:
    assert answer_key("[simulated x] Thinking. So the answer is Paris.\n") == "paris"
    assert answer_key("Answer: 42") == answer_key("the answer is 42.")
    assert answer_key("  Some   Free TEXT ") == "some free text"


async def test_agreement_confidence_is_the_share_of_samples_that_agree() -> None:
    replies = ["the answer is 4", "The answer is 4.", "the answer is 5", "the answer is 4", "!"]

    def handler(request: ModelRequest) -> str:
        reply = replies[request.metadata["sample"]]
        if reply == "!":
            raise RuntimeError("sample failed")
        return f"{reply}\nCONFIDENCE: 0.9"

    specialist = AgreementSpecialist(LLMSpecialist(ScriptedModel(handler)), k=5)
    result = await specialist.handle(Task(capability="answer", instruction="2+2?"), NO_CONTEXT)
    assert isinstance(result, Result)
    assert answer_key(result.output) == "4"
    assert result.confidence == pytest.approx(3 / 5), "the failed sample counts as disagreeing"
    assert result.data is not None
    assert result.data["confidence_method"] == "agreement_5"
    assert result.data["votes"] == {"4": 3, "5": 1}
    assert result.usage.calls == 4


async def test_agreement_confidence_is_calibrated_against_the_sims_truth() -> None:
    model = SimModel.from_profile("3b", time_scale=0, seed=3)
    plain = LLMSpecialist(model)
    voted = AgreementSpecialist(plain, k=5)
    high, low = [], []
    for i in range(120):
        task = Task(
            capability="answer",
            instruction=f"question {i}",
            metadata={"truth": "A", "wrong": ["B", "C", "D"]},
        )
        result = await voted.handle(task, NO_CONTEXT)
        assert isinstance(result, Result)
        correct = answer_key(result.output) == "a"
        (high if result.confidence >= 0.8 else low if result.confidence <= 0.4 else []).append(
            correct
        )
    assert len(high) > 10 and len(low) > 10
    assert sum(high) / len(high) > 0.9
    assert sum(low) / len(low) < 0.6
