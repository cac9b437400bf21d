"""JSON-RPC 2.0 errors at the A2A edge, answered by the protocol's own codes.

The ``a2a-sdk`` parses a request with Python's ``json`` and answers what fails with the
exception's own text: a 100,000-deep body came back as ``-32603`` carrying ``maximum
recursion depth exceeded ...``, invalid UTF-8 as ``-32603`` with the codec's message.
:class:`JsonRpcGuard` sits in front of the JSON-RPC routes (plain ASGI) and

- reads the body (the body limit above it still holds) and answers, itself, with HTTP 200
  and a JSON-RPC error, as the binding says: bytes that are not UTF-8 JSON, or JSON nested
  deeper than :data:`MAX_DEPTH`, ``-32700 Parse error``; JSON that is not one request object
  (a batch, no ``"jsonrpc": "2.0"``, a method that is not a non-empty string, an id that is
  not a string, an integer or null, params that are not an object) ``-32600 Invalid
  Request``; the ``id`` is echoed where it could be read;
- hands a request that passed on to the SDK, and rewrites an error the SDK answers
  (``-32700``, ``-32600``, ``-32602``, ``-32603``) to the code's standard message with no
  ``data``, so no exception text reaches a client (it is logged on the server instead).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("rede.server.a2a")

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects a request may have (A2A needs fewer than 10)."""

PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32602, -32603
STANDARD = {
    PARSE_ERROR: "Parse error",
    INVALID_REQUEST: "Invalid Request",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
}


class RequestRejected(Exception):
    """A body answered with a JSON-RPC error before it reaches the SDK."""

    def __init__(self, code: int, why: str, request_id: str | int | None = None) -> None:
        super().__init__(why)
        self.code, self.why, self.request_id = code, why, request_id


def nesting_depth(data: bytes, limit: int) -> int:
    """How deep arrays and objects nest in JSON ``data`` (strings skipped), counted up to
    ``limit + 1``: one linear pass, no recursion, so any depth is cheap to refuse."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def parse_request(data: bytes) -> dict[str, Any]:
    """The request object in ``data``; :class:`RequestRejected` naming why it is not one."""
    if nesting_depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise RequestRejected(PARSE_ERROR, f"the JSON nests deeper than {MAX_DEPTH} levels")
    try:
        body = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestRejected(PARSE_ERROR, "the body is not valid UTF-8") from None
    except (ValueError, RecursionError):
        raise RequestRejected(PARSE_ERROR, "the body is not valid JSON") from None
    if isinstance(body, list):
        raise RequestRejected(INVALID_REQUEST, "batch requests are not supported")
    if not isinstance(body, dict):
        raise RequestRejected(INVALID_REQUEST, "a request must be a JSON object")
    rid = body.get("id")
    if isinstance(rid, bool) or not (rid is None or isinstance(rid, str | int)):
        raise RequestRejected(INVALID_REQUEST, "'id' must be a string, an integer or null")
    problem = _problem(body)
    if problem:
        raise RequestRejected(INVALID_REQUEST, problem, rid)
    return body


def _problem(body: dict[str, Any]) -> str | None:
    if body.get("jsonrpc") != "2.0":
        return "'jsonrpc' must be exactly \"2.0\""
    method = body.get("method")
    if not isinstance(method, str) or not method:
        return "'method' must be a non-empty string"
    if "params" in body and not isinstance(body["params"], dict):
        return "'params' must be an object"
    return None


def error_payload(code: int, why: str | None, request_id: str | int | None) -> bytes:
    message = STANDARD.get(code, "Error") + (f": {why}" if why else "")
    error = {"code": code, "message": message}
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}).encode()


async def _send_json(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class JsonRpcGuard:
    """Answers bad JSON-RPC bodies on the paths ``guarded`` picks (see the module)."""

    def __init__(self, app: ASGIApp, guarded: Callable[[str], bool]) -> None:
        self.app = app
        self.guarded = guarded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not self.guarded(scope["path"]):
            await self.app(scope, receive, send)
            return
        data = await read_body(receive)
        try:
            parse_request(data)
        except RequestRejected as exc:
            await _send_json(send, 200, error_payload(exc.code, exc.why, exc.request_id))
            return
        await self.app(scope, _replay(data, receive), _Scrubbing(send))


def _replay(data: bytes, receive: Receive) -> Receive:
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}
        return await receive()  # the disconnect, when it comes

    return again


class _Scrubbing:
    """Holds a JSON response until complete and drops the exception text from a JSON-RPC
    error in it; a stream (SSE) passes through untouched."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers", []))
            if headers.get(b"content-type", b"").startswith(b"application/json"):
                self.start = message
                return
        elif message["type"] == "http.response.body" and self.start is not None:
            self.chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            await self._flush(self.start, scrub(b"".join(self.chunks)))
            return
        await self.send(message)

    async def _flush(self, start: Message, body: bytes) -> None:
        headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
        headers.append((b"content-length", b"%d" % len(body)))
        await self.send({**start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})


def scrub(body: bytes) -> bytes:
    """A JSON-RPC error response with a standard code keeps only the standard message."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict) or error.get("code") not in STANDARD:
        return body
    log.warning(
        "A2A answered JSON-RPC %s: %s %s",
        error["code"],
        error.get("message"),
        error.get("data", ""),
    )
    return error_payload(int(error["code"]), None, doc.get("id"))
