"""Redis Sentinel: the master a set of sentinels names, its connections packing with hiredis."""

from __future__ import annotations

import asyncio
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.connection import (
    AbstractConnection,
)
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from codepool.redisconn import HiredisPacking

# -- Redis Sentinel ---------------------------------------------------------------------
#
# redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[?db=N]
# (rediss+sentinel:// for TLS to the master): the sentinels' addresses (port 26379 if
# none) and the monitored service's name. The password is the master's; the sentinels
# are asked without one unless ?sentinel_password= gives theirs. redis-py's asyncio
# Sentinel finds the master, and again after a failover (a connection error makes the
# pool ask the sentinels anew).

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")


class HiredisSentinelConnection(HiredisPacking, SentinelManagedConnection):
    """A connection to whatever the sentinels name master, packing with hiredis."""


class _WaitingSentinelPool(SentinelConnectionPool):
    """redis-py's sentinel pool raises when all its connections are busy; this one
    waits, as the single-node client's blocking pool does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._slots = asyncio.Semaphore(self.max_connections)

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        await self._slots.acquire()
        try:
            connection: AbstractConnection = await super().get_connection(  # type: ignore[no-untyped-call]
                *args, **kwargs
            )
        except BaseException:
            self._slots.release()
            raise
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        try:
            await super().release(connection)
        finally:
            self._slots.release()


class _SentinelRedis(Redis):
    """The master's client; closing it closes the clients of the sentinels too."""

    sentinels: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinels is not None:
            for client in self.sentinels.sentinels:
                await client.aclose()


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SENTINEL_SCHEMES


def make_sentinel(url: str, max_connections: int, **extra: Any) -> Redis:
    """The client of the master that the sentinels in ``url`` name."""
    parts = urlsplit(url)
    netloc = parts.netloc
    username = password = None
    if "@" in netloc:
        credentials, netloc = netloc.rsplit("@", 1)
        user, _, secret = credentials.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    hosts: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "26379")
        hosts.append((host, int(port)))
    service = unquote(parts.path.strip("/"))
    if not service or not hosts:
        raise ValueError("a sentinel URL names its sentinels and the service: see docs/cluster.md")
    query = dict(parse_qsl(parts.query))
    tls = parts.scheme.lower().startswith("rediss")
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5}
    if query.get("sentinel_password"):
        sentinel_kwargs["password"] = query["sentinel_password"]
    # cast: redis-py 8.1 leaves Sentinel.__init__ untyped, 8.2 types it.
    sentinel: Sentinel = cast(Any, Sentinel)(hosts, sentinel_kwargs=sentinel_kwargs)
    client: _SentinelRedis = sentinel.master_for(
        service,
        redis_class=_SentinelRedis,
        connection_pool_class=_WaitingSentinelPool,
        connection_class=SentinelManagedSSLConnection if tls else HiredisSentinelConnection,
        max_connections=max_connections,
        username=username,
        password=password,
        db=int(query.get("db", 0)),
        **extra,
    )
    client.sentinels = sentinel
    return cast(Redis, client)
