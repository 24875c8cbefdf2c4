"""Rate limits on the hand-out path (issue, purchase), counted inside issue.lua: no round
trip of their own, nothing handed out to a refused request, 429 with Retry-After."""

from __future__ import annotations

import asyncio
import math
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from codepool import keys
from codepool.embedded import EmbeddedRedis
from codepool.scripts import Status
from codepool.settings import load_settings
from codepool.store.base import Backend
from codepool.store.issuing import IssueRequest, issue_batch
from tests.apphelpers import (
    ROOT,
    app_client,
    app_workers,
    make_pool,
    make_reward,
    make_tenant,
    user_token,
)
from tests.ratehelpers import counted, credentials, next_second, windows


def _refused(r: Any) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "rate_limited"
    retry = r.headers["retry-after"]
    assert retry == str(r.json()["error"]["details"]["retry_after"])
    assert int(retry) == 1  # a 1-second window: what is left of it, rounded up


@pytest.mark.parametrize("fast", [True, False])
async def test_user_purchases_beyond_the_limit_get_429(redis: Redis, fast: bool) -> None:
    async with app_client(redis, fast_routes=fast, rate_limit_user=2) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"C-{i}" for i in range(10)])
        reward = await make_reward(c, t, pool["id"])
        url = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
        ann = user_token(t, "ann")
        await next_second(redis)
        answers = [await c.post(url, headers=ann) for _ in range(4)]
        assert [r.status_code for r in answers[:2]] == [201, 201]
        for r in answers[2:]:
            _refused(r)
        # Nothing handed out to a refused request; another user has a count of their own.
        pool_now = await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)
        assert pool_now.json()["available"] == 8
        assert (await c.post(url, headers=user_token(t, "bob"))).status_code == 201
        assert await counted(redis, t.id, "user:ann") == 4  # refused ones count too
        (window,) = await windows(redis, t.id)
        assert 0 < await redis.pttl(window) <= 2000  # it goes by itself
        # The window ends: ann buys again.
        await next_second(redis)
        assert (await c.post(url, headers=ann)).status_code == 201


@pytest.mark.parametrize("fast", [True, False])
async def test_api_keys_are_limited_by_their_role_and_root_never(redis: Redis, fast: bool) -> None:
    # Set up with no admin limit: the other routes count an admin key too when it has one.
    async with app_client(redis) as setup:
        t = await make_tenant(setup)
        pool = await make_pool(setup, t, [f"C-{i}" for i in range(20)])
    async with app_client(redis, fast_routes=fast, rate_limit_admin=1) as c:
        url = f"/v1/projects/{t.id}/pools/{pool['id']}/issue"
        await next_second(redis)
        assert (await c.post(url, json={"count": 2}, headers=t.admin)).status_code == 200
        _refused(await c.post(url, json={"count": 2}, headers=t.admin))
        listed = (await c.get(f"/v1/projects/{t.id}/keys", headers=ROOT)).json()
        admin_id = next(k["id"] for k in listed if k["role"] == "admin")
        assert await counted(redis, t.id, f"key:{admin_id}") == 2
        for _ in range(5):  # root: not counted, no limit
            assert (await c.post(url, json={"count": 1}, headers=ROOT)).status_code == 200
        for window in await windows(redis, t.id):
            assert await credentials(redis, window) == [f"key:{admin_id}".encode()]


async def test_a_limit_of_zero_counts_nothing(redis: Redis) -> None:
    async with app_client(redis, rate_limit_user=0) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"C-{i}" for i in range(30)])
        reward = await make_reward(c, t, pool["id"])
        url = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
        for _ in range(25):
            assert (await c.post(url, headers=user_token(t, "ann"))).status_code == 201
    assert await windows(redis, t.id) == []


async def test_the_default_limits_apply_to_user_tokens(redis: Redis) -> None:
    """Defaults (settings): users 10/s, pos keys 20/s, admin keys unlimited."""
    settings = load_settings({})
    assert (settings.rate_limit_user, settings.rate_limit_pos, settings.rate_limit_admin) == (
        10.0,
        20.0,
        0.0,
    )
    # The test helpers turn the pos and user limits off; this test puts the defaults back.
    defaults = {
        "rate_limit_user": settings.rate_limit_user,
        "rate_limit_pos": settings.rate_limit_pos,
    }
    async with app_client(redis, **defaults) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"C-{i}" for i in range(40)])
        reward = await make_reward(c, t, pool["id"])
        url = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
        ann = user_token(t, "ann")
        await next_second(redis)
        statuses = [(await c.post(url, headers=ann)).status_code for _ in range(11)]
        assert statuses == [201] * 10 + [429]
        for _ in range(15):  # admins are not limited by default
            r = await c.post(url, json={"user_id": "bob"}, headers=t.admin)
            assert r.status_code == 201


async def test_refused_requests_in_a_batch_take_nothing(redis: Redis) -> None:
    """One issue.lua call, requests of one counter past its limit: each refused request
    takes nothing, the others keep their order, the list is as if they never came."""
    backend = Backend(redis, load_settings({}))
    project, pool_id = "acme", "p1"
    await redis.hset(keys.pool(project, pool_id), mapping={"name": "p", "expires_at": ""})
    await redis.rpush(keys.pool_available(project, pool_id), *[f"C{i}" for i in range(6)])

    def ask(user: str, count: int) -> IssueRequest:
        return IssueRequest(count=count, user_id=user, rate_key=f"user:{user}", rate_limit=2)

    await next_second(redis)
    results = await issue_batch(
        backend,
        project,
        pool_id,
        [ask("ann", 1), ask("ann", 1), ask("ann", 1), ask("bob", 2), ask("ann", 1)],
    )
    assert [r.status for r in results] == [
        Status.OK,
        Status.OK,
        Status.RATE_LIMITED,
        Status.OK,
        Status.RATE_LIMITED,
    ]
    assert [r.codes for r in results] == [["C0"], ["C1"], [], ["C2", "C3"], []]
    assert all(0 < r.retry_after_ms <= 1000 for r in results if r.status == Status.RATE_LIMITED)
    assert await redis.lrange(keys.pool_available(project, pool_id), 0, -1) == [b"C4", b"C5"]
    assert await counted(redis, project, "user:ann") == 4


async def test_the_limit_costs_no_round_trip(redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """A purchase under a limit is still one Redis command: the EVALSHA of issue.lua."""
    async with app_client(redis, rate_limit_user=5) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"C-{i}" for i in range(10)])
        reward = await make_reward(c, t, pool["id"])
        url = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
        ann = user_token(t, "ann")
        assert (await c.post(url, headers=ann)).status_code == 201  # warms the caches
        client = c.app.state.services.client
        sent: list[Any] = []
        execute = client.execute_command

        async def counting(*args: Any, **kwargs: Any) -> Any:
            sent.append(args[0])
            return await execute(*args, **kwargs)

        monkeypatch.setattr(client, "execute_command", counting)
        assert (await c.post(url, headers=ann)).status_code == 201
        assert sent == ["EVALSHA"]


@pytest.mark.real
async def test_the_limit_holds_across_workers(real_redis: Redis, redis_server_url: str) -> None:
    async with app_client(real_redis) as setup:
        t = await make_tenant(setup)
        pool = await make_pool(setup, t, [f"W-{i}" for i in range(100)])
        reward = await make_reward(setup, t, pool["id"])
    url = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
    token = user_token(t, "eve")
    async with AsyncExitStack() as stack:
        workers = await app_workers(stack, redis_server_url, rate_limit_user=5)
        answers = await asyncio.gather(
            *(workers[i % 3].post(url, headers=token) for i in range(30))
        )
    ok = sum(1 for r in answers if r.status_code == 201)
    refused = [r for r in answers if r.status_code == 429]
    # One window holds 5; 30 requests straddling a window's end may meet two.
    assert 5 <= ok <= 10 and ok + len(refused) == 30
    for r in refused:
        assert math.ceil(float(r.headers["retry-after"])) >= 1


async def _commands_run(client: Redis) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT, scripts' own commands included,
    but for the client's side of it (the EVALSHA, a SCRIPT LOAD, CONFIG, INFO)."""
    stats = await client.info("commandstats")
    mine = {"evalsha", "script", "config", "info", "exists"}
    return {k[8:]: int(v["calls"]) for k, v in stats.items() if k[8:] not in mine}


@pytest.mark.real
async def test_a_batch_is_counted_in_a_fixed_number_of_commands_kept_out_of_the_aof(
    tmp_path: Path,
) -> None:
    """However many limited requests one issue.lua call carries, counting them costs the
    same three commands (HMGET, HSET, PEXPIRE; the TIME it needs is the one the journal's
    clock takes anyway): a key per credential cost one or two per request. And the
    windows are not written to the AOF (nor sent to replicas)."""
    with EmbeddedRedis(tmp_path / "redis", appendonly=True) as server:
        client = Redis.from_url(server.url)
        backend = Backend(client, load_settings({}))
        project = "acme"
        for n in (1, 12):
            run: dict[bool, dict[str, int]] = {}
            for limited in (False, True):
                pool_id = f"p{n}{limited}"
                await client.hset(keys.pool(project, pool_id), mapping={"name": "p"})
                await client.rpush(keys.pool_available(project, pool_id), *range(n))
                batch = [
                    IssueRequest(
                        count=1,
                        user_id=f"u{i}",
                        rate_key=f"user:u{i}" if limited else None,
                        rate_limit=5 if limited else 0,
                    )
                    for i in range(n)
                ]
                await client.config_resetstat()
                results = await issue_batch(backend, project, pool_id, batch)
                assert all(r.status == Status.OK for r in results)
                run[limited] = await _commands_run(client)
            more = {c: k - run[False].get(c, 0) for c, k in run[True].items()}
            assert {c: k for c, k in more.items() if k} == {"hmget": 1, "hset": 1, "pexpire": 1}
        assert await counted(client, project, "user:u11") == 1
        # A hash table from the first write, however few credentials (WINDOW_PAD).
        for window in await windows(client, project):
            assert await client.object("encoding", window) == b"hashtable"
        aof = (tmp_path / "redis" / "appendonly.aof").read_bytes()
        assert keys.pool_available(project, "p12True").encode() in aof  # the AOF is on
        assert b":rl:" not in aof
        await client.aclose()
