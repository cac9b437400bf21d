"""``create_app``: the ASGI app behind ``rede serve``.

    nets = [Network.from_yaml("team.yaml")]
    app = create_app(nets, ServerSettings())     # uvicorn.run(app) or any ASGI server

The app starts the networks when it starts (lifespan) and, when it stops, lets running
runs finish within ``shutdown_timeout_s`` before it cancels them and stops the networks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware

from rede import ConfigError, Network, __version__
from rede.errors import Busy
from rede.protocol.messages import new_id
from rede.server import a2a, openai_api, runs_api
from rede.server.http import (
    AccessLog,
    APIError,
    BearerAuth,
    BodyLimit,
    FailureLimit,
    error_response,
)
from rede.server.jsonrpc import JsonRpcGuard
from rede.server.metrics import CONTENT_TYPE, Metrics
from rede.server.runs import (
    AtCapacity,
    Draining,
    EmptyRequest,
    Ledger,
    RunManager,
    UnknownModel,
    UnknownRun,
)
from rede.server.settings import ServerSettings

WEB = Path(__file__).parent / "web"
log = logging.getLogger("rede.server")
PUBLIC = ("/", "/healthz", "/openapi.json", "/docs", "/favicon.ico")
PUBLIC_PREFIXES = ("/web/", "/.well-known/", "/docs/")


def _public(path: str) -> bool:
    return path in PUBLIC or path.startswith(PUBLIC_PREFIXES) or path.endswith("agent-card.json")


def _jsonrpc(path: str) -> bool:
    """The A2A JSON-RPC endpoints (``/a2a/<network>``), not their agent cards."""
    return path.startswith("/a2a/") and path.count("/") == 2


def _by_name(networks: Sequence[Network]) -> dict[str, Network]:
    out: dict[str, Network] = {}
    for net in networks:
        name = net.config.name
        if name in out:
            raise ConfigError(
                f"two networks are named {name!r}; each served network needs its own name "
                "(its model id)"
            )
        out[name] = net
    if not out:
        raise ConfigError("no network to serve")
    return out


def create_app(
    networks: Sequence[Network],
    settings: ServerSettings | None = None,
    *,
    ledger: Ledger | None = None,
) -> FastAPI:
    """The app serving ``networks`` (started and stopped by the app's lifespan). ``ledger``
    is where the history is read from (default: the first network's)."""
    settings = settings or ServerSettings()
    settings.check()
    nets = _by_name(networks)
    runs = RunManager(
        nets,
        ledger or next(iter(nets.values())).ledger,
        max_concurrent=settings.max_concurrent_runs,
        keep=settings.keep_runs,
    )
    metrics = Metrics(runs)
    runs.on_finish = metrics.run_finished

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started: list[Network] = []
        try:
            for net in nets.values():
                await net.start()
                started.append(net)
            adopting = [  # runs whose process died resume here (see rede.orchestration.durable)
                asyncio.create_task(runs.adopt_orphans(net))
                for net in started
                if net.config.durable.resume_orphans
            ]
            yield
            for task in adopting:
                task.cancel()
        finally:
            await runs.aclose(settings.shutdown_timeout_s)
            for net in reversed(started):
                await net.stop()

    app = FastAPI(
        title="Rede",
        version=__version__,
        summary="A network of small LLM agents served as one OpenAI-compatible model, "
        "with its runs, their live events, A2A and a web page.",
        lifespan=lifespan,
    )
    app.state.runs = runs
    app.state.metrics = metrics
    app.state.settings = settings

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> Response:
        return exc.response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            ctx = first.get("ctx") or {}
            return error_response(
                400,
                f"the body is not valid JSON: {ctx.get('error', 'parse error')}",
                "invalid_json",
            )
        loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return error_response(
            400,
            f"{loc or 'body'}: {first.get('msg', 'invalid')}{more}",
            "invalid_request",
            param=loc or None,
        )

    @app.exception_handler(UnknownModel)
    async def unknown_model(request: Request, exc: UnknownModel) -> Response:
        return error_response(404, str(exc), "model_not_found", param="model")

    @app.exception_handler(UnknownRun)
    async def unknown_run(request: Request, exc: UnknownRun) -> Response:
        return error_response(404, str(exc), "run_not_found")

    @app.exception_handler(AtCapacity)
    async def at_capacity(request: Request, exc: AtCapacity) -> Response:
        metrics.rejected.labels("capacity").inc()
        headers = {"Retry-After": str(settings.retry_after_s)}
        return error_response(429, str(exc), "too_many_runs", headers=headers)

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy) -> Response:
        metrics.rejected.labels("busy").inc()
        headers = {"Retry-After": str(exc.retry_after_s)}
        return error_response(429, str(exc), "network_busy", headers=headers)

    @app.exception_handler(Draining)
    async def draining(request: Request, exc: Draining) -> Response:
        metrics.rejected.labels("draining").inc()
        return error_response(503, str(exc), "shutting_down", headers={"Retry-After": "5"})

    @app.exception_handler(EmptyRequest)
    async def empty(request: Request, exc: EmptyRequest) -> Response:
        return error_response(400, str(exc), "empty_request")

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        ref = new_id("err-")  # the exception's text stays in the server's log
        log.error("internal error %s on %s %s", ref, request.method, request.url.path, exc_info=exc)
        return error_response(500, f"internal error (logged on the server as {ref})", "internal")

    app.include_router(openai_api.router(runs, settings.on_disconnect))
    app.include_router(runs_api.router(runs))

    @app.get("/healthz", tags=["Server"], summary="Liveness and what runs")
    async def healthz() -> dict[str, Any]:
        return {
            "status": "draining" if runs.draining else "ok",
            "version": __version__,
            "networks": list(nets),
            "runs_active": runs.active,
            "max_concurrent_runs": runs.max_concurrent,
        }

    @app.get("/metrics", tags=["Server"], summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB / "index.html")

    app.mount("/web", StaticFiles(directory=WEB), name="web")
    app.router.routes.extend(a2a.routes(runs, settings.base_url))

    def observe_http(method: str, route: str, status: int, seconds: float) -> None:
        metrics.http.labels(method, route, str(status)).inc()
        metrics.http_seconds.labels(method, route).observe(seconds)

    # outermost last: access log, CORS (so errors carry its headers), body limit, keys
    app.add_middleware(JsonRpcGuard, guarded=_jsonrpc)
    limit = FailureLimit(settings.auth_max_failures, settings.auth_window_s)
    counted = metrics.auth_refused.labels
    app.add_middleware(
        BearerAuth,
        keys=settings.api_keys,
        public=_public,
        limit=limit,
        counted=lambda reason: counted(reason).inc(),
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            expose_headers=["X-Rede-Run-Id", "Retry-After"],
        )
    app.add_middleware(AccessLog, observe=observe_http)
    return app
