"""Confidence methods (self-reported, log-probabilities, agreement of k samples), declared in
YAML, and agreement's calibration against the sim's ground truth."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from rede.agents.confidence import AgreementSpecialist, answer_key, llm_specialist
from rede.agents.specialists import NO_CONTEXT, LLMSpecialist
from rede.config import ConfidenceConfig, NetworkConfig
from rede.errors import ConfigError
from rede.models import ModelRequest, ModelResponse, ScriptedModel
from rede.models.sim import SimModel
from rede.network import Network
from rede.protocol.messages import Result, Task


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


# --------------------------------------------------------------------------- declared in YAML

AGREEMENT_YAML = """
name: voters
models:
  m: {spec: "sim:3b"}
agents:
  - name: solver
    capabilities: [answer]
    model: m
    confidence: {method: agreement, k: 3}
"""


async def test_yaml_agreement_k3_reports_the_share_of_agreeing_samples(tmp_path: Path) -> None:
    replies = ["the answer is 4", "the answer is 5", "The answer is 4."]

    def handler(request: ModelRequest) -> str:
        return f"{replies[request.metadata['sample']]}\nCONFIDENCE: 0.99"

    path = tmp_path / "net.yaml"
    path.write_text(AGREEMENT_YAML)
    model = ScriptedModel(handler, name="m")
    net = Network.from_yaml(path, models={"m": model})
    spec = net.spec(net.config.agents[0])
    assert isinstance(spec.specialist, AgreementSpecialist) and spec.specialist.k == 3
    async with net:
        result = await net.ask("what is 2 + 2, in words?")
    assert answer_key(result.answer) == "4"
    assert result.confidence == pytest.approx(2 / 3)
    step = result.step("answer")
    assert step.confidence == pytest.approx(2 / 3)
    assert len(model.requests) == 3 and step.usage.calls == 3, "k calls, usage summed"
    reply = next(e.payload for e in result.envelopes if isinstance(e.payload, Result))
    assert reply.data is not None and reply.data["confidence_method"] == "agreement_3"


async def test_yaml_agreement_on_a_sim_model_runs_k_samples() -> None:
    net = Network.from_dict(
        {
            "models": {"m": {"spec": "sim:3b", "seed": 4, "time_scale": 0}},
            "agents": [
                {
                    "name": "solver",
                    "capabilities": ["answer"],
                    "model": "m",
                    "confidence": {"method": "agreement", "k": 3},
                }
            ],
        }
    )
    async with net:
        result = await net.ask("Q: which?", metadata={"truth": "A", "wrong": ["B", "C", "D"]})
    assert result.confidence in (pytest.approx(1 / 3), pytest.approx(2 / 3), 1.0)
    assert result.step("answer").usage.calls == 3


def test_confidence_methods_parse_from_short_and_long_forms() -> None:
    def agent(confidence: Any) -> dict[str, Any]:
        conf = NetworkConfig.from_dict(
            {
                "models": {"m": {"spec": "sim:1b"}},
                "agents": [
                    {"name": "a", "capabilities": ["x"], "model": "m", "confidence": confidence}
                ],
            }
        )
        c = conf.agents[0].confidence
        assert c is not None
        return {"method": c.method, "k": c.k}

    assert agent("self") == {"method": "self", "k": None}
    assert agent("logprobs") == {"method": "logprobs", "k": None}
    assert agent("agreement") == {"method": "agreement", "k": 5}
    assert agent({"method": "agreement", "k": 3}) == {"method": "agreement", "k": 3}


@pytest.mark.parametrize(
    ("confidence", "message"),
    [
        ("vote", r"agents\.0\.confidence\.method: .*unknown confidence method 'vote'"),
        (
            {"method": "agreement", "k": 1},
            r"agents\.0\.confidence\.k: .*greater than or equal to 2",
        ),
        ({"method": "self", "k": 3}, r"agents\.0\.confidence: .*k applies to method 'agreement'"),
        ({"method": "agreement", "samples": 3}, r"agents\.0\.confidence\.samples"),
    ],
)
def test_a_bad_confidence_declaration_is_a_config_error_naming_it(
    tmp_path: Path, confidence: Any, message: str
) -> None:
    data = {
        "models": {"m": {"spec": "sim:1b"}},
        "agents": [{"name": "a", "capabilities": ["x"], "model": "m", "confidence": confidence}],
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        Network.from_yaml(path)


def test_a_tool_agent_cannot_declare_a_confidence_method() -> None:
    with pytest.raises(ConfigError, match="'confidence' applies to model agents"):
        NetworkConfig.from_dict(
            {"agents": [{"name": "t", "capabilities": ["x"], "tool": "echo", "confidence": "self"}]}
        )


class LogprobModel(ScriptedModel):
    """Returns log-probabilities when asked for them, as an OpenAI-compatible server does."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        resp = await super().complete(request)
        return resp.model_copy(update={"logprobs": [-0.1, -0.1]} if request.logprobs else {})


async def test_declared_logprobs_are_requested_and_preferred_to_the_stated_line() -> None:
    task = Task(capability="answer", instruction="q")
    declared = LLMSpecialist(LogprobModel(lambda r: "x\nCONFIDENCE: 0.2"), confidence="logprobs")
    result = await declared.handle(task, NO_CONTEXT)
    assert isinstance(result, Result) and result.output == "x"
    assert result.confidence == pytest.approx(math.exp(-0.1))
    assert result.data == {"confidence_method": "logprobs"}
    # the default asks for none, so the stated line is used
    plain = await LLMSpecialist(LogprobModel(lambda r: "x\nCONFIDENCE: 0.2")).handle(
        task, NO_CONTEXT
    )
    assert isinstance(plain, Result) and plain.confidence == 0.2
    assert plain.data == {"confidence_method": "self_reported"}
    # a server that returns no log-probabilities: the line, then 0.5
    fallback = LLMSpecialist(ScriptedModel(lambda r: "x\nCONFIDENCE: 0.3"), confidence="logprobs")
    result = await fallback.handle(task, NO_CONTEXT)
    assert isinstance(result, Result) and result.confidence == 0.3


def test_llm_specialist_builds_the_declared_method() -> None:
    model = ScriptedModel(lambda r: "x")
    assert isinstance(llm_specialist(model, None, None), LLMSpecialist)
    logp = llm_specialist(model, None, ConfidenceConfig(method="logprobs"))
    assert isinstance(logp, LLMSpecialist) and logp.confidence == "logprobs"
    voted = llm_specialist(model, None, ConfidenceConfig(method="agreement", k=4))
    assert isinstance(voted, AgreementSpecialist) and voted.k == 4
