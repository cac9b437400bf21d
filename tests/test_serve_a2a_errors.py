"""Every bad input at ``rede serve``'s edge is answered by the protocol's own error, over real
HTTP: JSON-RPC -32700 / -32600 / -32602 on the A2A endpoint with no exception text, one 413
for an oversized body on every route and transfer encoding, and failed authentications
limited per client (429 with Retry-After) and counted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.helpers import get_artifact_text, new_text_message
from a2a.types import Role, SendMessageRequest

from rede.protocol.topics import Topic
from rede.server import ServerSettings, create_app
from rede.server.http import FailureLimit
from rede.server.jsonrpc import nesting_depth
from rede.server.live import LiveServer, free_port
from serve_support import Gate, gated_network

KEY = "sekret-key"
GATE = Gate()
LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    port = free_port()
    settings = ServerSettings(
        port=port, api_keys=[KEY], max_body_bytes=LIMIT, auth_max_failures=3, auth_window_s=600
    )
    with LiveServer(create_app([gated_network(GATE)], settings), port=port) as live:
        yield live


@pytest.fixture
async def http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {KEY}"}
    headers["A2A-Version"] = "1.0"
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
        yield client


def rpc(method: str = "GetTask", params: object = None, rid: object = 7) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}}
    ).encode()


async def rpc_error(http: httpx.AsyncClient, body: bytes) -> dict[str, object]:
    response = await http.post(
        "/a2a/gated", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, "JSON-RPC errors travel as HTTP 200"
    doc = response.json()
    assert doc["jsonrpc"] == "2.0" and "result" not in doc
    error: dict[str, object] = doc["error"]
    if error["code"] in (-32700, -32600, -32602, -32603):
        assert "data" not in error, "no exception text in a standard error"
    return {"id": doc["id"], **error}


LEAKS = ("recursion", "codec", "Traceback", "Error:", "exception", "line ", "column")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "deeper than 64"),
        (
            b'{"jsonrpc": "2.0", "method": "GetTask", "id": 1, "params": {"id": "\xff\xfe"}}',
            "UTF-8",
        ),
        (b'{"jsonrpc": "2.0", "method": ', "not valid JSON"),
        (b"", "not valid JSON"),
    ],
    ids=["100k-deep", "invalid-utf8", "truncated", "empty"],
)
async def test_unparseable_bodies_are_parse_errors_without_internal_text(
    http: httpx.AsyncClient, body: bytes, why: str
) -> None:
    error = await rpc_error(http, body)
    assert error["code"] == -32700 and error["id"] is None
    message = str(error["message"])
    assert message.startswith("Parse error") and why in message
    assert not any(leak in message for leak in LEAKS), message


@pytest.mark.parametrize(
    ("body", "rid", "why"),
    [
        (b"[]", None, "batch"),
        (b"[" + rpc() + b"]", None, "batch"),
        (b'"GetTask"', None, "JSON object"),
        (json.dumps({"jsonrpc": "1.0", "id": 3, "method": "GetTask"}).encode(), 3, "jsonrpc"),
        (json.dumps({"jsonrpc": "2.0", "id": "a"}).encode(), "a", "method"),
        (json.dumps({"jsonrpc": "2.0", "id": 4, "method": 12}).encode(), 4, "method"),
        (json.dumps({"jsonrpc": "2.0", "id": 1.5, "method": "GetTask"}).encode(), None, "'id'"),
        (json.dumps({"jsonrpc": "2.0", "id": True, "method": "GetTask"}).encode(), None, "'id'"),
        (rpc(params=None).replace(b"{}", b"[1]"), 7, "params"),
    ],
)
async def test_invalid_requests_are_answered_minus_32600_with_their_id(
    http: httpx.AsyncClient, body: bytes, rid: object, why: str
) -> None:
    error = await rpc_error(http, body)
    assert error["code"] == -32600 and error["id"] == rid
    assert str(error["message"]).startswith("Invalid Request") and why in str(error["message"])


async def test_params_the_sdk_refuses_come_back_as_the_standard_message(
    http: httpx.AsyncClient,
) -> None:
    error = await rpc_error(http, rpc("SendMessage", {"message": {"parts": "not a list"}}))
    assert error == {"id": 7, "code": -32602, "message": "Invalid params"}
    unknown = await rpc_error(http, rpc("NoSuchMethod"))
    assert unknown["code"] == -32601, "other codes are the SDK's own"


async def test_a_valid_request_still_reaches_the_sdk(http: httpx.AsyncClient) -> None:
    error = await rpc_error(http, rpc("GetTask", {"id": "no-such-task"}))
    assert error["code"] == -32001 and error["id"] == 7  # TaskNotFoundError


async def test_the_a2a_sdk_client_is_answered_through_the_guard(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    server.call(GATE.open)
    config = ClientConfig(httpx_client=http, streaming=False)
    client = await create_client(server.url + "/a2a/gated", client_config=config)
    message = new_text_message("what is it?", role=Role.ROLE_USER)
    responses = [r async for r in client.send_message(SendMessageRequest(message=message))]
    (artifact,) = responses[-1].task.artifacts
    assert get_artifact_text(artifact) == "the gated answer"


# --------------------------------------------------------------------------- payload limit


def _chunks(body: bytes) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 1024):
            yield body[i : i + 1024]

    return gen()


@pytest.mark.parametrize("path", ["/a2a/gated", "/v1/chat/completions", "/v1/runs"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_the_payload_limit_answers_alike_on_every_route_and_encoding(
    http: httpx.AsyncClient, path: str, chunked: bool
) -> None:
    body = rpc("SendMessage", {"pad": "x" * (LIMIT * 3)})
    content = _chunks(body) if chunked else body
    response = await http.post(path, content=content, headers={"content-type": "application/json"})
    if chunked:
        assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == {
        "error": {
            "message": f"the request body is over the limit of {LIMIT} bytes",
            "type": "invalid_request_error",
            "param": None,
            "code": "request_too_large",
        }
    }


# --------------------------------------------------------------------------- authentication


async def test_failed_authentication_is_limited_per_client_and_counted() -> None:
    port = free_port()
    settings = ServerSettings(port=port, api_keys=[KEY], auth_max_failures=3)
    app = create_app([gated_network(Gate())], settings)
    wrong = {"Authorization": "Bearer guess"}
    with LiveServer(app, port=port) as live:
        async with httpx.AsyncClient(base_url=live.url) as anon:
            statuses = [
                (await anon.post("/a2a/gated", content=rpc(), headers=wrong)).status_code
                for _ in range(2)
            ]
            statuses.append((await anon.get("/v1/models")).status_code)  # no key at all
            limited = await anon.post("/a2a/gated", content=rpc(), headers=wrong)
            right_key = await anon.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
            healthz = await anon.get("/healthz")
        scraped = live.call(lambda: app.state.metrics.render().decode())
    assert statuses == [401, 401, 401]
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.json()["error"]["code"] == "too_many_failed_auth"
    assert right_key.status_code == 429, "a limited client is refused until the window passes"
    assert healthz.status_code == 200, "public paths stay open"
    assert 'rede_auth_refused_total{reason="invalid"} 2.0' in scraped
    assert 'rede_auth_refused_total{reason="missing"} 1.0' in scraped
    assert 'rede_auth_refused_total{reason="limited"} 2.0' in scraped


def test_a_limited_client_may_try_again_once_the_window_passes() -> None:
    now = [0.0]
    limit = FailureLimit(2, 60.0, clock=lambda: now[0])
    limit.failed("10.0.0.1")
    now[0] = 30.0
    limit.failed("10.0.0.1")
    assert limit.retry_after("10.0.0.1") == pytest.approx(30.0)
    assert limit.retry_after("10.0.0.2") is None, "limits are per client"
    now[0] = 60.5
    assert limit.retry_after("10.0.0.1") is None, "the first failure left the window"
    limit.failed("10.0.0.1")
    assert limit.retry_after("10.0.0.1") == pytest.approx(29.5)


def test_nesting_depth_skips_brackets_inside_strings() -> None:
    assert nesting_depth(b'{"a": "[[[[[[", "b": [1, {"c": "\\"]]"}]}', 10) == 3
    assert nesting_depth(b"[" * 1000, 64) == 65, "counting stops past the limit"


# --------------------------------------------------------------------------- bus refusals


async def test_envelopes_the_bus_refused_are_counted_in_the_metrics() -> None:
    port = free_port()
    net = gated_network(Gate())
    with LiveServer(create_app([net], ServerSettings(port=port)), port=port) as live:
        assert live.loop is not None and net.bus is not None
        bus = net.bus

        async def forge() -> None:
            for n in range(3):
                await bus.publish_raw(Topic.registry(), b'{"not": "an envelope %d"}' % n)
            await net.registry.wait_for(lambda reg: bus.stats.rejected["malformed"] >= 3, 10)

        asyncio.run_coroutine_threadsafe(forge(), live.loop).result(timeout=20)
        async with httpx.AsyncClient(base_url=live.url) as client:
            text = (await client.get("/metrics")).text
    assert 'rede_bus_rejected_total{model="gated",reason="malformed"} 3.0' in text
    assert 'rede_bus_dead_lettered_total{model="gated"} 3.0' in text
