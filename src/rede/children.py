"""Child processes that do not outlive the process that started them.

``rede up`` runs each agent (and, without ``--bus``, an embedded Valkey) as a child process.
A clean stop ends them; a ``rede up`` killed with SIGKILL cannot, so on Linux each child asks
the kernel for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``), which an agent
answers with a clean stop. Elsewhere this is a no-op and a killed parent leaves its children
running, as any process would."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def dying_with_parent(*, new_session: bool = False) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` / ``asyncio.create_subprocess_exec``: the
    child gets SIGTERM when this process dies (Linux), and with ``new_session`` runs in a
    session of its own (a Ctrl-C at the terminal does not reach it). None when there is
    nothing to do. Call it in the thread that starts the child: Linux signals the child when
    the thread that forked it ends."""
    linux = sys.platform.startswith("linux")
    if not linux and not new_session:
        return None
    parent = os.getpid()

    def preexec() -> None:  # pragma: no cover - runs in the child, between fork and exec
        if new_session:
            os.setsid()
        if linux:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent:  # the parent died before the request: too late
                os.kill(os.getpid(), signal.SIGTERM)

    return preexec


__all__ = ["dying_with_parent"]
