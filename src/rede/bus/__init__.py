"""Buses: one small interface, interchangeable implementations (``memory``, ``redis``)."""

from __future__ import annotations

from rede.bus._base import Backlog, Bus, BusOptions, BusStats, Delivery, StoredCard, Subscription
from rede.bus.memory import MemoryBus
from rede.errors import ConfigError
from rede.extras import require


def bus_from_url(url: str | None, options: BusOptions | None = None) -> Bus:
    """``memory://`` (or None) for the in-process bus; ``redis://`` / ``rediss://`` for Redis,
    ``redis+cluster://`` / ``rediss+cluster://`` (any node) for a Redis Cluster."""
    if not url or url.startswith("memory:"):
        return MemoryBus(options)
    if url.startswith(("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")):
        require("a redis:// bus", "redis", "redis")
        from rede.bus.redis import RedisBus

        return RedisBus(url, options)
    raise ConfigError(f"unknown bus URL {url!r}: use memory://, redis://HOST:PORT/DB or redis+cluster://HOST:PORT")


__all__ = [
    "Backlog",
    "Bus",
    "BusOptions",
    "BusStats",
    "Delivery",
    "MemoryBus",
    "StoredCard",
    "Subscription",
    "bus_from_url",
]
