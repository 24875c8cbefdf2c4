"""Per-credential rate limits (issue 16): a fixed 1-second window counted in Redis,
shared by every worker; root and unlimited roles are never refused."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack

import pytest
from redis.asyncio import Redis

from codepool.app import create_app
from tests.apphelpers import (
    ROOT,
    Client,
    app_client,
    make_pool,
    make_tenant,
    serve_app,
    settings_for_tests,
    user_token,
)

LIMIT = 5


async def _next_window(client: Redis, key_pattern: bytes = b"*:rl:*") -> None:
    """Wait until every rate-limit window has ended, so a test starts a fresh one."""
    for _ in range(40):
        if not await client.keys(key_pattern):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("a rate-limit window outlived two seconds")


async def _burst(client: Client, url: str, headers: dict[str, str], n: int) -> list[int]:
    return [(await client.get(url, headers=headers)).status_code for _ in range(n)]


async def test_the_n_plus_first_request_in_a_second_is_refused(redis: Redis) -> None:
    async with app_client(redis, rate_limit_pos=LIMIT, rate_limit_user=LIMIT) as client:
        tenant = await make_tenant(client)
        pool = await make_pool(client, tenant)
        url = f"/v1/projects/{tenant.id}/pools/{pool['id']}"
        for headers in (tenant.pos, user_token(tenant, "u1")):
            await _next_window(redis)
            # The pos key may not read a pool (403) and a user neither: refused or not,
            # every request is counted, so guessing is as limited as reading.
            statuses = await _burst(client, url, headers, LIMIT)
            assert 429 not in statuses
            started = time.monotonic()
            r = await client.get(url, headers=headers)
            assert r.status_code == 429, r.text
            assert r.json()["error"]["code"] == "rate_limited"
            retry = int(r.headers["Retry-After"])
            assert retry >= 1
            # The next window admits again, within the second the first one started.
            await _next_window(redis)
            assert time.monotonic() - started < 1.5
            assert (await client.get(url, headers=headers)).status_code != 429


async def test_a_pos_key_cannot_guess_codes_fast(redis: Redis) -> None:
    """The finding: a pos key guessed 817 codes/s; now it gets its limit per second."""
    async with app_client(redis, rate_limit_pos=LIMIT) as client:
        tenant = await make_tenant(client)
        await _next_window(redis)
        statuses = [
            (
                await client.post(
                    f"/v1/projects/{tenant.id}/codes/validate",
                    json={"code": f"GUESS-{i}"},
                    headers=tenant.pos,
                )
            ).status_code
            for i in range(3 * LIMIT)
        ]
        assert statuses.count(429) >= 2 * LIMIT - 1
        assert 429 not in statuses[:LIMIT]


async def test_root_and_admin_without_limit_are_never_refused(redis: Redis) -> None:
    async with app_client(redis, rate_limit_pos=LIMIT, rate_limit_admin=0) as client:
        tenant = await make_tenant(client)
        pool = await make_pool(client, tenant)
        url = f"/v1/projects/{tenant.id}/pools/{pool['id']}"
        for headers in (ROOT, tenant.admin):
            assert set(await _burst(client, url, headers, 4 * LIMIT)) == {200}


@pytest.mark.real
async def test_workers_on_one_redis_share_the_count(redis_server_url: str) -> None:
    async with AsyncExitStack() as stack:
        apps = [
            await stack.enter_async_context(
                serve_app(
                    create_app(
                        settings_for_tests(
                            redis_url=redis_server_url,
                            redis_max_connections=4,
                            rate_limit_pos=LIMIT,
                        )
                    )
                )
            )
            for _ in range(2)
        ]
        client = Redis.from_url(redis_server_url)
        try:
            await client.flushall()
            tenant = await make_tenant(apps[0])
            pool = await make_pool(apps[0], tenant)
            url = f"/v1/projects/{tenant.id}/pools/{pool['id']}"
            await _next_window(client)
            # LIMIT requests spread over both workers use the window up...
            statuses = [
                (await apps[i % 2].get(url, headers=tenant.pos)).status_code for i in range(LIMIT)
            ]
            assert 429 not in statuses
            # ...so either worker refuses the next one.
            for app in apps:
                assert (await app.get(url, headers=tenant.pos)).status_code == 429
        finally:
            await client.aclose()
