"""Shared fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import fakeredis
import pytest
from loadtest.cluster import LocalCluster
from redis.asyncio import Redis

from codepool.embedded import EmbeddedRedis
from codepool.redisclient import connect

# ---------------------------------------------------------------------------------------
# Redis fixtures
#
# `redis` runs a test twice: on fakeredis (fast, isolated) and on one real redis-server
# shared by the whole session (the same binary `codepool serve` embeds). The real runs
# carry the `real` marker: `-m "not real"` skips them, and the server is then never started.
# ---------------------------------------------------------------------------------------

_REAL = pytest.param("real", id="real", marks=pytest.mark.real)


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real redis-server for the whole session (AOF off: nothing to keep)."""
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False) as server:
        yield server.url


async def _real_client(url: str) -> Redis:
    client = Redis.from_url(url)
    # Shared server: every test starts from an empty one.
    await client.flushall()
    return client


@pytest.fixture(name="redis", params=[pytest.param("fake", id="fake"), _REAL])
async def redis_client(request: pytest.FixtureRequest) -> AsyncIterator[Redis]:
    """A ``redis.asyncio.Redis`` (bytes replies) to an empty server, fake or real."""
    if request.param == "fake":
        # A FakeServer per test: no state shared between tests. Pretend to be the
        # Redis we embed (6.2), so a command it lacks fails here too.
        client: Redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), version=(6, 2))
    else:
        client = await _real_client(request.getfixturevalue("redis_server_url"))
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(params=[_REAL])
async def real_redis(redis_server_url: str) -> AsyncIterator[Redis]:
    """Only the real server (concurrency, durability); parametrized just for the marker."""
    client = await _real_client(redis_server_url)
    try:
        yield client
    finally:
        await client.aclose()


# ---------------------------------------------------------------------------------------
# Redis Cluster: 3 masters + 3 replicas of the bundled redis-server, made by
# `redis-cli --cluster create` once per session (~2 s), for the tests marked `cluster`
# (tests/cluster/). Every test starts from empty masters.
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture
def cluster_url(redis_cluster: LocalCluster) -> str:
    """URL of one node of the session's cluster, every master emptied."""
    redis_cluster.wait_ok()
    redis_cluster.flushall()
    return redis_cluster.url


@pytest.fixture
async def cluster_redis(cluster_url: str) -> AsyncIterator[Redis]:
    """The app's own kind of client (a RedisCluster typed as Redis) on the empty cluster."""
    client = connect(cluster_url)
    try:
        yield client
    finally:
        await client.aclose()


# ---------------------------------------------------------------------------------------
# App fixtures (below)
# ---------------------------------------------------------------------------------------
