"""The one backoff rule for what Rede retries by hand: waits that double from a first wait
up to a cap.

Redis reconnects (:mod:`rede.bus.redis`) and agent process restarts
(:class:`rede.scaling.restarts.Backoff`) each decide *when* to wait; how long is always
this. Model calls over the OpenAI protocol are retried by the ``openai`` client itself
(:mod:`rede.models.openai`), with its own doubling backoff and the server's ``Retry-After``."""

from __future__ import annotations


def doubling(first_s: float, n: int, cap_s: float) -> float:
    """The ``n``-th wait (0-based): ``first_s * 2**n``, at most ``cap_s``."""
    return min(first_s * 2.0 ** min(max(n, 0), 64), cap_s)


__all__ = ["doubling"]
