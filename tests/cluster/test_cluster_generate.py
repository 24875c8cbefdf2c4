"""Generation and duplicates=skip uploads on a Redis Cluster: the project's CRC-32s are
read with MGETs over its 2^15 index buckets (store/knowncodes.py), which one slot
serves because every bucket key carries the project's hash tag."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from codepool import keys
from codepool.store import generate as generate_store
from codepool.store import knowncodes
from tests.apphelpers import app_client, make_pool, make_tenant

pytestmark = pytest.mark.cluster


async def test_known_codes_path_on_a_cluster(
    cluster_redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(cluster_redis, RedisCluster)
    # The known-codes path for any size (it starts at 50,000 codes otherwise).
    monkeypatch.setattr(generate_store, "KNOWN_MIN", 0)
    monkeypatch.setattr(generate_store, "KNOWN_RATIO", 10**9)
    read = knowncodes.read
    reads: list[int] = []

    async def counted(client: Redis, project: str) -> knowncodes.Known | None:
        known = await read(client, project)
        reads.append(-1 if known is None else len(known))
        return known

    monkeypatch.setattr(knowncodes, "read", counted)
    async with app_client(cluster_redis) as c:
        t = await make_tenant(c, "gencluster")
        # A 2-character space of 4 codes, 3 of them held: only the fourth can be drawn.
        held = ["AA", "AB", "BA"]
        pool = await make_pool(c, t, held)
        r = await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/codes/generate",
            json={"count": 1, "pattern": "##", "charset": "AB", "max_guess_probability": 1},
            headers=t.admin,
        )
        assert r.status_code == 200, r.text
        assert reads == [3]  # every held code's CRC-32, read from the cluster
        got = await cluster_redis.lrange(keys.pool_available(t.id, pool["id"]), 0, -1)
        assert sorted(g.decode() for g in got) == ["AA", "AB", "BA", "BB"]
