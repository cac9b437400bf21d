"""The HTTP edge: OpenAI-shaped errors, bearer keys, the body-size limit and access logs.

The middlewares are plain ASGI, so they guard every route alike, the A2A routes that the
``a2a-sdk`` builds included.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
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


class BodyLimit:
    """Refuse a request body over ``max_bytes`` with 413: at once when Content-Length says
    so, else when the bytes read pass the limit."""

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
                await _send_error(send, 413, message, "request_too_large", connection="close")
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise APIError(413, message, "request_too_large")
            return msg

        await self.app(scope, counted, send)


class BearerAuth:
    """Every path except ``public`` needs ``Authorization: Bearer KEY`` with a known key."""

    def __init__(self, app: ASGIApp, keys: Iterable[str], public: Callable[[str], bool]) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys]
        self.public = public

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
            or self._ok(scope)
        ):
            await self.app(scope, receive, send)
            return
        has_header = any(n == b"authorization" for n, _ in scope["headers"])
        message = (
            "the API key is not valid"
            if has_header
            else "an API key is needed: send it as 'Authorization: Bearer KEY'"
        )
        await _send_error(send, 401, message, "invalid_api_key", www_authenticate="Bearer")


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
