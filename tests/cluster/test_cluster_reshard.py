"""A project's slot moves to another master in the middle of a sale (what
`redis-cli --cluster reshard` does: MIGRATE of its keys in batches): requests meet
ASK, TRYAGAIN and then MOVED, the sale goes on on the new master; no code twice,
exact counters. With CODEPOOL_REPLICA_ACKS=1, so the EVALSHA+WAIT pairs follow too."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from contextlib import AsyncExitStack

import pytest
from loadtest.cluster import LocalCluster, move_slot
from redis.asyncio import Redis
from redis.crc import key_slot

from codepool import keys
from tests.apphelpers import app_client, app_workers, make_pool, make_tenant

pytestmark = pytest.mark.cluster

CLIENTS = 30
EACH = 10


async def test_a_slot_moved_mid_sale(
    redis_cluster: LocalCluster, cluster_redis: Redis, cluster_url: str
) -> None:
    async with app_client(cluster_redis) as setup:
        t = await make_tenant(setup, "moving")
        pool = await make_pool(setup, t, [f"M-{i:04d}" for i in range(1000)])
    slot = key_slot(keys.pool(t.id, pool["id"]).encode())
    source = redis_cluster.master_of_slot(slot)
    target = next(p for p in redis_cluster.master_ports() if p != source)
    issue = f"/v1/projects/{t.id}/pools/{pool['id']}/issue"
    told: list[str] = []
    refused: Counter[str] = Counter()
    started = asyncio.Event()
    try:
        async with AsyncExitStack() as stack:
            workers = await app_workers(
                stack, cluster_url, count=2, notify=False, replica_acks=1, replica_acks_timeout=2
            )

            async def buyer(c: int, rounds: range = range(EACH)) -> None:
                for k in rounds:
                    headers = {**t.admin, "Idempotency-Key": f"m{c}-{k}"}
                    deadline = time.monotonic() + 30
                    while True:
                        r = await workers[(c + k) % 2].post(
                            issue, json={"user_id": f"u{c}"}, headers=headers
                        )
                        if r.status_code == 200:
                            told.extend(x["code"] for x in r.json()["codes"])
                            if len(told) >= CLIENTS * EACH // 5:
                                started.set()
                            break
                        assert r.status_code == 503, r.text
                        refused[r.json()["error"]["code"]] += 1
                        assert time.monotonic() < deadline, "the sale did not go on"
                        await asyncio.sleep(0.02)

            during: list[int] = []

            async def reshard() -> int:
                await started.wait()
                during.append(len(told))
                n = await asyncio.to_thread(move_slot, redis_cluster, slot, target)
                during.append(len(told))
                return n

            moving = asyncio.create_task(reshard())
            await asyncio.gather(*(buyer(c) for c in range(CLIENTS)))
            moved = await moving
            # And after: every instance's slot map is stale until a MOVED corrects it.
            await asyncio.gather(*(buyer(c, range(EACH, EACH + 2)) for c in range(CLIENTS)))
            p = (
                await workers[0].get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)
            ).json()
    finally:
        # The session cluster goes on: the slot back where it was, for the next tests.
        redis_cluster.flushall()
        await asyncio.to_thread(move_slot, redis_cluster, slot, source)
    assert moved > 0 and redis_cluster.master_of_slot(slot) == source
    assert len(told) == CLIENTS * (EACH + 2) == len(set(told))
    assert (p["assigned"], p["available"], p["total"]) == (len(told), 1000 - len(told), 1000)
    assert during[1] > during[0]  # sales went on while the slot was half moved
    assert set(refused) <= {"redis_unavailable"}
