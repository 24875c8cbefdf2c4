"""The race tests of tests/integration on Redis Cluster: many projects spread over the
three masters, several app instances, hundreds of requests in flight; no code twice,
exact counters (the checks of test_issue_races, test_purchase_races, test_pos_races)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from contextlib import AsyncExitStack

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from codepool import keys
from tests.apphelpers import (
    WORKERS,
    app_client,
    app_workers,
    make_pool,
    make_reward,
    make_tenant,
    user_token,
)

pytestmark = pytest.mark.cluster

PROJECTS = 9


async def test_hundreds_in_flight_over_many_projects_never_share_a_code(
    cluster_redis: Redis, cluster_url: str
) -> None:
    assert isinstance(cluster_redis, RedisCluster)
    tenants, pools = [], []
    async with app_client(cluster_redis) as setup:
        for n in range(PROJECTS):
            t = await make_tenant(setup, f"shop{n}")
            tenants.append(t)
            pools.append(await make_pool(setup, t, [f"P{n}-{i:04d}" for i in range(300)]))
    # The projects live on every master (the hash tag picks the slot).
    masters = {
        cluster_redis.get_node_from_key(keys.pool(t.id, p["id"])).name
        for t, p in zip(tenants, pools, strict=True)
    }
    assert len(masters) == 3
    async with AsyncExitStack() as stack:
        workers = await app_workers(stack, cluster_url, notify=False)

        async def one(i: int) -> tuple[int, list[str]]:
            n = i % PROJECTS
            r = await workers[i % WORKERS].post(
                f"/v1/projects/{tenants[n].id}/pools/{pools[n]['id']}/issue",
                json={"count": 1 + i % 3, "user_id": f"u{i}"},
                headers=tenants[n].admin,
            )
            assert r.status_code == 200, r.text
            return n, [c["code"] for c in r.json()["codes"]]

        results = await asyncio.gather(*(one(i) for i in range(720)))
        issued = [code for _, batch in results for code in batch]
        assert len(issued) == len(set(issued)), "a code was handed out twice"
        for n in range(PROJECTS):
            mine = [c for m, batch in results if m == n for c in batch]
            assert all(c.startswith(f"P{n}-") for c in mine)
            p = (
                await workers[0].get(
                    f"/v1/projects/{tenants[n].id}/pools/{pools[n]['id']}",
                    headers=tenants[n].admin,
                )
            ).json()
            assert (p["assigned"], p["available"], p["total"]) == (len(mine), 300 - len(mine), 300)
        calls = sum(w.app.state.services.issuer.calls for w in workers)
        assert calls < 720  # coalescing per pool still works


async def test_exactly_available_requests_win_the_last_codes(
    cluster_redis: Redis, cluster_url: str
) -> None:
    async with app_client(cluster_redis) as setup:
        t = await make_tenant(setup)
        pool = await make_pool(setup, t, [f"LAST-{i}" for i in range(50)])
    url = f"/v1/projects/{t.id}/pools/{pool['id']}/issue"
    async with AsyncExitStack() as stack:
        workers = await app_workers(stack, cluster_url, notify=False)
        responses = await asyncio.gather(
            *(
                workers[i % WORKERS].post(url, json={"user_id": f"u{i}"}, headers=t.admin)
                for i in range(300)
            )
        )
    assert Counter(r.status_code for r in responses) == {200: 50, 409: 250}
    codes = [r.json()["codes"][0]["code"] for r in responses if r.status_code == 200]
    assert sorted(codes) == sorted(f"LAST-{i}" for i in range(50))


async def test_many_users_race_for_fewer_codes_in_several_projects(
    cluster_redis: Redis, cluster_url: str
) -> None:
    setups = []
    async with app_client(cluster_redis) as setup:
        for n in range(3):
            t = await make_tenant(setup, f"flash{n}")
            pool = await make_pool(setup, t, [f"F{n}-{i:03d}" for i in range(60)])
            reward = await make_reward(setup, t, pool["id"])
            setups.append((t, pool, reward))
    async with AsyncExitStack() as stack:
        workers = await app_workers(stack, cluster_url, notify=False)
        calls = []
        for i in range(450):
            t, _, reward = setups[i % 3]
            calls.append(
                workers[i % WORKERS].post(
                    f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase",
                    headers=user_token(t, f"user-{i}"),
                )
            )
        responses = await asyncio.gather(*calls)
        for n, (t, pool, _) in enumerate(setups):
            mine = [r for i, r in enumerate(responses) if i % 3 == n]
            assert Counter(r.status_code for r in mine) == {201: 60, 409: 90}
            won = [r.json() for r in mine if r.status_code == 201]
            assert len({w["code"] for w in won}) == 60
            assert len({w["user_id"] for w in won}) == 60
            p = (
                await workers[0].get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)
            ).json()
            assert (p["available"], p["assigned"], p["total"]) == (0, 60, 60)
            events = (
                await workers[0].get(
                    f"/v1/projects/{t.id}/events?type=REDEEMED_VOUCHER&count=1000",
                    headers=t.admin,
                )
            ).json()
            assert sorted((e["user_id"], e["code"]) for e in events["data"]) == sorted(
                (w["user_id"], w["code"]) for w in won
            )


async def test_tills_race_redeem_and_release(cluster_redis: Redis, cluster_url: str) -> None:
    async with app_client(cluster_redis) as setup:
        t = await make_tenant(setup)
        pool = await make_pool(setup, t, [f"Q-{i}" for i in range(30)])
        await setup.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={"count": 30}, headers=t.admin
        )
    async with AsyncExitStack() as stack:
        workers = await app_workers(stack, cluster_url, notify=False)
        calls = []
        for i in range(30):
            code = {"code": f"Q-{i}"}
            for k in range(5):  # five tills on each code
                calls.append(
                    workers[(i + k) % WORKERS].post(
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
    for i in range(30):
        group = responses[i * 6 : i * 6 + 6]
        # One winner per code: a till (redeemed) or the admin (released).
        assert Counter(r.status_code for r in group) == {200: 1, 409: 5}, [r.text for r in group]
    redeemed = sum(r.status_code == 200 for i, r in enumerate(responses) if i % 6 != 5)
    released = sum(r.status_code == 200 for i, r in enumerate(responses) if i % 6 == 5)
    assert redeemed + released == 30
    assert (p["redeemed"], p["available"], p["assigned"]) == (redeemed, released, 0)


async def test_holds_expire_once_in_projects_on_every_master(
    cluster_redis: Redis, cluster_url: str
) -> None:
    """The hold reaper (one lease, three instances) goes project by project, master by
    master: every hold comes back exactly once (tests/integration/test_holds.py)."""
    assert isinstance(cluster_redis, RedisCluster)
    shops = []
    async with app_client(cluster_redis, notify=False) as setup:
        for n in range(6):
            t = await make_tenant(setup, f"held{n}")
            pool = await make_pool(setup, t, [f"H{n}-{i}" for i in range(40)])
            shops.append((t, pool, await make_reward(setup, t, pool["id"])))
    assert len({cluster_redis.get_node_from_key(keys.holds(t.id)).name for t, _, _ in shops}) == 3
    async with AsyncExitStack() as stack:
        workers = await app_workers(
            stack, cluster_url, notify=False, hold_reap_interval=0.1, hold_reaper_lease=1.0
        )
        held = await asyncio.gather(
            *(
                workers[i % WORKERS].post(
                    f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase",
                    json={"hold_seconds": 1},
                    headers=user_token(t, f"h{i}"),
                )
                for t, _, reward in shops
                for i in range(30)
            )
        )
        assert {r.status_code for r in held} == {201}
        deadline = time.monotonic() + 8
        for t, pool, _ in shops:
            while await cluster_redis.zcard(keys.holds(t.id)):
                assert time.monotonic() < deadline, "holds left behind"
                await asyncio.sleep(0.1)
            p = (
                await workers[0].get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)
            ).json()
            assert (p["available"], p["assigned"]) == (40, 0)
        assert [w.app.state.services.reaper.leading for w in workers].count(True) == 1
        assert sum(w.app.state.services.reaper.released for w in workers) == 6 * 30
