"""The openai backend against a real llama.cpp server: llama-cpp-python serving the shared
tinyllm tool's tiny random-weight model (see ``tests/tinyllm.py``).

Its text is gibberish, but everything else is the real server: its tokenizer's counts, its
SSE streams (with no usage chunk), its grammar-constrained JSON in its own dialect, its
log-probabilities, its forced tool calls and its own errors. Sampling is fixed by ``seed``
and ``temperature: 0``, so each run sees the same replies.

Run with ``pytest -m real_server`` (or ``CI=true`` / ``REDE_REAL_SERVER=1``). The first run
on a machine builds llama-cpp-python (about 5 minutes; not counted in the test timeouts).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest
import yaml

import tinyllm
from rede import Network
from rede.agents.specialists import CRITIQUE_SCHEMA, LLMSpecialist
from rede.cli.app import demo_network_path
from rede.config import LimitsConfig
from rede.errors import ContextLengthExceeded, InvalidModelRequest
from rede.models import ChatMessage, ModelRequest, ToolSpec
from rede.models._structured import DialectMemory
from rede.models.openai import OpenAIModel
from rede.orchestration.dispatcher import Dispatcher
from rede.orchestration.ledger import Ledger
from rede.orchestration.plan import parse_plan
from rede.protocol.messages import Critique, Task

# func_only: the one-time build runs in the fixture, outside the per-test limit
pytestmark = [pytest.mark.real_server, pytest.mark.timeout(120, func_only=True)]

SEED = 0
SYSTEM = "You are terse."


@pytest.fixture(scope="module")
def tiny_url() -> Iterator[str]:
    """A tinyllm server on a free loopback port for this module; built once per machine."""
    port = tinyllm.free_port()
    start = time.perf_counter()
    try:
        url, build_s = tinyllm.serve(port)
    except tinyllm.Unavailable as exc:
        message = f"no real llama.cpp server: {exc}"
        if os.environ.get("CI"):
            pytest.fail(f"{message}\nCI must run the real_server tests", pytrace=False)
        pytest.skip(message)
    print(
        f"\ntinyllm at {url}: build {build_s:.0f} s, ready in {time.perf_counter() - start:.1f} s"
    )
    try:
        yield url
    finally:
        tinyllm.stop(port)


@pytest.fixture
async def tiny(tiny_url: str) -> AsyncIterator[OpenAIModel]:
    model = OpenAIModel("tiny", base_url=tiny_url, seed=SEED, max_retries=1)
    yield model
    await model.aclose()


def tokenize(base_url: str, text: str) -> list[int]:
    """llama-cpp-python's own ``/extras/tokenize``: how the server counts."""
    req = urllib.request.Request(
        base_url.rsplit("/v1", 1)[0] + "/extras/tokenize",
        json.dumps({"input": text}).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        tokens: list[int] = json.load(resp)["tokens"]
    return tokens


def chatml(request: ModelRequest) -> str:
    """The tiny model's chat template applied to a request (what the server tokenizes)."""
    turns = "".join(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in request.messages)
    return turns + "<|im_start|>assistant\n"


HELLO = ModelRequest.of("Say hello.", system=SYSTEM, max_tokens=24, temperature=0)


# --------------------------------------------------------------------------- plain and streamed


async def test_plain_call_usage_is_the_servers_own_count(tiny: OpenAIModel, tiny_url: str) -> None:
    response = await tiny.complete(HELLO)

    assert isinstance(response.text, str)
    assert response.finish_reason in ("stop", "length")
    usage = response.usage
    assert not usage.estimated and usage.source == "real"
    assert usage.prompt_tokens == len(tokenize(tiny_url, chatml(HELLO)))
    assert 0 < usage.completion_tokens <= 24
    assert response.structured is None


async def test_stream_matches_the_plain_call_and_estimates_missing_usage(
    tiny: OpenAIModel,
) -> None:
    whole = await tiny.complete(HELLO)
    chunks = [chunk async for chunk in tiny.stream(HELLO)]

    deltas = "".join(c.delta for c in chunks)
    last = chunks[-1].response
    assert last is not None
    assert deltas == last.text == whole.text
    # llama-cpp-python sends no usage chunk even when asked (stream_options.include_usage):
    # the counts are estimated, and say so
    assert last.usage.estimated
    assert last.usage.completion_tokens > 0


# --------------------------------------------------------------------------- structured output


async def test_dialect_is_detected_once_and_remembered(tiny_url: str) -> None:
    memory = DialectMemory()
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    sent: list[httpx2.Request] = []
    async with (
        counting_client(sent) as http,
        _model(tiny_url, dialects=memory, max_retries=3, http_client=http) as model,
    ):
        first = await model.complete(ModelRequest.of("Answer.", json_schema=schema, max_tokens=20))
        second = await model.complete(ModelRequest.of("Again.", json_schema=schema, max_tokens=20))

    # the refused form cost one request (its HTTP 500 not retried), then one request a call
    assert [json.loads(r.content)["response_format"]["type"] for r in sent] == [
        "json_schema",
        "json_object",
        "json_object",
    ]
    assert first.structured == second.structured == "json_object_schema"
    assert isinstance(json.loads(first.text)["ok"], bool)
    summary = memory.summary(tiny_url)
    assert summary["dialect"] == "json_object_schema"
    assert list(summary["rejected"]) == ["json_schema"]
    assert "HTTP 500" in summary["rejected"]["json_schema"]


def plan_task() -> Task:
    request = "Compare Redis Streams and Kafka for a small team"
    return Task(
        capability="plan",
        instruction="Decompose the request into a plan.",
        request=request,
        metadata=Dispatcher(LimitsConfig()).planner_metadata(
            request, {"research", "synthesise", "write", "critique"}
        ),
    )


async def test_plan_is_schema_valid_on_the_first_call(tiny: OpenAIModel) -> None:
    result = await LLMSpecialist(tiny).handle(plan_task(), ctx=None)  # type: ignore[arg-type]

    assert result.data == {"confidence_method": "none", "structured": "json_object_schema"}
    # valid by construction: parsed and fully validated (ids, dependencies, acyclic) at once
    plan = parse_plan(result.output, {"research", "synthesise", "write"}, max_steps=12)
    assert [s.id for s in plan.steps] == [f"s{i}" for i in range(1, len(plan.steps) + 1)]


async def test_critique_is_valid_on_the_first_call(tiny: OpenAIModel) -> None:
    task = Task(
        capability="critique",
        instruction="Review the output of step 'draft'.",
        request="Compare Redis Streams and Kafka for a small team",
    )
    critique = await LLMSpecialist(tiny).handle(task, ctx=None)  # type: ignore[arg-type]

    assert isinstance(critique, Critique)
    assert 0 <= critique.score <= 1 and critique.data == {"structured": "json_object_schema"}
    assert set(json.loads(json.dumps(CRITIQUE_SCHEMA))["required"]) <= set(critique.model_dump())


# --------------------------------------------------------------------------- logprobs, tools


async def test_logprobs_become_the_confidence(tiny: OpenAIModel) -> None:
    task = Task(capability="research", instruction="Say hello.", request="Say hello.")
    result = await LLMSpecialist(tiny, confidence="logprobs").handle(task, ctx=None)  # type: ignore[arg-type]

    assert result.data is not None and result.data["confidence_method"] == "logprobs"
    assert 0 < result.confidence <= 1
    response = await tiny.complete(HELLO.model_copy(update={"logprobs": True}))
    assert response.logprobs and len(response.logprobs) == response.usage.completion_tokens
    assert all(lp <= 0 for lp in response.logprobs)


async def test_a_named_tool_choice_is_a_call_with_valid_arguments(tiny: OpenAIModel) -> None:
    weather = ToolSpec(
        name="get_weather",
        description="weather for a city",
        parameters={
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 40}},
            "required": ["city"],
        },
    )
    request = ModelRequest.of(
        "Weather in Lisbon?", tools=[weather], tool_choice="get_weather", max_tokens=200
    )

    response = await tiny.complete(request)

    assert [c.name for c in response.tool_calls] == ["get_weather"]
    assert "city" in json.loads(response.tool_calls[0].arguments)


# --------------------------------------------------------------------------- the server's errors


async def test_context_overflow_is_a_context_length_error(tiny: OpenAIModel) -> None:
    with pytest.raises(ContextLengthExceeded, match=r"HTTP 400.*context window"):
        await tiny.complete(ModelRequest.of("hello " * 3000, max_tokens=4))


async def test_a_request_the_server_cannot_parse_is_not_retried(tiny_url: str) -> None:
    # llama-cpp-python answers its own request validation errors with HTTP 500. Rede's
    # models cannot build such a request, so this one skips their validation (a role the
    # server does not know), as a client with a bug would send it.
    bad = ChatMessage.model_construct(role="nobody", content="x")
    request = ModelRequest.model_construct(**{**HELLO.__dict__, "messages": [bad]})
    sent: list[httpx2.Request] = []
    async with (
        counting_client(sent) as http,
        _model(tiny_url, max_retries=3, http_client=http) as model,
    ):
        with pytest.raises(InvalidModelRequest, match=r"HTTP 500.*cannot parse"):
            await model.complete(request)
    assert len(sent) == 1  # not retried


# --------------------------------------------------------------------------- a whole run


async def test_the_demo_network_runs_with_plan_and_critiques_valid_first_time(
    tiny_url: str,
) -> None:
    conf: dict[str, Any] = yaml.safe_load(demo_network_path().read_text())
    for name in conf["models"]:
        conf["models"][name] = {"spec": "openai:tiny", "base_url": tiny_url, "seed": SEED}
    # the bundled plan prompt, not the demo's two worked plans (for SmolLM2, see
    # test_smollm.py): random weights copy nothing, and after those 1,600 characters a
    # six-step plan no longer fits the tiny server's 2,048-token byte-level context
    for agent in conf["agents"]:
        agent.pop("prompts", None)
    ledger = Ledger()
    async with Network.from_dict(conf, ledger=ledger) as net:
        result = await net.ask("Compare Redis Streams and Kafka for a small team")

    assert result.status == "ok", result.error
    assert result.usage.source == "real" and result.usage.calls > 0
    decisions = {d["name"]: d for d in result.decisions}
    assert "plan_fallback" not in decisions
    plan = decisions["plan"]
    assert plan["structured"] == "json_object_schema"
    # every reply the planner wrote matched the schema; only checks a schema cannot express
    # (dependency ids, reserved ids, cycles) may have sent one back for repair
    for invalid in (d for d in result.decisions if d["name"] == "plan_invalid"):
        assert "does not match the plan schema" not in invalid["error"], invalid
        assert "not a JSON plan" not in invalid["error"], invalid
    # the run is reviewed by the critic as with the sim, and every critique was valid
    critiques = [
        e.data["payload"] for e in ledger.entries(result.run_id) if e.name == "received:critique"
    ]
    assert critiques, "no step was reviewed"
    assert all(c["data"] == {"structured": "json_object_schema"} for c in critiques)
    assert not [e for e in ledger.entries(result.run_id) if "critique" in str(e.data.get("error"))]


def counting_client(sent: list[httpx2.Request]) -> httpx2.AsyncClient:
    """An HTTP client for a model that notes every request it sends, retries included."""

    async def note(request: httpx2.Request) -> None:
        sent.append(request)

    return httpx2.AsyncClient(event_hooks={"request": [note]})


def _model(url: str, **kw: Any) -> _Closing:
    return _Closing(OpenAIModel("tiny", base_url=url, seed=SEED, **kw))


class _Closing:
    def __init__(self, model: OpenAIModel) -> None:
        self.model = model

    async def __aenter__(self) -> OpenAIModel:
        return self.model

    async def __aexit__(self, *exc: object) -> None:
        await self.model.aclose()
