"""The app's Redis client, whatever the deployment: one Redis (a blocking pool of
hiredis-packing connections), a Redis Cluster (rediscluster.py) or a master behind
Redis Sentinel (redissentinel.py), chosen from CODEPOOL_REDIS_URL."""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import (
    Connection,
    parse_url,
)

from codepool.rediscluster import is_cluster_url, make_cluster
from codepool.redisconn import PACKING
from codepool.redissentinel import is_sentinel_url, make_sentinel
from codepool.settings import Settings


def make_client(settings: Settings) -> Redis:
    """A client over a blocking pool: under a burst, requests wait for a connection
    instead of failing with 'too many connections'. A cluster node's URL gives a cluster
    client (below), typed as Redis."""
    if settings.redis_url is None:
        raise RuntimeError("CODEPOOL_REDIS_URL is not set (codepool serve sets it)")
    if is_sentinel_url(settings.redis_url):
        return make_sentinel(settings.redis_url, settings.redis_max_connections)
    if is_cluster_url(settings.redis_url):
        return cast(Redis, make_cluster(settings.redis_url, settings.redis_max_connections))
    options: dict[str, Any] = dict(parse_url(settings.redis_url))
    kind = options.get("connection_class", Connection)
    options["connection_class"] = PACKING.get(kind, kind)  # TLS keeps redis-py's packer
    pool = BlockingConnectionPool(
        max_connections=settings.redis_max_connections, timeout=20, **options
    )
    # from_pool: closing the client also closes the pool and its connections.
    return Redis.from_pool(pool)


def connect(url: str, max_connections: int | None = None, **extra: Any) -> Redis:
    """A client for ``url``: a cluster client when the node is part of a cluster (typed
    as Redis: RedisCluster speaks the same commands; where they differ, the caller asks
    :func:`is_cluster`), else redis-py's own (``extra`` goes to either). Blocks for one
    round trip (at start)."""
    if is_sentinel_url(url):
        return make_sentinel(url, max_connections or 64, **extra)
    if is_cluster_url(url):
        return cast(Redis, make_cluster(url, max_connections or 64, **extra))
    if max_connections is not None:
        extra["max_connections"] = max_connections
    return Redis.from_url(url, **extra)
