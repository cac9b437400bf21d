"""A real llama.cpp model server for the ``real_server`` tests: the shared ``tinyllm`` tool.

``tools/tinyllm/serve.sh`` (in the shared folder beside the repository, or
``$REDE_TINYLLM_DIR``) builds llama-cpp-python from source, about 5 minutes once per machine,
writes a tiny random-weight GGUF and serves it. Its folder is read-only, so it is copied into a
work folder under the system's temporary directory, named by a hash of the tool's files: the
build (its venv) is kept there and reused by every later session, and a changed tool gets a
fresh folder. A file lock keeps two sessions from building into the same folder at once.

``python tests/tinyllm.py build`` builds it ahead of the tests (``.ci/run`` does), and
``python tests/tinyllm.py serve [PORT]`` starts a server by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT_S = 1800
TOOL_FILES = ("serve.sh", "make_tiny_gguf.py", "check.py")


class Unavailable(RuntimeError):
    """The tool is missing or its build failed; the message says which and why."""


def source_dir() -> Path:
    env = os.environ.get("REDE_TINYLLM_DIR")
    return Path(env) if env else REPO.parent / "shared" / "tools" / "tinyllm"


def work_dir() -> Path:
    """The writable copy of the tool, where its venv and model are kept between sessions."""
    src = source_dir()
    missing = [name for name in TOOL_FILES if not (src / name).is_file()]
    if missing:
        raise Unavailable(
            f"the tinyllm tool is not at {src} (missing {', '.join(missing)}); set "
            "REDE_TINYLLM_DIR to the folder that holds serve.sh"
        )
    digest = hashlib.sha256()
    for name in TOOL_FILES:
        digest.update((src / name).read_bytes())
    work = Path(tempfile.gettempdir()) / f"rede-tinyllm-{digest.hexdigest()[:12]}"
    work.mkdir(exist_ok=True)
    for name in TOOL_FILES:
        target = work / name
        if not target.exists():
            shutil.copy2(src / name, target)
            target.chmod(0o755)
    return work


@contextlib.contextmanager
def _locked(work: Path) -> Iterator[None]:
    with open(work / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _serve_sh(work: Path, *args: str, timeout: float = BUILD_TIMEOUT_S) -> str:
    try:
        done = subprocess.run(
            ["bash", str(work / "serve.sh"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise Unavailable(f"serve.sh {' '.join(args)} took over {timeout:.0f} s") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout)[-1500:]
        raise Unavailable(f"serve.sh {' '.join(args)} failed ({done.returncode}):\n{tail}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def is_built(work: Path) -> bool:
    python = work / "venv" / "bin" / "python"
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import llama_cpp.server, gguf, openai"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0 and (work / "tiny.gguf").exists()


def serve(port: int) -> tuple[str, float]:
    """Start a server on ``port`` (building first if needed): ``(base_url, build_s)``."""
    work = work_dir()
    with _locked(work):
        built = is_built(work)
        start = time.perf_counter()
        url = _serve_sh(work, str(port))
        build_s = 0.0 if built else time.perf_counter() - start
    if not url.startswith("http://127.0.0.1:"):
        raise Unavailable(f"serve.sh printed {url!r}, not a loopback base URL")
    return url, build_s


def stop(port: int) -> None:
    with contextlib.suppress(Unavailable):
        _serve_sh(work_dir(), "stop", str(port), timeout=30)


def log_tail(port: int, chars: int = 2000) -> str:
    path = work_dir() / f"server.{port}.log"
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "build"
    if command == "build":
        work = work_dir()
        if is_built(work):
            print(f"tinyllm already built in {work}")
            return 0
        start = time.perf_counter()
        port = free_port()
        serve(port)
        stop(port)
        print(f"tinyllm built in {work} in {time.perf_counter() - start:.0f} s")
        return 0
    if command == "serve":
        url, _ = serve(int(argv[1]) if len(argv) > 1 else 8011)
        print(url)
        return 0
    print("usage: python tests/tinyllm.py [build | serve [PORT]]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
