"""CODEPOOL_REDIS_URL=redis+sentinel://…: codepool finds the master through the
sentinels, and again after they fail over (kill -9 of the master)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from loadtest.cluster import LocalSentinel

from codepool import redisclient, redissentinel
from tests.apphelpers import app_client, app_workers, make_pool, make_tenant

pytestmark = pytest.mark.cluster


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[LocalSentinel]:
    with LocalSentinel(tmp_path / "sentinel", replicas=2) as rig:
        yield rig


async def test_sales_follow_the_master_the_sentinels_name(sentinel: LocalSentinel) -> None:
    client = redisclient.connect(sentinel.url)
    try:
        pool_conn = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        assert isinstance(pool_conn, redissentinel.HiredisSentinelConnection)
        await client.connection_pool.release(pool_conn)
        async with app_client(client) as setup:
            t = await make_tenant(setup)
            pool = await make_pool(setup, t, [f"S-{i}" for i in range(100)])
    finally:
        await client.aclose()
    url = f"/v1/projects/{t.id}/pools/{pool['id']}/issue"
    told: list[str] = []
    refused = 0
    async with AsyncExitStack() as stack:
        (app,) = await app_workers(
            stack, sentinel.url, count=1, notify=False, replica_acks=1, replica_acks_timeout=0.5
        )

        async def buy(n: int) -> None:
            nonlocal refused
            for k in range(n):
                key = {**t.admin, "Idempotency-Key": f"k{len(told)}-{k}"}
                deadline = time.monotonic() + 30
                while True:
                    r = await app.post(url, json={"count": 1}, headers=key)
                    if r.status_code == 200:
                        told.extend(c["code"] for c in r.json()["codes"])
                        break
                    assert r.status_code == 503, r.text
                    refused += 1
                    assert time.monotonic() < deadline, "no sale after the failover"
                    await asyncio.sleep(0.1)

        await buy(10)
        old = sentinel.master()
        sentinel.kill(old)
        await buy(10)  # 503 until the sentinels promote a replica, then sales again
        assert await asyncio.to_thread(sentinel.wait_failover, old) != old
        p = (await app.get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)).json()
    assert refused > 0
    assert len(told) == 20 == len(set(told))
    assert (p["assigned"], p["available"]) == (20, 80)
