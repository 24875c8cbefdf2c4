"""Tills racing on a real redis-server."""

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
    make_tenant,
)

pytestmark = pytest.mark.real


async def test_twenty_tills_one_code_one_winner(real_redis: Redis, redis_server_url: str) -> None:
    async with app_client(real_redis) as setup:
        t = await make_tenant(setup)
        pool = await make_pool(setup, t, [f"T-{i}" for i in range(10)])
        issued = await setup.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={"count": 10}, headers=t.admin
        )
        codes = [c["code"] for c in issued.json()["codes"]]
    async with AsyncExitStack() as stack:
        workers = await app_workers(stack, redis_server_url)
        # 20 tills on each of the 10 codes, all at once.
        responses = await asyncio.gather(
            *(
                workers[i % WORKERS].post(
                    f"/v1/projects/{t.id}/codes/redeem", json={"code": code}, headers=t.pos
                )
                for code in codes
                for i in range(20)
            )
        )
        p = (
            await workers[0].get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)
        ).json()
    wins = Counter(r.json()["code"] for r in responses if r.status_code == 200)
    assert wins == dict.fromkeys(codes, 1)
    assert Counter(r.status_code for r in responses) == {200: 10, 409: 190}
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
        "already_redeemed"
    }
    assert (p["assigned"], p["redeemed"], p["available"]) == (0, 10, 0)


async def test_redeem_and_release_race_on_one_code(
    real_redis: Redis, redis_server_url: str
) -> None:
    """A till redeeming while an admin releases: exactly one of them wins, counts stay exact."""
    async with app_client(real_redis) as setup:
        t = await make_tenant(setup)
        pool = await make_pool(setup, t, [f"Q-{i}" for i in range(30)])
        await setup.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={"count": 30}, headers=t.admin
        )
    async with AsyncExitStack() as stack:
        workers = await app_workers(stack, redis_server_url)
        calls = []
        for i in range(30):
            code = {"code": f"Q-{i}"}
            calls.append(
                workers[i % WORKERS].post(
                    f"/v1/projects/{t.id}/codes/redeem", json=code, headers=t.pos
                )
            )
            calls.append(
                workers[(i + 1) % WORKERS].post(
                    f"/v1/projects/{t.id}/codes/release", json=code, headers=t.admin
                )
            )
        responses = await asyncio.gather(*calls)
        p = (
            await workers[0].get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)
        ).json()
    for redeem, release in zip(responses[::2], responses[1::2], strict=True):
        # Whichever runs first wins; the other finds the code redeemed or not issued.
        assert sorted([redeem.status_code, release.status_code]) == [200, 409], (
            redeem.text,
            release.text,
        )
    redeemed = sum(r.status_code == 200 for r in responses[::2])
    released = sum(r.status_code == 200 for r in responses[1::2])
    assert redeemed + released == 30
    assert (p["redeemed"], p["available"], p["assigned"]) == (redeemed, released, 0)
