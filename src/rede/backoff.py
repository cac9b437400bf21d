"""The one backoff rule: waits that double from a first wait up to a cap.

Model calls (:class:`rede.models._retry.RetryPolicy`), Redis reconnects
(:mod:`rede.bus.redis`) and agent process restarts (:class:`rede.scaling.supervisor.Backoff`)
each decide *when* to wait; how long is always this."""

from __future__ import annotations


def doubling(first_s: float, n: int, cap_s: float) -> float:
    """The ``n``-th wait (0-based): ``first_s * 2**n``, at most ``cap_s``."""
    return min(first_s * 2.0 ** min(max(n, 0), 64), cap_s)


__all__ = ["doubling"]
