"""When to retry a failed model call, and how long to wait first.

Pure functions and one small policy object, so HTTP backends share one behaviour and tests
can check the delays without waiting for them."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from rede.backoff import doubling

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
"""Besides every 5xx: request timeout, conflict, too early, too many requests."""


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP status is worth another try (429, 5xx and a few transient 4xx)."""
    return status in RETRYABLE_STATUS or status >= 500


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait that a server asked for, or None.

    Reads ``retry-after-ms`` (OpenAI's) first, then ``retry-after`` as seconds or as an HTTP
    date. Unparsable or negative values count as absent."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            ms = float(value)
        except ValueError:
            ms = -1.0
        if ms >= 0:
            return ms / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return seconds if seconds >= 0 else None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with a little jitter, honouring a server's ``Retry-After``.

    Retry ``n`` (0 for the first) waits ``backoff_s * 2**n``, at most ``max_backoff_s``, plus
    up to ``jitter`` of itself at random. A ``Retry-After`` replaces that wait, capped at
    ``max_retry_after_s`` so a server cannot park a caller for minutes."""

    max_retries: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 60.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.backoff_s < 0 or self.max_backoff_s < 0 or self.max_retry_after_s < 0:
            raise ValueError("backoff times must be >= 0")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")

    def delay(
        self, retry: int, retry_after: float | None = None, *, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after_s)
        base = doubling(self.backoff_s, retry, self.max_backoff_s)
        return base * (1 + self.jitter * (rng or random).random())
