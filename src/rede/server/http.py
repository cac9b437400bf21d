"""The HTTP edge: OpenAI-shaped errors, bearer keys, the body-size limit and access logs.

The middlewares are plain ASGI, so they guard every route alike, the A2A routes that the
``a2a-sdk`` builds included.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("rede.server.access")

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
}


def error_body(status: int, message: str, code: str | None = None, param: str | None = None):
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {
        "error": {
            "message": message,
            "type": ERROR_TYPES.get(status, "server_error"),
            "param": param,
            "code": code,
        }
    }


def error_response(
    status: int,
    message: str,
    code: str | None = None,
    *,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(status, message, code, param), status, headers=headers)


class APIError(HTTPException):
    """An error the API answers with OpenAI's shape (raised anywhere below a route)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, headers)
        self.message = message
        self.code = code
        self.param = param

    def response(self) -> JSONResponse:
        return error_response(
            self.status_code, self.message, self.code, param=self.param, headers=self.headers
        )


async def _send_error(send: Send, status: int, message: str, code: str, **headers: str) -> None:
    body = json.dumps(error_body(status, message, code)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


DRAIN_BYTES = 16 * 1024 * 1024
"""How much of an oversized body is read (and dropped) before the 413 goes out: a server
that answers and closes with unread bytes in the socket resets the connection, and the
client sees a broken connection instead of the 413. Past this, the connection is closed."""


async def _drain(receive: Receive, budget: int = DRAIN_BYTES) -> None:
    while budget > 0:
        msg = await receive()
        if msg["type"] != "http.request":
            return
        budget -= len(msg.get("body", b""))
        if not msg.get("more_body", False):
            return


class _TooLarge(APIError):
    """The body passed the limit while it was read: the 413 is already sent."""


class BodyLimit:
    """Refuse a request body over ``max_bytes`` with 413 and one body on every route: at
    once when Content-Length says so, else (chunked, or a length that lies) as soon as the
    bytes read pass the limit. Then the 413 is sent from here and whatever the route
    would answer after it (the A2A SDK makes its own error of it) is dropped."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is over the limit of {self.max_bytes} bytes"
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _drain(receive)
                await _send_error(send, 413, message, "request_too_large", connection="close")
                return
        seen = 0
        state = {"started": False, "answered": False}

        async def counted() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    if not state["started"]:
                        state["answered"] = True
                        if msg.get("more_body", False):
                            await _drain(receive)
                        await _send_error(
                            send, 413, message, "request_too_large", connection="close"
                        )
                    raise _TooLarge(413, message, "request_too_large")
            return msg

        async def guarded(msg: Message) -> None:
            if state["answered"]:
                return  # the 413 went out; the route's own answer to it is dropped
            state["started"] = True
            await send(msg)

        try:
            await self.app(scope, counted, guarded)
        except _TooLarge:
            if not state["answered"]:
                raise


class FailureLimit:
    """Failed authentications per client: past ``max_failures`` within ``window_s`` a
    client is refused (429) until its oldest failure in the window is ``window_s`` old.
    ``clock`` is injectable so tests move time instead of sleeping."""

    def __init__(
        self,
        max_failures: int = 10,
        window_s: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str) -> deque[float]:
        times = self._failures.get(client)
        if times is None:
            return deque()
        cutoff = self.clock() - self.window_s
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._failures[client]
        return times

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again; None: it may now."""
        times = self._recent(client)
        if len(times) < self.max_failures:
            return None
        return max(0.0, times[0] + self.window_s - self.clock())

    def failed(self, client: str) -> None:
        times = self._failures.setdefault(client, deque())
        self._failures.move_to_end(client)
        times.append(self.clock())
        while len(times) > self.max_failures:
            times.popleft()
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)


class BearerAuth:
    """Every path except ``public`` needs ``Authorization: Bearer KEY`` with a known key.

    Failed attempts are limited per client address (:class:`FailureLimit`): a client past
    the limit gets 429 with ``Retry-After`` on every request that needs a key, a right one
    too, until the window lets it try again. ``counted(reason)`` is told of each refusal
    (``missing``, ``invalid``, ``limited``), for the metrics."""

    def __init__(
        self,
        app: ASGIApp,
        keys: Iterable[str],
        public: Callable[[str], bool],
        limit: FailureLimit | None = None,
        counted: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys]
        self.public = public
        self.limit = limit or FailureLimit()
        self.counted = counted or _ignore

    def _ok(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() != b"bearer":
                    return False
                token = token.strip()
                # compare with every key, so the time taken does not tell which matched
                return any([hmac.compare_digest(token, k) for k in self.keys])
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.keys
            or scope["method"] == "OPTIONS"
            or self.public(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        client = scope["client"][0] if scope.get("client") else "unknown"
        wait = self.limit.retry_after(client)
        if wait is not None:
            self.counted("limited")
            retry = str(max(1, math.ceil(wait)))
            text = f"too many failed authentications from this client; retry in {retry}s"
            await _send_error(send, 429, text, "too_many_failed_auth", retry_after=retry)
            return
        if self._ok(scope):
            await self.app(scope, receive, send)
            return
        self.limit.failed(client)
        has_header = any(n == b"authorization" for n, _ in scope["headers"])
        self.counted("invalid" if has_header else "missing")
        message = (
            "the API key is not valid"
            if has_header
            else "an API key is needed: send it as 'Authorization: Bearer KEY'"
        )
        await _send_error(send, 401, message, "invalid_api_key", www_authenticate="Bearer")


def _ignore(reason: str) -> None:
    return None


class AccessLog:
    """One structured (JSON) log line per request, and the HTTP metrics."""

    def __init__(self, app: ASGIApp, observe: Callable[[str, str, int, float], None]) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        facts: dict[str, Any] = {"status": 500, "bytes": 0, "run_id": None}

        async def watched(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                facts["status"] = msg["status"]
                for name, value in msg.get("headers", []):
                    if name == b"x-rede-run-id":
                        facts["run_id"] = value.decode()
            elif msg["type"] == "http.response.body":
                facts["bytes"] += len(msg.get("body", b""))
            await send(msg)

        try:
            await self.app(scope, receive, watched)
        finally:
            elapsed = time.perf_counter() - t0
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.observe(scope["method"], template, facts["status"], elapsed)
            if access_log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                access_log.info(
                    json.dumps(
                        {
                            "event": "http_request",
                            "method": scope["method"],
                            "path": scope["path"],
                            "route": template,
                            "status": facts["status"],
                            "duration_ms": round(elapsed * 1000, 3),
                            "bytes": facts["bytes"],
                            "client": f"{client[0]}:{client[1]}" if client else None,
                            "run_id": facts["run_id"],
                        }
                    )
                )
