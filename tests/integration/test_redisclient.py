"""The app's Redis client packs commands with hiredis and still speaks every command."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from codepool.redisclient import make_client
from codepool.redisconn import HiredisUnixConnection
from codepool.settings import load_settings

pytestmark = pytest.mark.real


async def test_commands_round_trip_through_hiredis_packing(
    real_redis: Redis, redis_server_url: str
) -> None:
    client = make_client(load_settings({}, redis_url=redis_server_url, redis_max_connections=2))
    try:
        pool = client.connection_pool
        assert pool.connection_class is HiredisUnixConnection  # the suite's server: a socket
        # Every type a handler sends: str (unicode too), bytes, int, float (repr kept).
        await client.rpush("k", "é", b"\xff", 7, 0.1, 1795315306.7481654)
        assert await client.lrange("k", 0, -1) == [
            "é".encode(),
            b"\xff",
            b"7",
            b"0.1",
            b"1795315306.7481654",
        ]
        # A two-word command name and a memoryview go through redis-py's own packer.
        sha = await client.script_load("return ARGV[1]")
        assert await client.evalsha(sha, 0, memoryview(b"mv")) == b"mv"
        assert await client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        # Pipelines pack each command the same way.
        async with client.pipeline(transaction=True) as pipe:
            pipe.set("a", 1)
            pipe.incrbyfloat("a", 0.5)
            pipe.get("a")
            assert await pipe.execute() == [True, 1.5, b"1.5"]
    finally:
        await client.aclose()
