"""``rede serve``'s OpenAI-compatible API over real HTTP on loopback, with real clients: the
``openai`` SDK (plain and streamed) and LangChain's ``ChatOpenAI``; bad input of every kind
gets OpenAI's error shape and status, and the server keeps serving."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI

from rede import Network
from rede.server import ServerSettings, create_app
from rede.server.live import LiveServer, free_port
from serve_support import DEMO_YAML, Gate, gated_network, sse_events, wait_closed

DEMO = "research-team"


@pytest.fixture(scope="module")
def gate() -> Gate:
    return Gate()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, gate: Gate) -> Iterator[LiveServer]:
    demo = Network.from_yaml(
        DEMO_YAML, time_scale=0.0, ledger=tmp_path_factory.mktemp("serve") / "ledger.db"
    )
    gated = gated_network(gate)
    gated.ledger = demo.ledger  # one SQLite ledger for both, as `rede serve` does
    port = free_port()
    app = create_app([demo, gated], ServerSettings(port=port))
    with LiveServer(app, port=port) as live:
        yield live
        live.call(lambda: gate.open(8))


@pytest.fixture
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused-on-loopback", max_retries=0)


def test_models_lists_every_served_network(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert ids == {DEMO, "gated"}
    assert client.models.retrieve(DEMO).owned_by == "rede"


def test_chat_completion_answers_with_the_runs_usage_and_id(
    client: openai.OpenAI, server: LiveServer
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=DEMO, messages=[{"role": "user", "content": "Compare cats and dogs as pets"}]
    )
    completion = raw.parse()
    run_id = raw.headers["x-rede-run-id"]
    assert completion.model_extra is not None
    assert completion.model_extra["rede"]["run_id"] == run_id
    assert completion.id == f"chatcmpl-{run_id}"
    answer = completion.choices[0].message.content
    assert answer and completion.choices[0].finish_reason == "stop"
    record = httpx.get(f"{server.url}/v1/runs/{run_id}").json()
    assert record["status"] == "ok" and record["answer"] == answer
    steps = record["run"]["steps"]
    assert completion.usage is not None
    # usage is the sum over every model call of the run
    assert completion.usage.prompt_tokens == sum(s["usage"]["prompt_tokens"] for s in steps)
    assert completion.usage.completion_tokens == sum(s["usage"]["completion_tokens"] for s in steps)
    assert completion.usage.total_tokens == record["usage"]["total_tokens"] > 0
    assert record["usage"]["calls"] >= 5


def test_a_conversation_is_answered_as_a_whole(client: openai.OpenAI, server: LiveServer) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=DEMO,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Name a fruit."},
            {"role": "assistant", "content": "Apple."},
            {"role": "user", "content": [{"type": "text", "text": "Another one?"}]},
        ],
    )
    record = httpx.get(f"{server.url}/v1/runs/{raw.headers['x-rede-run-id']}").json()
    assert record["request"].startswith("Conversation so far:\nSystem: Be brief.")
    assert record["request"].endswith("Answer this: Another one?")
    assert raw.parse().choices[0].message.content == record["answer"]


def test_streamed_completion_in_openai_chunks_with_usage(
    client: openai.OpenAI, server: LiveServer
) -> None:
    with client.chat.completions.with_streaming_response.create(
        model=DEMO,
        messages=[{"role": "user", "content": "Compare trains and planes for a trip"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        run_id = response.headers["x-rede-run-id"]
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[0].choices[0].delta.role == "assistant"
    usage = chunks[-1].usage
    assert not chunks[-1].choices and usage is not None
    record = httpx.get(f"{server.url}/v1/runs/{run_id}").json()
    assert text == record["answer"]
    assert usage.total_tokens == record["usage"]["total_tokens"] > 0


def test_stream_carries_step_progress_as_comments_plain_clients_skip(server: LiveServer) -> None:
    body = {"model": DEMO, "stream": True, "messages": [{"role": "user", "content": "2+3*4"}]}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body) as r:
        items = list(sse_events(r))
    progress = [json.loads(i["comment"].removeprefix("rede ")) for i in items if "comment" in i]
    names = [p["name"] for p in progress]
    assert names[0] == "run_started" and "step_finished" in names
    assert [p["seq"] for p in progress] == list(range(1, len(progress) + 1))
    assert items[-1]["data"] == "[DONE]"


def test_langchain_chat_openai_uses_the_network(server: LiveServer) -> None:
    llm = ChatOpenAI(
        base_url=server.url + "/v1", api_key="unused", model=DEMO, max_retries=0, timeout=60
    )
    reply = llm.invoke("What is 6*7?")
    assert "42" in reply.content
    streamed = "".join(str(c.content) for c in llm.stream("What is 2+2?"))
    assert "4" in streamed


def test_bad_input_gets_openai_errors_and_the_server_keeps_serving(
    client: openai.OpenAI, server: LiveServer
) -> None:
    url = f"{server.url}/v1/chat/completions"
    bad_json = httpx.post(url, content=b'{"model": ', headers={"content-type": "application/json"})
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["code"] == "invalid_json"
    assert bad_json.json()["error"]["type"] == "invalid_request_error"

    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert "'nope' does not exist" in unknown.value.message
    assert unknown.value.code == "model_not_found"

    with pytest.raises(openai.BadRequestError) as no_user:
        client.chat.completions.create(
            model=DEMO, messages=[{"role": "system", "content": "You are terse."}]
        )
    assert no_user.value.code == "no_user_message"

    with pytest.raises(openai.BadRequestError) as no_messages:
        client.chat.completions.create(model=DEMO, messages=[])
    assert "messages" in no_messages.value.message

    huge = httpx.post(
        url, content=b"x" * (10 * 1024 * 1024), headers={"content-type": "application/json"}
    )
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "request_too_large"

    ok = client.chat.completions.create(model=DEMO, messages=[{"role": "user", "content": "9*9"}])
    assert "81" in (ok.choices[0].message.content or "")


def test_a_client_that_disconnects_mid_stream_has_its_run_cancelled_and_recorded(
    server: LiveServer,
) -> None:
    body = {"model": "gated", "stream": True, "messages": [{"role": "user", "content": "wait"}]}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body) as r:
        run_id = r.headers["x-rede-run-id"]
        for item in sse_events(r):
            if "step_started" in item.get("comment", ""):
                break  # the model call is waiting at the gate: leave now
    closed = wait_closed(server.url, run_id)
    assert closed["status"] == "cancelled"
    assert "disconnected" in closed["error"]
    record = httpx.get(f"{server.url}/v1/runs/{run_id}").json()
    assert record["status"] == "cancelled"
    assert "run_cancelled" in [d["name"] for d in record["decisions"]]
    history = httpx.get(f"{server.url}/v1/runs?limit=50").json()["data"]
    assert any(r["id"] == run_id and r["status"] == "cancelled" for r in history)


def test_openapi_document_describes_the_api(server: LiveServer) -> None:
    doc = httpx.get(f"{server.url}/openapi.json").json()
    for path in ("/v1/chat/completions", "/v1/models", "/v1/runs", "/v1/runs/{run_id}/events"):
        assert path in doc["paths"], path


def test_metrics_count_runs_tokens_and_requests(client: openai.OpenAI, server: LiveServer) -> None:
    client.chat.completions.create(model=DEMO, messages=[{"role": "user", "content": "1+1"}])
    text = httpx.get(f"{server.url}/metrics").text
    assert 'rede_runs_total{model="research-team",source="openai",status="ok"}' in text
    assert "rede_tokens_total" in text and "rede_cost_usd_total" in text
    assert 'rede_agent_queue_depth{agent="planner",model="research-team"}' in text
    assert 'rede_http_requests_total{method="POST",route="/v1/chat/completions",status="200"}' in (
        text
    )


def test_history_pages_through_the_ledger(server: LiveServer, client: openai.OpenAI) -> None:
    for question in ("What is 1+1?", "What is 2+2?", "What is 3+3?"):  # at least three runs
        client.chat.completions.create(model=DEMO, messages=[{"role": "user", "content": question}])
    page = httpx.get(f"{server.url}/v1/runs?limit=2").json()
    assert len(page["data"]) == 2 and page["has_more"] is True
    after = httpx.get(f"{server.url}/v1/runs?limit=2&before={page['next_before']}").json()
    assert {r["id"] for r in page["data"]}.isdisjoint(r["id"] for r in after["data"])
