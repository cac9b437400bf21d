"""A real instruction-tuned model: SmolLM2-135M (``tests/smollm.py``), in this process through
the ``llamacpp`` backend and served by llama.cpp's server through the ``openai`` backend.

Unlike tinyllm's random weights it writes language, so these check what only a real model
shows: an answer that names the right word, a plan and a critique decoded under their schemas,
a whole run of the demo network, a critic that writes prose where JSON was asked for. Sampling
is greedy (temperature 0, fixed seed). The model is weak: nothing here asserts quality beyond
one word.

Marked ``real_server``: run in CI (``.ci/run`` installs the ``local`` extra and the model), with
``REDE_REAL_SERVER=1`` or ``-m real_server``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import smollm
from rede import Network
from rede.agents.specialists import LLMSpecialist
from rede.cli.app import demo_network_path
from rede.cli.real import real_demo_config
from rede.config import LimitsConfig, NetworkConfig
from rede.models import ChatModel, ModelRequest
from rede.models._engine import Engine, Engines
from rede.models.llamacpp import LlamaCppModel
from rede.models.openai import OpenAIModel
from rede.orchestration.dispatcher import Dispatcher
from rede.orchestration.ledger import Ledger
from rede.orchestration.plan import parse_plan
from rede.protocol.messages import Critique, Task

pytestmark = [pytest.mark.real_server, pytest.mark.timeout(240, func_only=True)]

REQUEST = "Compare Redis Streams and Apache Kafka for a small team's order pipeline"
PARIS = ModelRequest.of(
    "What is the capital of France?", system="You are terse.", max_tokens=16, temperature=0
)


@pytest.fixture(scope="module")
def gguf_path() -> Path:
    try:
        return smollm.model_path()
    except smollm.Unavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc}\nCI must run the SmolLM2 tests", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def engines(gguf_path: Path) -> Iterator[Engines]:
    """One loaded SmolLM2 (2 slots) for the module: the models of every test share it."""
    shared = Engines()
    held = shared.acquire(LlamaCppModel("smollm2").key)
    yield shared
    shared.release(held)


@pytest.fixture
async def local(engines: Engines) -> AsyncIterator[LlamaCppModel]:
    model = LlamaCppModel("smollm2", engines=engines)
    yield model
    await model.aclose()


@pytest.fixture(scope="module")
def server_url(gguf_path: Path) -> Iterator[str]:
    with smollm.server(gguf_path, threads=1) as url:
        yield url


@pytest.fixture
async def served(server_url: str) -> AsyncIterator[OpenAIModel]:
    model = OpenAIModel("smollm2", base_url=server_url, seed=0, max_retries=1, timeout_s=120)
    yield model
    await model.aclose()


def chatml_tokens(engine: Engine, request: ModelRequest) -> int:
    """What SmolLM2's ChatML template makes of a request, counted by its own tokenizer."""
    turns = "".join(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in request.messages)
    text = turns + "<|im_start|>assistant\n"
    return len(engine.slots[0].llama.tokenize(text.encode(), special=True))


# --------------------------------------------------------------------------- in this process


async def test_real_language_with_the_models_own_token_counts(local: LlamaCppModel) -> None:
    response = await local.complete(PARIS)

    assert "paris" in response.text.lower()
    usage = response.usage
    assert usage.source == "real" and not usage.estimated and usage.cost_usd == 0
    assert usage.prompt_tokens == chatml_tokens(local.engine, PARIS)
    assert 0 < usage.completion_tokens <= 16


async def test_a_stream_is_the_same_reply_with_the_same_counts(local: LlamaCppModel) -> None:
    whole = await local.complete(PARIS)
    chunks = [chunk async for chunk in local.stream(PARIS)]

    last = chunks[-1].response
    assert last is not None and len(chunks) > 2  # token by token, then the whole
    assert "".join(c.delta for c in chunks) == last.text == whole.text
    assert not last.usage.estimated
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens
    assert last.usage.completion_tokens == whole.usage.completion_tokens


async def test_two_calls_run_in_parallel_slots(local: LlamaCppModel) -> None:
    other = ModelRequest.of("What is the capital of Italy?", system="You are terse.", max_tokens=16)
    local.engine.peak = 0

    paris, rome = await asyncio.gather(local.complete(PARIS), local.complete(other))

    assert local.engine.peak == 2
    assert "paris" in paris.text.lower() and "rome" in rome.text.lower()


def plan_task() -> Task:
    caps = {"research", "write", "synthesise", "arithmetic", "critique"}
    return Task(
        capability="plan",
        instruction="Decompose the request into a plan.",
        request=REQUEST,
        metadata=Dispatcher(LimitsConfig()).planner_metadata(REQUEST, caps),
    )


def critique_task() -> Task:
    draft = "Redis Streams is simpler to run; Kafka scales further. Pick Redis Streams."
    return Task(
        capability="critique",
        instruction="Review the output of step 's1'.",
        request=REQUEST,
        context=[{"step_id": "s1", "capability": "write", "content": draft}],
    )


@pytest.mark.parametrize("where", ["in_process", "server"])
async def test_plan_and_critique_are_valid_on_the_first_call(
    where: str, local: LlamaCppModel, served: OpenAIModel
) -> None:
    model: ChatModel = local if where == "in_process" else served
    planner = LLMSpecialist(
        model, {"plan": real_demo_config(demo_network_path())["agents"][0]["prompts"]["plan"]}
    )

    plan_result = await planner.handle(plan_task(), ctx=None)  # type: ignore[arg-type]
    critique = await LLMSpecialist(model).handle(critique_task(), ctx=None)  # type: ignore[arg-type]

    # llama.cpp's server refuses OpenAI's json_schema form (HTTP 500) and takes the schema as
    # json_object + schema, which the in-process backend uses directly
    assert plan_result.data is not None
    assert plan_result.data["structured"] == "json_object_schema"
    plan = parse_plan(
        plan_result.output, {"research", "write", "synthesise", "arithmetic"}, max_steps=6
    )
    assert plan.steps
    assert isinstance(critique, Critique) and critique.data == {"structured": "json_object_schema"}
    if where == "server":
        assert list(served.dialects.summary(served.base_url)["rejected"]) == ["json_schema"]


# --------------------------------------------------------------------------- llama.cpp's server


async def test_the_server_answers_in_language_with_its_own_counts(
    served: OpenAIModel, local: LlamaCppModel
) -> None:
    response = await served.complete(PARIS)
    streamed = [chunk async for chunk in served.stream(PARIS)]

    assert "paris" in response.text.lower()
    assert not response.usage.estimated
    assert response.usage.prompt_tokens == chatml_tokens(local.engine, PARIS)
    last = streamed[-1].response
    assert last is not None and last.text == response.text
    assert last.usage.estimated  # its streams carry no usage chunk: estimated, and said so


# --------------------------------------------------------------------------- whole runs


async def test_a_critic_that_writes_prose_leaves_the_draft_unreviewed(
    engines: Engines, server_url: str
) -> None:
    conf = real_demo_config(demo_network_path())
    for name, model in conf["models"].items():
        model["slots"] = 2
        if name.startswith("critic"):  # no schema sent: the model writes what it likes
            conf["models"][name] = {
                "spec": "openai:smollm2",
                "base_url": server_url,
                "structured": "none",
                "max_tokens": 24,
            }
    conf["agents"] = [
        {**a, "prompts": {"critique": "Write one line of a poem about the sea."}}
        if a["name"] == "critic"
        else a
        for a in conf["agents"]
    ]
    net = Network(NetworkConfig.from_dict(conf), ledger=Ledger())
    net.parts.engines = engines
    plan = parse_plan(
        json.dumps(
            {
                "intent": "compare",
                "steps": [
                    {
                        "id": "s1",
                        "capability": "write",
                        "instruction": "Compare Redis and Kafka.",
                        "review": True,
                    }
                ],
            }
        ),
        {"write"},
        max_steps=2,
    )
    async with net:
        result = await net.ask(REQUEST, plan=plan)

    assert result.status == "ok", result.error
    names = [d["name"] for d in result.decisions]
    assert "critique_invalid" in names
    failed = next(d for d in result.decisions if d["name"] == "critique_failed")
    assert failed["action"] == "kept the draft unreviewed"
    assert "not a valid critique" in failed["error"]
    assert result.answer.strip()


def test_the_demo_network_on_the_server_ends_ok_with_a_valid_plan_and_a_critique(
    server_url: str, tmp_path: Path
) -> None:
    # the demo network with its models named for the server, so that --base-url sends their
    # seed: llama.cpp's server samples at temperature 0.8, and a fixed seed makes the run
    # the same each time
    network = tmp_path / "demo.yaml"
    model = {"spec": "openai:smollm2", "seed": 0, "max_tokens": 200}
    network.write_text(yaml.safe_dump(real_demo_config(demo_network_path(), model)))
    ledger = tmp_path / "ledger.db"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rede",
            "run",
            str(network),
            REQUEST,
            "--base-url",
            server_url,
            "--json",
            "--ledger",
            str(ledger),
        ],
        capture_output=True,
        text=True,
        timeout=230,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    record: dict[str, Any] = json.loads(done.stdout)
    assert record["status"] == "ok" and not record["simulated"]
    names = [d["name"] for d in record["decisions"]]
    assert "plan_invalid" not in names and "plan_fallback" not in names
    assert next(d for d in record["decisions"] if d["name"] == "plan")["source"] == "planner"
    reviewed = [s for s in record["steps"] if s["critiques"]]
    assert reviewed, "no critique was recorded"
