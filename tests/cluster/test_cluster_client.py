"""The cluster client itself (codepool.redisclient, rediscluster, redispipes): found from
any node, scripts in one slot with WAIT on that slot's master, and the one scan over
every master."""

from __future__ import annotations

import pytest
from loadtest.cluster import LocalCluster
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from codepool import keys, redisclient, rediscluster
from codepool.rediscluster import scan_every_master
from codepool.redisconn import HiredisConnection
from tests.apphelpers import app_client, make_pool, make_tenant

pytestmark = pytest.mark.cluster


async def test_any_node_gives_a_cluster_client_packing_with_hiredis(
    redis_cluster: LocalCluster, cluster_url: str
) -> None:
    assert rediscluster.is_cluster_url(cluster_url)
    for port in redis_cluster.ports:  # masters and replicas alike
        client = redisclient.connect(f"redis://127.0.0.1:{port}")
        try:
            assert isinstance(client, RedisCluster)
            await client.set(f"{{p{port}}}:x", 1)
            assert {n.connection_class for n in client.get_nodes()} == {HiredisConnection}
        finally:
            await client.aclose()


async def test_replica_acks_on_the_cluster_wait_on_the_slots_master(
    cluster_redis: Redis, cluster_url: str
) -> None:
    async with app_client(cluster_redis, replica_acks=1, replica_acks_timeout=2.0) as c:
        for n in range(4):
            t = await make_tenant(c, f"acked{n}")
            pool = await make_pool(c, t, [f"K{n}-{i}" for i in range(5)])
            r = await c.post(
                f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={"count": 2}, headers=t.admin
            )
            assert r.status_code == 200, r.text
            code = r.json()["codes"][0]["code"]
            r = await c.post(
                f"/v1/projects/{t.id}/codes/redeem", json={"code": code}, headers=t.pos
            )
            assert r.status_code == 200, r.text
    # WAIT for more replicas than a shard has: refused, as on one Redis.
    async with app_client(cluster_redis, replica_acks=2, replica_acks_timeout=0.05) as c:
        r = await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={"count": 1}, headers=t.admin
        )
        assert r.status_code == 503
        assert r.json()["error"]["details"] == {"acks": 1, "wanted": 2, "retry_after": 1}


async def test_scan_every_master_finds_every_key_once_per_shard(cluster_redis: Redis) -> None:
    assert isinstance(cluster_redis, RedisCluster)
    names = {f"{keys.PREFIX}:{{p{i}}}:k" for i in range(300)}
    async with cluster_redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.set(name, 1)
        await pipe.execute()
    masters = {cluster_redis.get_node_from_key(n).name for n in names}
    assert len(masters) == 3
    found = [
        k async for batch in scan_every_master(cluster_redis, f"{keys.PREFIX}:*", 50) for k in batch
    ]
    assert {k.decode() for k in found} == names


async def test_scan_every_master_on_one_redis(redis: Redis) -> None:
    await redis.mset({f"{keys.PREFIX}:{{a}}:{i}": 1 for i in range(120)} | {"other": 1})
    found = {k async for batch in scan_every_master(redis, f"{keys.PREFIX}:*", 50) for k in batch}
    assert len(found) == 120
