"""A real HTTP server speaking the OpenAI chat completions protocol, for tests and benchmarks.

It listens on loopback, answers deterministically, and counts what every client asked for, so
that the test suite can exercise a real HTTP path and a benchmark can give each framework its
own API key and read back what each one spent::

    with FakeOpenAIServer(latency_s=0.05) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="framework-a")
        ...
        srv.stats()["clients"]["framework-a"]["requests"]

From another process::

    python -m rede.testing.openai_server --port 0 --latency-ms 50
    # first line on stdout: http://127.0.0.1:PORT/v1 ; serves until SIGINT or SIGTERM

The module uses the standard library only and imports nothing from Rede, so it also runs as a
plain script (``python path/to/openai_server.py``) under another virtual environment.

Endpoints (each also without the ``/v1`` prefix):

- ``POST /v1/chat/completions``: a completion, or with ``"stream": true`` server-sent events
  (``data: {chunk}`` lines whose ``choices[0].delta.content`` concatenate to the text, a last
  chunk with ``usage`` when ``stream_options.include_usage`` is true, then ``data: [DONE]``).
  ``max_tokens`` (or ``max_completion_tokens``) truncates the text (``finish_reason:
  "length"``), ``stop`` cuts it at the first stop string, ``logprobs: true`` adds
  deterministic per-token log-probabilities. ``response_format`` is handed to the responder.
  A ``tool_choice`` naming one of ``tools`` is answered with that call (not streamed).
  Structured output comes in the dialects real servers speak (``dialects`` says which this
  one takes): ``response_format`` ``{"type": "json_schema", "json_schema": {"schema": ...}}``
  (OpenAI, vLLM), ``{"type": "json_object", "schema": ...}`` (llama-cpp-python),
  ``{"type": "json_object"}``, and Ollama's top-level ``format``. A form it does not take is
  refused the way the server it imitates refuses it (``refusal_status``: llama-cpp-python
  answers ``json_schema`` with HTTP 500). With a schema, the default responder answers
  :func:`example_for` the schema, as constrained decoding would.
- ``GET /v1/models``: the configured model.
- ``GET /stats``: :meth:`FakeOpenAIServer.stats` as JSON. ``POST /stats/reset`` resets it.
- ``POST /faults``: ``{"status": 429, "count": 2}`` is :meth:`~FakeOpenAIServer.fail_next`,
  ``{"malformed": true, "count": 1}`` is :meth:`~FakeOpenAIServer.malform_next`,
  ``{"drop": true, "count": 1}`` is :meth:`~FakeOpenAIServer.drop_next`.

Token counts are deterministic estimates, not a tokenizer: a text of ``n`` characters counts
``ceil(n / 4)`` tokens (the same rule as ``rede.models.estimate_tokens``). Prompt tokens are the
sum over the contents of every message; completion tokens are counted on the text returned.

Every chat completion call waits ``latency_s`` before answering, fault or not.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import re
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from rede.models._base import estimate_tokens

Responder = Callable[[dict[str, Any]], str]
"""``responder(request_json) -> text``: writes the assistant's reply to one request."""

LLAMA_CPP_DIALECTS = frozenset({"json_object_schema", "json_object"})
"""What llama-cpp-python's server takes (it answers the ``json_schema`` form with HTTP 500)."""
COUNTERS = ("requests", "completions", "errors", "prompt_tokens", "completion_tokens")
NO_KEY = "(none)"
"""The client key of requests without an ``Authorization: Bearer`` header."""


# --------------------------------------------------------------------------- pure helpers


count_tokens = estimate_tokens
"""Deterministic token estimate: ``ceil(len(text) / 4)``, at least 1 for a non-empty text (the
estimate Rede uses where a server reports no usage)."""


def message_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or a list of ``{"type": "text"}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return ""


def prompt_tokens(request: dict[str, Any]) -> int:
    """Prompt tokens of a request: :func:`count_tokens` summed over every message's content."""
    messages = request.get("messages") or []
    return sum(count_tokens(message_text(m.get("content"))) for m in messages)


def last_user_message(request: dict[str, Any]) -> str:
    for message in reversed(request.get("messages") or []):
        if message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


DIALECTS = frozenset({"json_schema", "json_object_schema", "json_object", "ollama_format"})
"""Every structured-output form the server knows (see :func:`dialect_of`)."""


def dialect_of(request: dict[str, Any]) -> str | None:
    """Which structured-output form a request uses, or None.

    ``json_schema``: ``response_format: {"type": "json_schema", ...}``; ``json_object_schema``:
    ``{"type": "json_object", "schema": {...}}``; ``json_object``: ``{"type": "json_object"}``;
    ``ollama_format``: a top-level ``format`` (``"json"`` or a schema)."""
    fmt = request.get("response_format")
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_schema":
            return "json_schema"
        if fmt.get("type") == "json_object":
            return "json_object_schema" if isinstance(fmt.get("schema"), dict) else "json_object"
        return str(fmt.get("type"))
    if "format" in request:
        return "ollama_format"
    return None


def schema_of(request: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON Schema a request asks its reply to match, in whichever dialect, or None."""
    dialect = dialect_of(request)
    fmt = request.get("response_format") or {}
    schema: Any = None
    if dialect == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
    elif dialect == "json_object_schema":
        schema = fmt.get("schema")
    elif dialect == "ollama_format":
        schema = request.get("format")
    return schema if isinstance(schema, dict) else None


def wants_json(request: dict[str, Any]) -> bool:
    """Whether the request asks for JSON output, in any dialect."""
    return dialect_of(request) in DIALECTS


def example_for(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """The smallest value that matches ``schema``, as a constrained decoder might write it.

    Follows ``$ref`` into ``$defs``, takes the first ``enum``/``const``/``anyOf`` branch, every
    required property (all properties when none is listed), ``minItems`` items, ``minimum``
    for numbers, and for strings the first of a few candidates that fits ``pattern`` and the
    length bounds."""
    root = schema if root is None else root
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return example_for(target, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example_for(schema[key][0], root)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        names = schema.get("required") or list(props)
        return {name: example_for(props.get(name, {}), root) for name in names}
    if kind == "array" and isinstance(schema.get("prefixItems"), list):
        return [example_for(item, root) for item in schema["prefixItems"]]
    if kind == "array":
        item = schema.get("items") or {}
        return [example_for(item, root) for _ in range(int(schema.get("minItems", 0)))]
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        return int(low) if kind == "integer" else low
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return _example_string(schema)


def _example_string(schema: dict[str, Any]) -> str:
    low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
    pattern = schema.get("pattern")
    for candidate in ("example", "x", "a1", "s1", "0", ""):
        text = candidate + "x" * max(0, low - len(candidate))
        if high is not None and len(text) > high:
            continue
        if pattern is None or re.search(pattern, text):
            return text
    return "x" * low


def default_responder(request: dict[str, Any]) -> str:
    """A short reply that depends only on the last user message.

    ``Reply 1a2b3c4d: <the first eight words of the message>``; when the request asks for
    JSON matching a schema, :func:`example_for` the schema; when it asks for any JSON, a JSON
    object ``{"answer": "reply 1a2b3c4d", "echo": "<those words>"}``."""
    text = last_user_message(request)
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    echo = " ".join(text.split()[:8])
    schema = schema_of(request)
    if schema is not None:
        return json.dumps(example_for(schema))
    if wants_json(request):
        return json.dumps({"answer": f"reply {digest}", "echo": echo}, sort_keys=True)
    return f"Reply {digest}: {echo}"


def forced_tool_call(request: dict[str, Any]) -> dict[str, Any] | None:
    """For a ``tool_choice`` naming one of the request's tools, the call a constrained
    decoder would write: that function, with :func:`example_for` its parameters."""
    choice = request.get("tool_choice")
    if not isinstance(choice, dict):
        return None
    name = (choice.get("function") or {}).get("name")
    for tool in request.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("name") == name:
            arguments = example_for(function.get("parameters") or {"type": "object"})
            return {
                "id": "call_0",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
    return None


def split_pieces(text: str) -> list[str]:
    """Word-sized pieces (each with its trailing whitespace) that concatenate to ``text``."""
    return re.findall(r"\s+|\S+\s*", text)


def piece_logprob(piece: str) -> float:
    """A deterministic log-probability in ``(-1, 0]`` for one piece of text."""
    return -(int(hashlib.sha256(piece.encode()).hexdigest()[:4], 16) % 1000) / 1000


def shape_completion(request: dict[str, Any], text: str) -> tuple[str, str]:
    """Apply ``stop`` and ``max_tokens`` to a reply: ``(text, finish_reason)``."""
    stop = request.get("stop")
    stops = [stop] if isinstance(stop, str) else [s for s in stop or [] if isinstance(s, str)]
    cuts = [text.find(s) for s in stops if s and s in text]
    if cuts:
        text = text[: min(cuts)]
    limit = request.get("max_completion_tokens") or request.get("max_tokens")
    if isinstance(limit, int) and limit > 0 and count_tokens(text) > limit:
        return text[: limit * 4], "length"
    return text, "stop"


def error_body(message: str, status: int) -> dict[str, Any]:
    """An OpenAI-style error object."""
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "not_found_error",
        429: "rate_limit_exceeded",
    }.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


# --------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class Received:
    """One chat completion request as the server received it."""

    api_key: str
    body: dict[str, Any]


@dataclass(frozen=True)
class _Fault:
    status: int
    """An HTTP status; 200 for a malformed body, 0 for a dropped connection."""
    body: bytes
    retry_after: float | None = None


class FakeOpenAIServer:
    """A loopback OpenAI-compatible chat completions server in a background thread.

    ``latency_s``: wait before every chat completion answer. ``responder``: writes the replies
    (default :func:`default_responder`). ``include_usage=False``: never report usage (clients
    must estimate). ``json_mode=False``: reject requests carrying ``response_format`` with a
    400, as some servers do. ``dialects``: the structured-output forms it takes (default all
    of :data:`DIALECTS`); a form outside them gets ``refusal_status`` and a message naming
    ``response_format`` (``dialects=LLAMA_CPP_DIALECTS, refusal_status=500`` imitates
    llama-cpp-python). ``port=0`` picks a free port; :attr:`base_url` tells which.
    ``chunk_interval_s``: wait before each chunk of a streamed answer (a slow drip).
    """

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        responder: Responder | None = None,
        model: str = "rede-fake",
        host: str = "127.0.0.1",
        port: int = 0,
        include_usage: bool = True,
        json_mode: bool = True,
        dialects: frozenset[str] | set[str] = DIALECTS,
        refusal_status: int = 400,
        keep_requests: int = 1000,
        chunk_interval_s: float = 0.0,
    ) -> None:
        if latency_s < 0 or chunk_interval_s < 0:
            raise ValueError(
                f"latency_s and chunk_interval_s must be >= 0, got {latency_s}, {chunk_interval_s}"
            )
        self.latency_s = latency_s
        self.chunk_interval_s = chunk_interval_s
        self.responder: Responder = responder or default_responder
        self.model = model
        self.host = host
        self.port = port
        self.include_usage = include_usage
        self.json_mode = json_mode
        self.dialects = frozenset(dialects)
        unknown = self.dialects - DIALECTS
        if unknown:
            raise ValueError(f"unknown dialect(s) {sorted(unknown)}; known: {sorted(DIALECTS)}")
        self.refusal_status = refusal_status
        self.requests: deque[Received] = deque(maxlen=keep_requests)
        """The latest chat completion requests received (``keep_requests`` at most)."""
        self._lock = threading.Lock()
        self._faults: deque[_Fault] = deque()
        self._totals: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._clients: dict[str, dict[str, int]] = {}
        self._ids = 0
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, the ``base_url`` for OpenAI clients."""
        if self._httpd is None:
            raise RuntimeError("the server is not started: call start() or use it in a with block")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        httpd = _HTTPServer((self.host, self.port), _Handler, fake=self, family=family)
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-openai-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection. Safe to call twice."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if thread is not None:
            thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- faults and counters

    def fail_next(
        self,
        status: int = 429,
        count: int = 1,
        body: dict[str, Any] | str | bytes | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        """The next ``count`` chat completion requests get HTTP ``status``.

        ``body`` defaults to an OpenAI-style error object; ``retry_after`` (seconds) adds a
        ``Retry-After`` header."""
        if not 400 <= status <= 599:
            raise ValueError(f"fail_next needs an error status (400-599), got {status}")
        if body is None:
            body = error_body(f"injected failure (HTTP {status})", status)
        fault = _Fault(status, _as_bytes(body), retry_after)
        with self._lock:
            self._faults.extend([fault] * count)

    def malform_next(
        self, count: int = 1, body: dict[str, Any] | str | bytes | None = None
    ) -> None:
        """The next ``count`` chat completion requests get a 200 that is not a completion.

        ``body`` defaults to ``{"nonsense": true}``; a ``str`` or ``bytes`` body is sent as is
        (for bodies that are not JSON at all). Streamed requests get it as one SSE event."""
        fault = _Fault(200, _as_bytes({"nonsense": True} if body is None else body))
        with self._lock:
            self._faults.extend([fault] * count)

    def drop_next(self, count: int = 1) -> None:
        """The next ``count`` chat completion requests get no answer: the connection is closed
        (clients see a dropped connection, as when a server crashes mid-request)."""
        with self._lock:
            self._faults.extend([_Fault(0, b"")] * count)

    def stats(self) -> dict[str, Any]:
        """Counters: ``{"total": {...}, "clients": {api_key: {...}}}``.

        Each holds ``requests`` (every chat completion request, faults included),
        ``completions`` (answered with a completion), ``errors`` (answered with an error or a
        malformed body), ``prompt_tokens``, ``completion_tokens`` and ``total_tokens``
        (counted for completions only, whether or not usage was reported to the client)."""
        with self._lock:
            return {
                "model": self.model,
                "latency_s": self.latency_s,
                "total": _with_total(self._totals),
                "clients": {key: _with_total(c) for key, c in sorted(self._clients.items())},
            }

    def reset_stats(self) -> None:
        """Zero every counter and forget the received requests (pending faults stay)."""
        with self._lock:
            self._totals = dict.fromkeys(COUNTERS, 0)
            self._clients.clear()
            self.requests.clear()

    # ---------------------------------------------------------------- used by the handler

    def _count(self, api_key: str, **amounts: int) -> None:
        with self._lock:
            client = self._clients.setdefault(api_key, dict.fromkeys(COUNTERS, 0))
            for name, amount in amounts.items():
                self._totals[name] += amount
                client[name] += amount

    def _received(self, api_key: str, body: dict[str, Any]) -> _Fault | None:
        """Record a request; return the fault to inject, if one is pending."""
        with self._lock:
            self.requests.append(Received(api_key, body))
            self._ids += 1
            return self._faults.popleft() if self._faults else None

    def _next_id(self) -> str:
        with self._lock:
            return f"chatcmpl-{self._ids:08d}"

    def _wait_latency(self) -> bool:
        """Wait ``latency_s``; False when the server stopped meanwhile."""
        return not (self.latency_s and self._stopping.wait(self.latency_s))


def _with_total(counters: dict[str, int]) -> dict[str, int]:
    return {**counters, "total_tokens": counters["prompt_tokens"] + counters["completion_tokens"]}


def _as_bytes(body: dict[str, Any] | str | bytes) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep-alive connections must not hold up stop()

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        fake: FakeOpenAIServer,
        family: socket.AddressFamily,
    ) -> None:
        self.address_family = family
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (and connections cut by stop()) are not errors worth a trace."""
        if isinstance(sys.exc_info()[1], ConnectionError) or self.fake._stopping.is_set():
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self.connections_lock:
            for conn in self.connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.connections.clear()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers and body as two writes cost ~40 ms a call
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a benchmark makes thousands of requests."""

    @property
    def fake(self) -> FakeOpenAIServer:
        return self.server.fake

    @property
    def route(self) -> str:
        path = urlsplit(self.path).path.rstrip("/")
        return path[3:] if path.startswith("/v1/") else path

    # ---------------------------------------------------------------- routing

    def do_GET(self) -> None:
        if self.route == "/models":
            model = {"id": self.fake.model, "object": "model", "created": 0, "owned_by": "rede"}
            self._json(200, {"object": "list", "data": [model]})
        elif self.route == "/stats":
            self._json(200, self.fake.stats())
        elif self.route == "/health":
            self._json(200, {"status": "ok"})
        else:
            self._json(404, error_body(f"no route GET {self.path}", 404))

    def do_POST(self) -> None:
        try:
            body = self._read_json()
        except ValueError as exc:
            self._json(400, error_body(f"request body is not a JSON object: {exc}", 400))
            return
        if self.route == "/chat/completions":
            self._chat(body)
        elif self.route == "/stats/reset":
            self.fake.reset_stats()
            self._json(200, {"status": "ok"})
        elif self.route == "/faults":
            self._faults(body)
        else:
            self._json(404, error_body(f"no route POST {self.path}", 404))

    # ---------------------------------------------------------------- chat completions

    def _chat(self, request: dict[str, Any]) -> None:
        fake = self.fake
        key = self._api_key()
        fault = fake._received(key, request)
        fake._count(key, requests=1)
        if not fake._wait_latency():
            self.close_connection = True
            return
        if fault is not None:
            fake._count(key, errors=1)
            self._fault(fault, streamed=bool(request.get("stream")))
            return
        problem = self._invalid(request)
        if problem:
            fake._count(key, errors=1)
            self._json(400, error_body(problem, 400))
            return
        if dialect_of(request) == "ollama_format" and "ollama_format" not in fake.dialects:
            request = {k: v for k, v in request.items() if k != "format"}  # ignored, unknown
        refusal = self._refused_dialect(request)
        if refusal:
            fake._count(key, errors=1)
            self._json(fake.refusal_status, error_body(refusal, fake.refusal_status))
            return
        try:
            reply = fake.responder(request)
            if not isinstance(reply, str):
                raise TypeError(f"responder returned {type(reply).__name__}, not str")
        except Exception as exc:
            fake._count(key, errors=1)
            self._json(500, error_body(f"responder failed: {exc!r}", 500))
            return
        text, finish = shape_completion(request, reply)
        usage = {"prompt_tokens": prompt_tokens(request), "completion_tokens": count_tokens(text)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        fake._count(
            key,
            completions=1,
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
        )
        model = str(request.get("model") or fake.model)
        if request.get("stream"):
            options = request.get("stream_options") or {}
            report = fake.include_usage and bool(options.get("include_usage"))
            self._stream(model, text, finish, usage if report else None, request)
            return
        message: dict[str, Any] = {"role": "assistant", "content": text}
        call = forced_tool_call(request)
        if call is not None:  # a named tool_choice: the call, with arguments for its schema
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish}
        if request.get("logprobs"):
            choice["logprobs"] = {"content": [_logprob(p) for p in split_pieces(text)]}
        completion: dict[str, Any] = {
            "id": fake._next_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [choice],
        }
        if fake.include_usage:
            completion["usage"] = usage
        self._json(200, completion)

    def _invalid(self, request: dict[str, Any]) -> str | None:
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            return "'messages' must be a non-empty list"
        if not all(isinstance(m, dict) and "role" in m for m in messages):
            return "every message needs a 'role'"
        if not isinstance(request.get("stream_options") or {}, dict):
            return "'stream_options' must be an object"
        if not self.fake.json_mode and "response_format" in request:
            return "response_format is not supported by this server"
        return None

    def _refused_dialect(self, request: dict[str, Any]) -> str | None:
        dialect = dialect_of(request)
        if dialect is None or dialect in self.fake.dialects:
            return None
        fmt = json.dumps(request.get("response_format"))[:120]
        return f"response_format {fmt} is not supported by this server ({dialect})"

    def _stream(
        self,
        model: str,
        text: str,
        finish: str,
        usage: dict[str, int] | None,
        request: dict[str, Any],
    ) -> None:
        base = {
            "id": self.fake._next_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        extra = {"usage": None} if usage is not None else {}

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **more: Any) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, **more}
            return _sse({**base, "choices": [choice], **extra})

        def events() -> Iterator[bytes]:
            yield chunk({"role": "assistant", "content": ""})
            for piece in split_pieces(text):
                if request.get("logprobs"):
                    yield chunk({"content": piece}, logprobs={"content": [_logprob(piece)]})
                else:
                    yield chunk({"content": piece})
            yield chunk({}, finish)
            if usage is not None:
                yield _sse({**base, "choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"

        self._send_events(events())

    def _fault(self, fault: _Fault, *, streamed: bool) -> None:
        if fault.status == 0:
            self.close_connection = True
            return
        if fault.status == 200 and streamed:
            self._send_events(iter([b"data: " + fault.body + b"\n\n", b"data: [DONE]\n\n"]))
            return
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        self._send(fault.status, fault.body, "application/json", headers)

    def _faults(self, body: dict[str, Any]) -> None:
        count = body.get("count", 1)
        if not isinstance(count, int) or count < 0:
            self._json(400, error_body("'count' must be a non-negative integer", 400))
            return
        try:
            if body.get("drop"):
                self.fake.drop_next(count)
            elif body.get("malformed"):
                self.fake.malform_next(count, body.get("body"))
            else:
                self.fake.fail_next(
                    int(body.get("status", 429)),
                    count,
                    body.get("body"),
                    retry_after=body.get("retry_after"),
                )
        except (TypeError, ValueError) as exc:
            self._json(400, error_body(str(exc), 400))
            return
        self._json(200, {"status": "ok"})

    # ---------------------------------------------------------------- HTTP plumbing

    def _api_key(self) -> str:
        auth = self.headers.get("Authorization", "")
        scheme, _, key = auth.partition(" ")
        return key.strip() if scheme.lower() == "bearer" and key.strip() else NO_KEY

    def _read_json(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError(f"got {type(data).__name__}")
        return data

    def _json(self, status: int, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_events(self, events: Iterator[bytes]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for n, event in enumerate(events):
            if (
                n
                and self.fake.chunk_interval_s
                and self.fake._stopping.wait(self.fake.chunk_interval_s)
            ):
                return  # the server is stopping
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _logprob(piece: str) -> dict[str, Any]:
    return {
        "token": piece,
        "logprob": piece_logprob(piece),
        "bytes": list(piece.encode()),
        "top_logprobs": [],
    }


# --------------------------------------------------------------------------- command line


def load_responder(spec: str) -> Responder:
    """``module:function`` to the responder it names."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--responder must be 'module:function', got {spec!r}")
    responder = getattr(importlib.import_module(module_name), attr)
    if not callable(responder):
        raise ValueError(f"--responder {spec!r} is not callable")
    return responder  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rede.testing.openai_server",
        description="A deterministic OpenAI-compatible chat completions server on loopback. "
        "Prints its base URL as the first line on stdout, then serves until interrupted.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="wait before each answer")
    parser.add_argument("--model", default="rede-fake", help="the model id /v1/models lists")
    parser.add_argument("--responder", help="module:function writing replies from the request")
    parser.add_argument("--no-usage", action="store_true", help="never report usage")
    parser.add_argument(
        "--no-json-mode", action="store_true", help="reject response_format with a 400"
    )
    parser.add_argument(
        "--dialects",
        help="comma-separated structured-output forms to take (default: all of "
        f"{','.join(sorted(DIALECTS))}); others are refused",
    )
    parser.add_argument(
        "--refusal-status", type=int, default=400, help="HTTP status for a refused form"
    )
    args = parser.parse_args(argv)
    responder = load_responder(args.responder) if args.responder else None
    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with FakeOpenAIServer(
        latency_s=args.latency_ms / 1000,
        responder=responder,
        model=args.model,
        host=args.host,
        port=args.port,
        include_usage=not args.no_usage,
        json_mode=not args.no_json_mode,
        dialects=frozenset(args.dialects.split(",")) if args.dialects else DIALECTS,
        refusal_status=args.refusal_status,
    ) as server:
        print(server.base_url, flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
