"""``LiveServer``: the app under uvicorn on a loopback port, in a thread of its own, for
tests and benchmarks that call it over real HTTP.

    with LiveServer(create_app([net])) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="-")
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

import uvicorn
from starlette.types import ASGIApp

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server(uvicorn.Server):
    """uvicorn's server, telling a thread when it has started (or failed to)."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()


class LiveServer:
    def __init__(self, app: ASGIApp, *, port: int | None = None, **config: Any) -> None:
        self.port = port or free_port()
        config.setdefault("log_level", "warning")
        self._ready = threading.Event()
        self.server = _Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, lifespan="on", **config),
            self._ready,
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._serve, name="rede-live-server", daemon=True)
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            await self.server.serve()

        try:
            asyncio.run(main())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    def start(self, timeout: float = 30.0) -> Self:
        self._thread.start()
        if not self._ready.wait(timeout) or not self.server.started:
            raise RuntimeError(f"the server did not start on port {self.port}: {self._error}")
        return self

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's event loop (to touch its asyncio objects) and return."""
        assert self.loop is not None
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            try:
                box.append(fn())
            finally:
                done.set()

        self.loop.call_soon_threadsafe(run)
        done.wait(10)
        return box[0]  # type: ignore[no-any-return]

    def stop(self, timeout: float = 60.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
