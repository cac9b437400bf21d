"""The OpenAI-compatible backend against a real HTTP server on loopback.

Every test talks HTTP to :class:`rede.testing.openai_server.FakeOpenAIServer`, except one
that swaps in an ``httpx`` ``MockTransport`` through ``http_client``; nothing is mocked. The
``openai`` client does the retrying, with its own backoff (0.5 s, doubling), so the tests
that retry keep to one or two retries."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2
import pytest

from rede.errors import (
    ConfigError,
    ContextLengthExceeded,
    InvalidModelRequest,
    ModelError,
    ModelResponseError,
    ModelUnavailable,
)
from rede.models import (
    ModelRequest,
    Price,
    StreamChunk,
    ToolSpec,
    estimate_tokens,
    model_from_spec,
)
from rede.models._structured import DialectMemory, is_strict
from rede.models.openai import DEFAULT_BASE_URL, OpenAIModel
from rede.network import Network
from rede.testing.openai_server import (
    LLAMA_CPP_DIALECTS,
    FakeOpenAIServer,
    count_tokens,
    default_responder,
    dialect_of,
    error_body,
    piece_logprob,
    split_pieces,
)

MakeModel = Callable[..., OpenAIModel]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
async def make_model(server: FakeOpenAIServer) -> AsyncIterator[MakeModel]:
    made: list[OpenAIModel] = []

    def make(name: str = "rede-fake", **kw: Any) -> OpenAIModel:
        kw.setdefault("base_url", server.base_url)
        kw.setdefault("api_key", "test-key")
        model = OpenAIModel(name, **kw)
        made.append(model)
        return model

    yield make
    for model in made:
        await model.aclose()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def post_json(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.load(resp)


async def collect(model: OpenAIModel, request: ModelRequest) -> list[StreamChunk]:
    return [chunk async for chunk in model.stream(request)]


# --------------------------------------------------------------------------- completions


async def test_complete_returns_text_usage_and_cost(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.responder = lambda request: "Paris is the capital of France."
    price = Price(input_per_1k=1.0, output_per_1k=2.0)
    model = make_model(price=price)
    request = ModelRequest.of("What is the capital of France?", system="Answer briefly.")

    response = await model.complete(request)

    assert response.text == "Paris is the capital of France."
    assert response.finish_reason == "stop"
    prompt = count_tokens("Answer briefly.") + count_tokens("What is the capital of France?")
    completion = count_tokens(response.text)
    usage = response.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (prompt, completion)
    assert usage.cost_usd == pytest.approx(price.cost(prompt, completion))
    assert usage.estimated is False
    assert (usage.source, usage.model, usage.calls) == ("real", "rede-fake", 1)
    assert usage.latency_s > 0
    body = server.requests[-1].body
    assert body["model"] == "rede-fake"
    assert body["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    assert "response_format" not in body


async def test_default_responder_is_deterministic(make_model: MakeModel) -> None:
    model = make_model()
    first = await model.complete(ModelRequest.of("tell me about rivers"))
    second = await model.complete(ModelRequest.of("tell me about rivers"))
    other = await model.complete(ModelRequest.of("tell me about mountains"))
    assert first.text == second.text != other.text
    assert "rivers" in first.text


async def test_sampling_options_are_sent_and_logprobs_returned(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.responder = lambda request: "alpha beta gamma STOP delta"
    model = make_model()
    request = ModelRequest.of("go", temperature=0.3, max_tokens=50, stop=["STOP"], logprobs=True)

    response = await model.complete(request)

    body = server.requests[-1].body
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 50
    assert body["stop"] == ["STOP"]
    assert body["logprobs"] is True
    assert response.text == "alpha beta gamma "
    assert response.logprobs == [piece_logprob(p) for p in split_pieces(response.text)]


async def test_max_tokens_truncates_with_finish_reason_length(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.responder = lambda request: "word " * 100
    response = await make_model().complete(ModelRequest.of("go", max_tokens=3))
    assert response.finish_reason == "length"
    assert response.usage.completion_tokens == 3


async def test_concurrent_calls_are_all_answered(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.latency_s = 0.02
    model = make_model()
    prompts = [f"question {i}" for i in range(8)]
    responses = await asyncio.gather(*(model.complete(ModelRequest.of(p)) for p in prompts))
    for prompt, response in zip(prompts, responses, strict=True):
        assert response.text == default_responder(
            {"messages": [{"role": "user", "content": prompt}]}
        )
    assert server.stats()["total"]["completions"] == 8


# --------------------------------------------------------------------------- streaming


async def test_stream_deltas_concatenate_to_the_text_with_final_usage(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.responder = lambda request: "one two three four five"
    model = make_model(price=Price(input_per_1k=1.0, output_per_1k=1.0))
    request = ModelRequest.of("count to five", logprobs=True)

    chunks = await collect(model, request)

    *deltas, last = chunks
    assert len(deltas) == 5
    assert all(c.response is None and c.delta for c in deltas)
    assert last.response is not None and last.delta == ""
    response = last.response
    assert "".join(c.delta for c in deltas) == response.text == "one two three four five"
    assert response.finish_reason == "stop"
    assert response.usage.estimated is False
    assert response.usage.prompt_tokens == count_tokens("count to five")
    assert response.usage.completion_tokens == count_tokens(response.text)
    assert response.usage.cost_usd > 0
    assert response.logprobs == [piece_logprob(p) for p in split_pieces(response.text)]
    body = server.requests[-1].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


# --------------------------------------------------------------------------- structured output

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "minLength": 2}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


async def test_structured_auto_asks_for_the_schema_in_openais_form_first(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    response = await make_model().complete(ModelRequest.of("who?", json_schema=PERSON))

    fmt = server.requests[-1].body["response_format"]
    assert fmt == {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": PERSON, "strict": True},
    }
    assert response.structured == "json_schema"
    assert json.loads(response.text) == {"name": "example", "age": 0}


async def test_llama_cpp_refusal_falls_back_to_its_schema_form_once_per_server(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.dialects = LLAMA_CPP_DIALECTS  # json_schema -> HTTP 500, as llama-cpp-python does
    server.refusal_status = 500
    memory = DialectMemory()
    first, second = make_model(dialects=memory), make_model(dialects=memory)
    request = ModelRequest.of("who?", json_schema=PERSON)

    a = await first.complete(request)
    b = await second.complete(request)
    streamed = [c async for c in second.stream(request)][-1].response

    sent = [dialect_of(r.body) for r in server.requests]
    # one refused request, not retried as a 5xx would be; then the remembered form only
    assert sent == ["json_schema", "json_object_schema", "json_object_schema", "json_object_schema"]
    assert server.requests[1].body["response_format"] == {"type": "json_object", "schema": PERSON}
    assert a.structured == b.structured == "json_object_schema"
    assert streamed is not None and streamed.structured == "json_object_schema"
    assert json.loads(b.text) == {"name": "example", "age": 0}
    assert memory.summary(server.base_url)["dialect"] == "json_object_schema"
    assert "HTTP 500" in memory.summary(server.base_url)["rejected"]["json_schema"]


async def test_concurrent_first_calls_detect_the_dialect_once(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.dialects = LLAMA_CPP_DIALECTS
    model = make_model()
    request = ModelRequest.of("who?", json_schema=PERSON)

    await asyncio.gather(*(model.complete(request) for _ in range(5)))

    sent = [dialect_of(r.body) for r in server.requests]
    assert sent.count("json_schema") == 1
    assert sent.count("json_object_schema") == 5


async def test_a_server_without_any_json_mode_ends_with_none_and_remembers(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.json_mode = False  # the server answers 400 to any response_format
    model = make_model()
    request = ModelRequest.of("plan this", json_schema={"type": "object"})

    first = await model.complete(request)
    again = await model.complete(request)

    sent = [dialect_of(r.body) for r in server.requests]
    assert sent == ["json_schema", "json_object_schema", "json_object", None, None]
    assert first.structured == again.structured == "none"
    assert first.text


async def test_an_unrelated_failure_during_detection_marks_nothing_refused(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.dialects = LLAMA_CPP_DIALECTS
    server.fail_next(count=1, status=400, body=error_body("the model 'x' is not loaded", 400))
    memory = DialectMemory()
    model = make_model(dialects=memory)
    request = ModelRequest.of("who?", json_schema=PERSON)

    with pytest.raises(InvalidModelRequest, match="not loaded"):
        await model.complete(request)
    assert memory.summary(server.base_url) == {"dialect": None, "rejected": {}}

    response = await model.complete(request)  # detection starts afresh
    assert response.structured == "json_object_schema"


@pytest.mark.parametrize(
    ("structured", "expected"),
    [
        ("json_schema", {"response_format": {"type": "json_schema"}}),
        ("json_object_schema", {"response_format": {"type": "json_object", "schema": PERSON}}),
        ("json_object", {"response_format": {"type": "json_object"}}),
        ("ollama_format", {"format": PERSON}),
        ("none", {}),
    ],
)
async def test_each_fixed_dialect_sends_its_own_field(
    server: FakeOpenAIServer, make_model: MakeModel, structured: str, expected: dict[str, Any]
) -> None:
    response = await make_model(structured=structured).complete(
        ModelRequest.of("who?", json_schema=PERSON)
    )
    body = server.requests[-1].body
    sent = {k: body[k] for k in ("response_format", "format") if k in body}
    if structured == "json_schema":
        assert sent["response_format"]["type"] == "json_schema"
        assert sent["response_format"]["json_schema"]["schema"] == PERSON
    else:
        assert sent == expected
    assert response.structured == structured
    if structured in ("json_schema", "json_object_schema", "ollama_format"):
        assert json.loads(response.text) == {"name": "example", "age": 0}


async def test_json_mode_switch_still_works(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    request = ModelRequest.of("plan this", json_schema={"type": "object"})
    await make_model(json_mode=True).complete(request)
    assert server.requests[-1].body["response_format"] == {"type": "json_object"}
    await make_model(json_mode=False).complete(request)
    assert "response_format" not in server.requests[-1].body
    with pytest.raises(ConfigError, match="not both"):
        make_model(json_mode=True, structured="json_object")
    with pytest.raises(ConfigError, match="unknown structured output mode 'grammar'"):
        make_model(structured="grammar")


async def test_a_fixed_dialect_the_server_refuses_is_a_clear_error_not_retried(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.dialects = LLAMA_CPP_DIALECTS
    server.refusal_status = 500
    model = make_model(structured="json_schema")
    with pytest.raises(InvalidModelRequest, match=r"HTTP 500.*structured output as 'json_schema'"):
        await model.complete(ModelRequest.of("plan", json_schema=PERSON))
    assert server.stats()["total"]["requests"] == 1


async def test_requests_without_a_schema_send_no_structured_field(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    response = await make_model(structured="json_schema").complete(ModelRequest.of("hello"))
    assert "response_format" not in server.requests[-1].body
    assert response.structured is None


async def test_seed_is_sent_when_set(server: FakeOpenAIServer, make_model: MakeModel) -> None:
    await make_model(seed=0).complete(ModelRequest.of("hello"))
    assert server.requests[-1].body["seed"] == 0
    await make_model().complete(ModelRequest.of("hello"))
    assert "seed" not in server.requests[-1].body


def test_strictness_follows_openais_rules() -> None:
    assert is_strict(PERSON)
    assert not is_strict({"type": "object", "properties": {"a": {}}, "required": []})
    nested = {**PERSON, "properties": {**PERSON["properties"], "tags": {"type": "object"}}}
    assert not is_strict({**nested, "required": ["name", "age", "tags"]})


async def test_a_named_tool_choice_returns_the_call(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    weather = ToolSpec(
        name="get_weather",
        description="weather for a city",
        parameters={
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    )
    request = ModelRequest.of("Weather in Lisbon?", tools=[weather], tool_choice="get_weather")

    response = await make_model().complete(request)

    body = server.requests[-1].body
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert [c.name for c in response.tool_calls] == ["get_weather"]
    assert json.loads(response.tool_calls[0].arguments) == {"city": "example"}
    assert response.finish_reason == "tool_calls" and response.text == ""
    with pytest.raises(ConfigError, match="names no tool"):
        await make_model().complete(ModelRequest.of("x", tools=[weather], tool_choice="nope"))


# --------------------------------------------------------------------------- server errors


async def test_context_overflow_is_a_context_length_error(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.fail_next(
        400,
        body=error_body("Requested tokens (3002) exceed context window of 2048", 400),
    )
    with pytest.raises(ContextLengthExceeded, match=r"context window.*--n_ctx"):
        await make_model().complete(ModelRequest.of("hello " * 3000))
    assert server.stats()["total"]["requests"] == 1


async def test_a_500_that_calls_the_request_invalid_is_not_retried(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.fail_next(500, count=5, body=error_body("1 validation error for Request", 500))
    with pytest.raises(InvalidModelRequest, match=r"HTTP 500.*cannot parse.*validation error"):
        await make_model().complete(ModelRequest.of("hello"))
    assert server.stats()["total"]["requests"] == 1


# --------------------------------------------------------------------------- retries


async def test_429_then_success_is_retried(server: FakeOpenAIServer, make_model: MakeModel) -> None:
    server.fail_next(429)
    response = await make_model().complete(ModelRequest.of("hello"))
    assert response.text
    total = server.stats()["total"]
    assert (total["requests"], total["errors"], total["completions"]) == (2, 1, 1)


async def test_retry_after_replaces_the_backoff(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.fail_next(429, retry_after=0.001)
    model = make_model()
    start = time.perf_counter()
    response = await model.complete(ModelRequest.of("hello"))
    assert response.text
    assert server.stats()["total"]["requests"] == 2
    assert time.perf_counter() - start < 0.3  # the client's own first wait is 0.375-0.5 s


async def test_dropped_connection_is_retried(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.drop_next(2)
    response = await make_model().complete(ModelRequest.of("hello"))
    assert response.text
    assert server.stats()["total"]["requests"] == 3


async def test_streams_are_retried_before_the_first_byte(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.fail_next(503)
    chunks = await collect(make_model(), ModelRequest.of("hello"))
    assert chunks[-1].response is not None and chunks[-1].response.text
    assert server.stats()["total"]["requests"] == 2


async def test_5xx_beyond_max_retries_is_unavailable(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.fail_next(500, count=3)
    model = make_model(max_retries=2)

    with pytest.raises(ModelUnavailable) as info:
        await model.complete(ModelRequest.of("hello"))

    message = str(info.value)
    assert model.url in message
    assert "'rede-fake'" in message
    assert "HTTP 500" in message
    assert "3 attempt" in message
    assert server.stats()["total"]["requests"] == 3
    # Exactly three failures were spent: the next call succeeds at once.
    assert (await model.complete(ModelRequest.of("hello"))).text


async def test_connection_refused_is_unavailable(make_model: MakeModel) -> None:
    with FakeOpenAIServer() as gone:
        url = gone.base_url
    model = make_model(base_url=url, max_retries=1)
    with pytest.raises(ModelUnavailable, match=r"2 attempt.*connection failed"):
        await model.complete(ModelRequest.of("hello"))


async def test_timeout_is_unavailable(server: FakeOpenAIServer, make_model: MakeModel) -> None:
    server.latency_s = 5.0
    model = make_model(timeout_s=0.05, max_retries=0)
    with pytest.raises(ModelUnavailable, match="timeout"):
        await model.complete(ModelRequest.of("hello"))


async def test_other_4xx_is_a_model_error_with_the_servers_message(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.fail_next(401, body={"error": {"message": "Incorrect API key provided"}})
    with pytest.raises(ModelError, match="HTTP 401: Incorrect API key provided") as info:
        await make_model().complete(ModelRequest.of("hello"))
    assert not isinstance(info.value, ModelUnavailable)
    assert server.stats()["total"]["requests"] == 1


async def test_a_server_that_keeps_failing_costs_max_retries_plus_one_attempts(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.fail_next(429, count=10, retry_after=0.001)
    model = make_model(max_retries=3)
    with pytest.raises(ModelUnavailable, match=r"after 4 attempt\(s\): HTTP 429"):
        await model.complete(ModelRequest.of("hello"))
    assert server.stats()["total"]["requests"] == 4


async def test_an_injected_http_client_carries_the_requests() -> None:
    sent: list[dict[str, Any]] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        sent.append(json.loads(request.content))
        reply = {"id": "x", "object": "chat.completion", "created": 0, "model": "m"}
        message = {"role": "assistant", "content": '{"name": "Ada", "age": 36}'}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return httpx2.Response(200, json={**reply, "choices": [choice]})

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handle))
    model = OpenAIModel("m", base_url="http://127.0.0.1:1/v1", http_client=http)
    response = await model.complete(ModelRequest.of("who?", json_schema=PERSON))
    await model.aclose()

    assert not http.is_closed  # the client belongs to whoever made it
    await http.aclose()
    assert sent[0]["response_format"]["type"] == "json_schema"
    assert sent[0]["response_format"]["json_schema"]["schema"] == PERSON
    assert json.loads(response.text) == {"name": "Ada", "age": 36}
    assert response.usage.estimated is True  # the body had no usage
    assert response.structured == "json_schema"


async def test_a_5xx_validation_error_through_an_injected_client_is_not_retried() -> None:
    calls = 0

    def handle(request: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        return httpx2.Response(500, json=error_body("1 validation error for Request", 500))

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handle)) as http:
        model = OpenAIModel("m", base_url="http://127.0.0.1:1/v1", http_client=http)
        with pytest.raises(InvalidModelRequest, match="cannot parse"):
            await model.complete(ModelRequest.of("hello"))
    assert calls == 1


# --------------------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        (None, "no 'choices'"),
        ("this is not json", "the body is not JSON"),
        ({"choices": []}, "no 'choices'"),
        ({"choices": [{"index": 0}]}, "'choices[0]' has no 'message'"),
        (
            {"choices": [{"message": {"role": "assistant"}}]},
            "'choices[0].message' has no 'content'",
        ),
    ],
)
async def test_malformed_completion_is_a_response_error(
    server: FakeOpenAIServer, make_model: MakeModel, body: Any, missing: str
) -> None:
    server.malform_next(body=body)
    model = make_model()
    with pytest.raises(ModelResponseError) as info:
        await model.complete(ModelRequest.of("hello"))
    assert missing in str(info.value)
    assert model.url in str(info.value)
    assert server.stats()["total"]["requests"] == 1  # not retried


async def test_malformed_stream_is_a_response_error(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.malform_next()
    with pytest.raises(ModelResponseError, match=r"no 'choices'.*nonsense"):
        await collect(make_model(), ModelRequest.of("hello"))


class _BrokenStream(httpx2.AsyncByteStream):
    """One event, then the connection resets."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'data: {"choices": [{"index": 0, "delta": {"content": "a"}}]}\n\n'
        raise httpx2.ReadError("connection reset")


@pytest.mark.parametrize(
    ("stream", "error", "words"),
    [
        (
            httpx2.ByteStream(b'data: {"error": {"message": "out of memory"}}\n\n'),
            ModelError,
            "sent an error mid-stream: out of memory",
        ),
        (_BrokenStream(), ModelUnavailable, r"stream from .* broke: ReadError"),
    ],
)
async def test_a_stream_that_fails_midway_is_an_error_in_redes_terms(
    stream: httpx2.AsyncByteStream, error: type[Exception], words: str
) -> None:
    def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, stream=stream, headers={"content-type": "text/event-stream"})

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handle)) as http:
        model = OpenAIModel("m", base_url="http://127.0.0.1:1/v1", http_client=http)
        with pytest.raises(error, match=words):
            await collect(model, ModelRequest.of("hello"))


async def test_a_stream_that_drips_past_its_deadline_fails_naming_it(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    """Each chunk comes well within ``timeout_s`` (the HTTP client's timeout is per read),
    but the whole answer would take far longer: it is cut off at ``timeout_s``."""
    server.responder = lambda request: " ".join(["word"] * 200)
    server.chunk_interval_s = 0.05  # 200 chunks: 10 s in all
    model = make_model(timeout_s=0.5, max_retries=0)
    got: list[StreamChunk] = []
    with pytest.raises(ModelUnavailable, match=r"still coming 0\.5 s after.*total_timeout_s"):
        async for chunk in model.stream(ModelRequest.of("talk")):
            got.append(chunk)
    assert 0 < len(got) < 200, "chunks came, then the stream was cut off"
    assert all(c.response is None for c in got)


async def test_total_timeout_s_lets_a_long_stream_finish(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.responder = lambda request: "one two three four five six"
    server.chunk_interval_s = 0.1  # each read well within timeout_s, the whole past it
    model = make_model(timeout_s=0.3, total_timeout_s=30, max_retries=0)
    chunks = await collect(model, ModelRequest.of("count"))
    assert chunks[-1].response is not None
    assert chunks[-1].response.text == "one two three four five six"


def test_network_yaml_sets_a_models_total_timeout(server: FakeOpenAIServer) -> None:
    net = Network.from_dict(
        {
            "models": {
                "m": {"spec": "openai:m", "base_url": server.base_url, "total_timeout_s": 90}
            },
            "agents": [{"name": "a", "capabilities": ["write"], "model": "m"}],
        }
    )
    model = net.model("m")
    assert isinstance(model, OpenAIModel) and model.total_timeout_s == 90


# --------------------------------------------------------------------------- usage


async def test_missing_usage_is_estimated(server: FakeOpenAIServer, make_model: MakeModel) -> None:
    server.include_usage = False
    model = make_model()
    request = ModelRequest.of("a question of some length", system="be useful")

    response = await model.complete(request)
    streamed = (await collect(model, request))[-1].response

    assert response.usage.estimated is True
    assert response.usage.prompt_tokens == estimate_tokens(request.prompt_text)
    assert response.usage.completion_tokens == estimate_tokens(response.text)
    assert streamed is not None and streamed.usage.estimated is True
    assert streamed.text == response.text


async def test_counters_are_kept_per_api_key(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    alpha = make_model(api_key="alpha")
    beta = make_model(api_key="beta")
    await alpha.complete(ModelRequest.of("one"))
    await alpha.complete(ModelRequest.of("two"))
    reply = await beta.complete(ModelRequest.of("three"))

    stats = server.stats()
    clients = stats["clients"]
    assert set(clients) == {"alpha", "beta"}
    assert (clients["alpha"]["requests"], clients["beta"]["requests"]) == (2, 1)
    assert clients["beta"]["prompt_tokens"] == reply.usage.prompt_tokens
    assert clients["beta"]["completion_tokens"] == reply.usage.completion_tokens
    for counter in ("requests", "prompt_tokens", "completion_tokens", "total_tokens"):
        assert stats["total"][counter] == clients["alpha"][counter] + clients["beta"][counter]

    root = server.base_url.removesuffix("/v1")
    assert await asyncio.to_thread(get_json, f"{root}/stats") == stats
    await asyncio.to_thread(post_json, f"{root}/stats/reset", {})
    assert server.stats()["clients"] == {}
    assert server.stats()["total"]["requests"] == 0


async def test_faults_can_be_injected_over_http(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    root = server.base_url.removesuffix("/v1")
    await asyncio.to_thread(post_json, f"{root}/faults", {"status": 503, "count": 1})
    with pytest.raises(ModelUnavailable, match="HTTP 503"):
        await make_model(max_retries=0).complete(ModelRequest.of("hello"))


async def test_models_endpoint_lists_the_model(server: FakeOpenAIServer) -> None:
    listing = await asyncio.to_thread(get_json, f"{server.base_url}/models")
    assert [m["id"] for m in listing["data"]] == ["rede-fake"]


# --------------------------------------------------------------------------- configuration


def test_loopback_guard_refuses_a_remote_url() -> None:
    with pytest.raises(ConfigError, match=r"https://api\.example\.com/v1.*not loopback"):
        OpenAIModel("gpt", base_url="https://api.example.com/v1")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/v1", "http://localhost:11434/v1", "http://[::1]:8000/v1"]
)
def test_loopback_guard_allows_loopback(url: str) -> None:
    assert OpenAIModel("m", base_url=url).base_url == url


def test_remote_urls_are_allowed_without_the_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDE_LOOPBACK_ONLY")
    assert OpenAIModel("gpt", base_url="https://api.example.com/v1").base_url


def test_base_url_defaults_to_env_then_ollama(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert OpenAIModel("m").base_url == DEFAULT_BASE_URL
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9999/v1/")
    assert OpenAIModel("m").base_url == "http://127.0.0.1:9999/v1"


async def test_api_key_defaults_to_env(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    model = OpenAIModel("m", base_url=server.base_url)
    try:
        await model.complete(ModelRequest.of("hi"))
    finally:
        await model.aclose()
    assert server.requests[-1].api_key == "from-env"


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"base_url": "ftp://127.0.0.1/v1"}, "not an http"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"total_timeout_s": -1}, "total_timeout_s"),
        ({"max_retries": -1}, "max_retries"),
    ],
)
def test_invalid_options_are_config_errors(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        OpenAIModel("m", **options)


def test_model_from_spec_builds_an_openai_model(server: FakeOpenAIServer) -> None:
    model = model_from_spec("openai:llama3.1:8b", base_url=server.base_url)
    assert isinstance(model, OpenAIModel)
    assert (model.name, model.source) == ("llama3.1:8b", "real")


def test_server_runs_as_a_command() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rede.testing.openai_server", "--port", "0", "--latency-ms", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        assert get_json(f"{base_url}/models")["data"][0]["id"] == "rede-fake"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
