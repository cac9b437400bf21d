"""The runs API over real HTTP: start, follow live events and resume them without loss
with ``Last-Event-ID``, cancel, 404s; and the production limits: bearer keys, 429 with
Retry-After at the concurrency limit, a run left to finish when its client goes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from rede import Network
from rede.server import ServerSettings, create_app
from rede.server.live import LiveServer, free_port
from serve_support import DEMO_YAML, Gate, gated_network, sse_events, wait_closed

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def gate() -> Gate:
    return Gate()


@pytest.fixture(scope="module")
def server(gate: Gate) -> Iterator[LiveServer]:
    port = free_port()
    app = create_app([gated_network(gate)], ServerSettings(port=port))
    with LiveServer(app, port=port) as live:
        yield live
        live.call(lambda: gate.open(8))


@pytest.fixture(scope="module")
def strict_gate() -> Gate:
    return Gate()


@pytest.fixture(scope="module")
def strict(strict_gate: Gate) -> Iterator[LiveServer]:
    """Keys required, one run at a time, runs finish when their client leaves."""
    port = free_port()
    settings = ServerSettings(
        port=port, api_keys=[KEY], max_concurrent_runs=1, on_disconnect="finish"
    )
    nets = [gated_network(strict_gate), Network.from_yaml(DEMO_YAML, time_scale=0)]
    with LiveServer(create_app(nets, settings), port=port) as live:
        yield live
        live.call(lambda: strict_gate.open(8))


def _start(base: str, text: str = "a question", **headers: str) -> str:
    r = httpx.post(f"{base}/v1/runs", json={"input": text}, headers=headers)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "running"
    assert r.headers["location"] == f"/v1/runs/{r.json()['id']}"
    return r.json()["id"]  # type: ignore[no-any-return]


def _until(base: str, run_id: str, name: str, **headers: str) -> list[dict]:
    """Events of a run from the start until (and with) the first named ``name``."""
    seen = []
    with httpx.stream("GET", f"{base}/v1/runs/{run_id}/events", headers=headers) as r:
        for ev in sse_events(r):
            if "event" in ev:
                seen.append(ev)
                if ev["event"] == name:
                    return seen
    raise AssertionError(f"no {name} event")


def test_start_returns_at_once_and_events_resume_without_loss(
    server: LiveServer, gate: Gate
) -> None:
    run_id = _start(server.url)
    first = _until(server.url, run_id, "step_started")  # the run now waits at the gate
    assert [int(e["id"]) for e in first] == list(range(1, len(first) + 1))
    assert httpx.get(f"{server.url}/v1/runs/{run_id}").json()["status"] == "running"
    server.call(gate.open)
    # reconnect after the second event: the rest comes, none twice, none missing
    rest = []
    headers = {"Last-Event-ID": "2"}
    with httpx.stream("GET", f"{server.url}/v1/runs/{run_id}/events", headers=headers) as r:
        rest = [ev for ev in sse_events(r) if "event" in ev]
    ids = [int(e["id"]) for e in rest]
    assert ids[0] == 3 and ids == list(range(3, 3 + len(ids)))
    assert rest[-1]["event"] == "run_closed"
    assert rest[-1]["data"]["data"]["status"] == "ok"
    names = [e["event"] for e in first[:2] + rest]
    assert names[0] == "run_started" and "step_finished" in names and "run_finished" in names
    record = httpx.get(f"{server.url}/v1/runs/{run_id}").json()
    assert record["status"] == "ok" and record["answer"] == "the gated answer"
    assert any(d["name"] == "route" for d in record["decisions"])


def test_cancel_stops_a_running_run_and_records_it(server: LiveServer) -> None:
    run_id = _start(server.url)
    _until(server.url, run_id, "step_started")
    cancelled = httpx.post(f"{server.url}/v1/runs/{run_id}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert wait_closed(server.url, run_id)["status"] == "cancelled"
    decisions = httpx.get(f"{server.url}/v1/runs/{run_id}").json()["decisions"]
    assert "run_cancelled" in [d["name"] for d in decisions]


def test_unknown_runs_and_bad_input_get_clear_errors(server: LiveServer) -> None:
    for method, path in (
        ("GET", "/v1/runs/run-nope"),
        ("GET", "/v1/runs/run-nope/events"),
        ("POST", "/v1/runs/run-nope/cancel"),
    ):
        r = httpx.request(method, server.url + path)
        assert r.status_code == 404, path
        assert "run-nope" in r.json()["error"]["message"]
    empty = httpx.post(f"{server.url}/v1/runs", json={"input": ""})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "input"
    other = httpx.post(f"{server.url}/v1/runs", json={"input": "x", "model": "nope"})
    assert other.status_code == 404
    bad_id = httpx.get(f"{server.url}/v1/runs/run-x/events", headers={"Last-Event-ID": "abc"})
    assert bad_id.status_code in (400, 404)


def test_network_view_shows_agents_live(server: LiveServer) -> None:
    nets = httpx.get(f"{server.url}/v1/networks").json()["data"]
    agent = nets[0]["agents"][0]
    assert agent["name"] == "answerer" and agent["healthy"] and agent["replicas"] == 1
    assert nets[0]["capabilities"] == ["answer"]


def test_keys_are_required_when_configured(strict: LiveServer) -> None:
    no_key = httpx.get(f"{strict.url}/v1/models")
    assert no_key.status_code == 401
    assert no_key.headers["www-authenticate"] == "Bearer"
    assert no_key.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=strict.url + "/v1", api_key="wrong", max_retries=0).models.list()
    good = openai.OpenAI(base_url=strict.url + "/v1", api_key=KEY, max_retries=0)
    assert {m.id for m in good.models.list()} == {"gated", "research-team"}
    # the page, the health check and the A2A card stay public
    for path in ("/", "/healthz", "/.well-known/agent-card.json"):
        assert httpx.get(strict.url + path).status_code == 200, path


def test_at_the_limit_a_run_gets_429_with_retry_after_and_a_left_run_finishes(
    strict: LiveServer, strict_gate: Gate
) -> None:
    client = openai.OpenAI(base_url=strict.url + "/v1", api_key=KEY, max_retries=0)
    body = {"model": "gated", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", f"{strict.url}/v1/chat/completions", json=body, headers=AUTH) as r:
        run_id = r.headers["x-rede-run-id"]
        for item in sse_events(r):
            if "step_started" in item.get("comment", ""):
                break  # leave while the run waits at the gate
    with pytest.raises(openai.RateLimitError) as full:
        client.chat.completions.create(
            model="research-team", messages=[{"role": "user", "content": "1+1"}]
        )
    assert full.value.response.headers["retry-after"] == "1"
    assert "limit of 1 runs" in full.value.message
    strict.call(strict_gate.open)
    closed = wait_closed(strict.url, run_id, **AUTH)
    assert closed["status"] == "ok"  # on_disconnect=finish: it ran to the end
    after = client.chat.completions.create(
        model="research-team", messages=[{"role": "user", "content": "2+2"}]
    )
    assert "4" in (after.choices[0].message.content or "")
