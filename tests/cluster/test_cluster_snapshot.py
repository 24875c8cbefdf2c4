"""Snapshots and restore on Redis Cluster: one snapshot holds every shard's projects, and
a restore after every master lost its data gives back exactly what each shard held
(plus the hand-outs only the journal knows)."""

from __future__ import annotations

from pathlib import Path

import pytest
from loadtest.cluster import LocalCluster
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from codepool import keys
from codepool.durability import snapshot, snapshot_dir, startup
from codepool.durability.restore import has_state, restore
from tests.apphelpers import (
    app_client,
    journaled_settings,
    make_pool,
    make_reward,
    make_tenant,
    user_token,
)
from tests.statehelpers import dump

pytestmark = pytest.mark.cluster

PROJECTS = 6


async def test_a_snapshot_and_journal_restore_every_shard(
    cluster_redis: Redis, redis_cluster: LocalCluster, tmp_path: Path
) -> None:
    assert isinstance(cluster_redis, RedisCluster)
    shops = []
    async with app_client(cluster_redis, notify=False) as c:
        for n in range(PROJECTS):
            t = await make_tenant(c, f"snap{n}")
            pool = await make_pool(c, t, [f"S{n}-{i:03d}" for i in range(60)])
            reward = await make_reward(c, t, pool["id"], per_user_limit=2)
            for u in range(3):
                r = await c.post(
                    f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase",
                    headers={**user_token(t, f"fan{u}"), "Idempotency-Key": f"k{u}"},
                )
                assert r.status_code == 201, r.text
            shops.append((t, pool))
    masters = {cluster_redis.get_node_from_key(keys.pool(t.id, p["id"])).name for t, p in shops}
    assert len(masters) == 3, "the projects must spread over every master"
    info = await snapshot.take_snapshot(cluster_redis, snapshot_dir.snapshots_dir(tmp_path))
    assert info.codes == PROJECTS * 57  # the available ones

    # After the snapshot: hand-outs only the journal holds, on every shard.
    told: dict[str, set[str]] = {}
    async with app_client(cluster_redis, journal=True, data_dir=str(tmp_path), notify=False) as c:
        for t, pool in shops:
            r = await c.post(
                f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={"count": 5}, headers=t.admin
            )
            assert r.status_code == 200, r.text
            told[t.id] = {x["code"] for x in r.json()["codes"]}
    before = await dump(cluster_redis)
    before.pop(keys.EPOCH.encode(), None)

    redis_cluster.flushall()  # every master loses everything
    assert not await has_state(cluster_redis)
    records = startup.journal_since(journaled_settings("unused", tmp_path), info.path)
    assert len(records) == PROJECTS
    await restore(cluster_redis, info.path, records)

    after = await dump(cluster_redis)
    assert after.pop(keys.EPOCH.encode())[0] == "string"
    assert after.keys() == before.keys()
    for t, pool in shops:
        hash_ = await cluster_redis.hgetall(keys.pool(t.id, pool["id"]))
        assert (hash_[b"total"], hash_[b"assigned"]) == (b"60", b"8")
        issued = await cluster_redis.hkeys(keys.issued(t.id))
        assert told[t.id] <= {k.decode() for k in issued}
        available = await cluster_redis.lrange(keys.pool_available(t.id, pool["id"]), 0, -1)
        assert not told[t.id] & {a.decode() for a in available}
