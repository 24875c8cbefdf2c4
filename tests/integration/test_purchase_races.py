"""Purchases under load on a real redis-server, across several app instances."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AsyncExitStack

import pytest
from redis.asyncio import Redis

from tests.apphelpers import (
    WORKERS,
    app_client,
    app_workers,
    make_pool,
    make_reward,
    make_tenant,
    user_token,
)

pytestmark = pytest.mark.real


async def test_many_users_race_for_fewer_codes(real_redis: Redis, redis_server_url: str) -> None:
    async with app_client(real_redis) as setup:
        t = await make_tenant(setup)
        pool = await make_pool(
            setup, t, [f"FLASH-{i:03d}" for i in range(120)], low_stock_thresholds=[10]
        )
        reward = await make_reward(setup, t, pool["id"])
    url = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
    async with AsyncExitStack() as stack:
        workers = await app_workers(stack, redis_server_url)
        tokens = [user_token(t, f"user-{i}") for i in range(500)]
        responses = await asyncio.gather(
            *(workers[i % WORKERS].post(url, headers=tokens[i]) for i in range(500))
        )
        pool_now = (
            await workers[0].get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)
        ).json()
        events = (
            await workers[0].get(
                f"/v1/projects/{t.id}/events?type=REDEEMED_VOUCHER&count=1000", headers=t.admin
            )
        ).json()
        low = (
            await workers[0].get(f"/v1/projects/{t.id}/events?type=POOL_LOW", headers=t.admin)
        ).json()
    assert Counter(r.status_code for r in responses) == {201: 120, 409: 380}
    won = [r.json() for r in responses if r.status_code == 201]
    assert len({w["code"] for w in won}) == 120
    assert len({w["user_id"] for w in won}) == 120
    assert (pool_now["available"], pool_now["assigned"], pool_now["total"]) == (0, 120, 120)
    # Every hand-out is traced once, to the user who got it.
    assert sorted((e["user_id"], e["code"]) for e in events["data"]) == sorted(
        (w["user_id"], w["code"]) for w in won
    )
    assert len(low["data"]) == 1 and low["data"][0]["threshold"] == 10


async def test_one_user_racing_their_own_limit(real_redis: Redis, redis_server_url: str) -> None:
    async with app_client(real_redis) as setup:
        t = await make_tenant(setup)
        pool = await make_pool(setup, t, [f"L-{i}" for i in range(100)])
        reward = await make_reward(setup, t, pool["id"], per_user_limit=3)
    url = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
    token = user_token(t, "greedy")
    async with AsyncExitStack() as stack:
        # A race of one user's own purchases, not a rate: no rate limit in the way.
        workers = await app_workers(stack, redis_server_url, rate_limit_user=0)
        responses = await asyncio.gather(
            *(workers[i % WORKERS].post(url, headers=token) for i in range(60))
        )
        vouchers = (
            await workers[0].get(f"/v1/projects/{t.id}/users/greedy/vouchers", headers=token)
        ).json()
    assert Counter(r.status_code for r in responses) == {201: 3, 409: 57}
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
        "per_user_limit_reached"
    }
    assert vouchers["matched"] == 3


async def test_retried_purchase_takes_one_code(real_redis: Redis, redis_server_url: str) -> None:
    async with app_client(real_redis) as setup:
        t = await make_tenant(setup)
        pool = await make_pool(setup, t, [f"R-{i}" for i in range(10)])
        reward = await make_reward(setup, t, pool["id"])
    url = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
    headers = {**user_token(t, "ivy"), "Idempotency-Key": "tap-tap-tap"}
    async with AsyncExitStack() as stack:
        workers = await app_workers(stack, redis_server_url, rate_limit_user=0)
        responses = await asyncio.gather(
            *(workers[i % WORKERS].post(url, headers=headers) for i in range(40))
        )
        pool_now = (
            await workers[0].get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)
        ).json()
    assert {r.status_code for r in responses} == {201}
    assert len({r.text for r in responses}) == 1
    assert pool_now["assigned"] == 1
