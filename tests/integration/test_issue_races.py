"""No double issue under concurrency: several app instances (as workers would be),
hundreds of requests in flight, one real redis-server."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.apphelpers import (
    WORKERS,
    Client,
    app_client,
    app_workers,
    make_pool,
    make_tenant,
)

pytestmark = pytest.mark.real


async def test_hundreds_in_flight_never_share_a_code(
    real_redis: Redis, redis_server_url: str
) -> None:
    async with app_client(real_redis) as setup:
        t = await make_tenant(setup)
        pool = await make_pool(setup, t, [f"CODE-{i:05d}" for i in range(3000)])
    url = f"/v1/projects/{t.id}/pools/{pool['id']}/issue"
    async with AsyncExitStack() as stack:
        workers = await app_workers(stack, redis_server_url)

        async def one(i: int) -> list[str]:
            r = await workers[i % WORKERS].post(
                url, json={"count": 1 + i % 5, "user_id": f"u{i}"}, headers=t.admin
            )
            assert r.status_code == 200, r.text
            return [c["code"] for c in r.json()["codes"]]

        batches = await asyncio.gather(*(one(i) for i in range(600)))
        issued = [code for batch in batches for code in batch]
        assert len(issued) == sum(1 + i % 5 for i in range(600)) == 1800
        assert len(set(issued)) == len(issued), "a code was handed out twice"
        pool_now = (
            await workers[0].get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)
        ).json()
        assert (
            pool_now["assigned"] == 1800
            and pool_now["available"] == 1200
            and pool_now["total"] == 3000
        )
        # Coalescing: far fewer script calls than requests.
        calls = sum(_issuer(w).calls for w in workers)
        served = sum(_issuer(w).requests for w in workers)
        assert served == 600 and calls < served


def _issuer(client: Client) -> Any:
    return client.app.state.services.issuer


async def test_exactly_available_requests_win_the_last_codes(
    real_redis: Redis, redis_server_url: str
) -> None:
    async with app_client(real_redis) as setup:
        t = await make_tenant(setup)
        pool = await make_pool(setup, t, [f"LAST-{i}" for i in range(50)])
    url = f"/v1/projects/{t.id}/pools/{pool['id']}/issue"
    async with AsyncExitStack() as stack:
        workers = await app_workers(stack, redis_server_url)
        responses = await asyncio.gather(
            *(
                workers[i % WORKERS].post(url, json={"user_id": f"u{i}"}, headers=t.admin)
                for i in range(400)
            )
        )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 50, 409: 350}
    codes = [r.json()["codes"][0]["code"] for r in responses if r.status_code == 200]
    assert sorted(codes) == sorted(f"LAST-{i}" for i in range(50))
    assert all(
        r.json()["error"]["code"] == "pool_exhausted" for r in responses if r.status_code == 409
    )


async def test_all_or_nothing_bulk_requests_race(real_redis: Redis, redis_server_url: str) -> None:
    async with app_client(real_redis) as setup:
        t = await make_tenant(setup)
        pool = await make_pool(setup, t, [f"B-{i}" for i in range(1000)])
    url = f"/v1/projects/{t.id}/pools/{pool['id']}/issue"
    async with AsyncExitStack() as stack:
        workers = await app_workers(stack, redis_server_url)
        responses = await asyncio.gather(
            *(
                workers[i % WORKERS].post(url, json={"count": 300}, headers=t.admin)
                for i in range(10)
            )
        )
        p = (
            await workers[0].get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)
        ).json()
    ok = [r for r in responses if r.status_code == 200]
    assert len(ok) == 3  # 3 x 300 fit in 1000; nobody gets a partial batch
    assert all(len(r.json()["codes"]) == 300 for r in ok)
    assert (p["available"], p["assigned"]) == (100, 900)


async def test_retries_with_one_key_take_one_code(real_redis: Redis, redis_server_url: str) -> None:
    async with app_client(real_redis) as setup:
        t = await make_tenant(setup)
        pool = await make_pool(setup, t, [f"I-{i}" for i in range(100)])
    url = f"/v1/projects/{t.id}/pools/{pool['id']}/issue"
    async with AsyncExitStack() as stack:
        workers = await app_workers(stack, redis_server_url)
        # 30 retries of the same request race each other across workers.
        headers = {**t.admin, "Idempotency-Key": "checkout-7"}
        responses = await asyncio.gather(
            *(workers[i % WORKERS].post(url, json={"count": 2}, headers=headers) for i in range(30))
        )
        p = (
            await workers[0].get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)
        ).json()
    bodies = {tuple(c["code"] for c in r.json()["codes"]) for r in responses}
    assert {r.status_code for r in responses} == {200} and len(bodies) == 1
    assert p["assigned"] == 2
