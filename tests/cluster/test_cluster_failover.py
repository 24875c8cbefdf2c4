"""A master dies mid-sale (kill -9) with CODEPOOL_REPLICA_ACKS=1: its replica is
promoted by the cluster itself (no CLUSTER FAILOVER), the sale resumes once the shard
has a replica again (the dead node restarted, empty, rejoins as one), no code a client
was told is handed out again, and that shard's counters are exact."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import redis
from loadtest.cluster import LocalCluster
from redis.crc import key_slot

from codepool import keys
from codepool.redisclient import connect
from codepool.rediscluster import scan_every_master
from codepool.store.base import text
from tests.apphelpers import app_client, app_workers, make_pool, make_tenant

pytestmark = pytest.mark.cluster

CLIENTS = 40
EACH = 12


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster of its own: this test kills one of its masters."""
    with LocalCluster(tmp_path / "cluster") as cluster:
        yield cluster


async def test_a_master_killed_mid_sale_loses_no_told_code(own_cluster: LocalCluster) -> None:
    url = own_cluster.url
    setup_client = connect(url)
    try:
        async with app_client(setup_client) as setup:
            t = await make_tenant(setup, "sale")
            pool = await make_pool(setup, t, [f"F-{i:05d}" for i in range(2000)])
    finally:
        await setup_client.aclose()
    slot = key_slot(keys.pool(t.id, pool["id"]).encode())
    victim = own_cluster.master_of_slot(slot)
    issue = f"/v1/projects/{t.id}/pools/{pool['id']}/issue"
    told: list[str] = []
    quarter = asyncio.Event()  # a quarter of the sale is told: time to kill
    refused: Counter[str] = Counter()
    async with AsyncExitStack() as stack:
        workers = await app_workers(
            stack, url, count=2, notify=False, replica_acks=1, replica_acks_timeout=0.5
        )

        async def buyer(c: int) -> None:
            for k in range(EACH):
                headers = {**t.admin, "Idempotency-Key": f"buyer{c}-{k}"}
                deadline = time.monotonic() + 40
                while True:  # a 503 is retried with the same key, as a client should
                    r = await workers[(c + k) % 2].post(
                        issue, json={"user_id": f"b{c}"}, headers=headers
                    )
                    if r.status_code == 200:
                        told.extend(x["code"] for x in r.json()["codes"])
                        if len(told) >= CLIENTS * EACH // 4:
                            quarter.set()
                        break
                    assert r.status_code == 503, r.text
                    refused[r.json()["error"]["code"]] += 1
                    assert time.monotonic() < deadline, "the sale did not resume"
                    await asyncio.sleep(0.05)

        async def failover() -> None:
            await quarter.wait()
            own_cluster.kill(victim)
            before = len(told)
            promoted = await asyncio.to_thread(own_cluster.wait_promoted, victim, slot)
            assert promoted != victim
            # The promoted replica has no replica of its own: WAIT 1 cannot be met, so
            # nothing is told meanwhile (hand-outs that only one node holds).
            await asyncio.sleep(0.6)
            assert len(told) <= before + CLIENTS, "codes told with no replica holding them"
            await asyncio.to_thread(own_cluster.restart, victim)
            await asyncio.to_thread(own_cluster.wait_ok)

        await asyncio.gather(failover(), *(buyer(c) for c in range(CLIENTS)))
        p = (
            await workers[0].get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)
        ).json()
        direct = connect(url)
        try:
            avail = await direct.lrange(keys.pool_available(t.id, pool["id"]), 0, -1)
            left = [text(c) for c in avail]
        finally:
            await direct.aclose()
    assert len(told) == CLIENTS * EACH
    assert len(set(told)) == len(told), "a told code was handed out again"
    assert not set(told) & set(left), "a told code is back among the available ones"
    # Exact counters of that shard: every logical purchase took exactly one code.
    assert (p["assigned"], p["available"], p["total"]) == (len(told), 2000 - len(told), 2000)
    assert len(left) == p["available"]
    assert refused  # the failover was felt: 503s (redis_unavailable / not_replicated)
    assert set(refused) <= {"redis_unavailable", "not_replicated"}


async def test_scan_every_master_survives_a_master_lost_mid_scan(
    own_cluster: LocalCluster,
) -> None:
    """The master being scanned dies: its successor (the promoted replica) is scanned
    from the start; every key comes (some twice), none is missed."""
    names = [f"{keys.PREFIX}:{{p{i}}}:k" for i in range(3000)]
    owner = own_cluster.slot_owners()
    for port in own_cluster.master_ports():
        mine = [n for n in names if owner[key_slot(n.encode())] == port]
        with redis.Redis(port=port) as direct:  # one connection: WAIT counts its writes
            pipe = direct.pipeline(transaction=False)
            for name in mine:
                pipe.set(name, 1)
            pipe.execute()
            assert direct.wait(1, 2000) == 1  # its replica has them: they survive
    client = connect(own_cluster.url)
    found: list[bytes] = []
    try:
        batches = scan_every_master(client, f"{keys.PREFIX}:*", 50)
        found += await anext(batches)
        first = min(own_cluster.master_ports(), key=lambda p: f"127.0.0.1:{p}")
        own_cluster.kill(first)  # the one being scanned (masters go in name order)
        async for batch in batches:
            found += batch
    finally:
        await client.aclose()
    assert {text(k) for k in found} == set(names)
