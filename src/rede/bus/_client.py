"""The redis-py client of a :class:`~rede.bus.redis.RedisBus`: one server, or a Redis Cluster.

``redis+cluster://host:port`` (``rediss+cluster://`` with TLS) names any node of a cluster; the
client learns the others from it and follows slots as they move (a failover, a resharding).
On a cluster every stream key carries its topic as a hash tag (``ns{rede.task.write}``), so
whatever Rede keeps for one topic lives in one slot, and topics spread over the nodes.
A plain ``redis://`` URL that reaches a cluster node gets a clear error naming the scheme
(:func:`cluster_hint`), not a stream of ``MOVED`` replies.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import MovedError, ResponseError

from rede.errors import BusError
from rede.protocol.topics import Topic

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0] in CLUSTER_SCHEMES


def client(url: str, *, connect_timeout_s: float) -> Any:
    """A client for ``url``: :class:`redis.asyncio.Redis`, or a ``RedisCluster`` for a
    ``redis+cluster://`` URL. No socket read timeout and no retries of redis-py's own: the
    bus retries (see :mod:`rede.bus._reconnect`)."""
    options: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout_s,
        "socket_timeout": None,
        "socket_keepalive": True,
        "client_name": "rede",
    }
    scheme, rest = url.split("://", 1)
    if scheme in CLUSTER_SCHEMES:
        return RedisCluster.from_url(f"{CLUSTER_SCHEMES[scheme]}://{rest}", **options)
    return aioredis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)


def stream_key(namespace: str, topic: Topic, cluster: bool) -> str:
    """The key of a topic's stream; on a cluster the topic is its hash tag."""
    return f"{namespace}{{{topic}}}" if cluster else namespace + str(topic)


async def server_time(r: Any, key: str) -> float:
    """The time on the server that holds ``key``, in seconds (a stream's age is measured
    against its own server's clock)."""
    if isinstance(r, RedisCluster):
        secs, micros = await r.execute_command("TIME", target_nodes=r.get_node_from_key(key))
    else:
        secs, micros = await r.time()
    return float(secs) + float(micros) / 1e6


def cluster_hint(url: str, exc: ResponseError) -> BusError | None:
    """The error to raise for a ``MOVED`` reply on a single-server URL: it is a cluster."""
    moved = isinstance(exc, MovedError) or str(exc).startswith("MOVED")
    if not moved or is_cluster_url(url):
        return None
    host = url.split("://", 1)[-1]
    return BusError(
        f"redis://{host} is a node of a Redis Cluster (it answered MOVED): use "
        f"redis+cluster://{host} as the bus URL"
    )
