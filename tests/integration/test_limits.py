"""Per-credential rate limits (issue 16): a fixed 1-second window counted in Redis,
shared by every worker; root and unlimited roles are never refused."""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, ResponseError

from codepool import errors
from codepool.app import create_app
from codepool.embedded import EmbeddedRedis
from codepool.embedded_error import EmbeddedRedisError
from codepool.embedded_memory import memory_limit, redis_maxmemory
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
from tests.ratehelpers import next_second

LIMIT = 5


async def _burst(client: Client, url: str, headers: dict[str, str], n: int) -> list[int]:
    return [(await client.get(url, headers=headers)).status_code for _ in range(n)]


async def test_the_n_plus_first_request_in_a_second_is_refused(redis: Redis) -> None:
    async with app_client(redis, rate_limit_pos=LIMIT, rate_limit_user=LIMIT) as client:
        tenant = await make_tenant(client)
        pool = await make_pool(client, tenant)
        url = f"/v1/projects/{tenant.id}/pools/{pool['id']}"
        for headers in (tenant.pos, user_token(tenant, "u1")):
            await next_second(redis)
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
            await next_second(redis)
            assert time.monotonic() - started < 1.5
            assert (await client.get(url, headers=headers)).status_code != 429


async def test_a_pos_key_cannot_guess_codes_fast(redis: Redis) -> None:
    """The finding: a pos key guessed 817 codes/s; now it gets its limit per second."""
    async with app_client(redis, rate_limit_pos=LIMIT) as client:
        tenant = await make_tenant(client)
        await next_second(redis)
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
            await next_second(client)
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


# -- a full store ---------------------------------------------------------------------


def test_maxmemory_setting_is_a_share_of_memory_or_a_redis_size() -> None:
    assert redis_maxmemory("0") == "0"
    assert redis_maxmemory("512mb") == "512mb"
    assert int(redis_maxmemory("50%")) == memory_limit() // 2
    with pytest.raises(EmbeddedRedisError):
        redis_maxmemory("half")
    with pytest.raises(EmbeddedRedisError):
        redis_maxmemory("150%")


@pytest.mark.real
async def test_a_full_redis_answers_507_storage_full_and_stores_nothing(
    tmp_path: Path,
) -> None:
    with EmbeddedRedis(tmp_path / "redis", appendonly=False, maxmemory="64mb") as server:
        assert "maxmemory 64mb" in (tmp_path / "redis" / "redis.conf").read_text()
        redis = Redis.from_url(server.url)
        try:
            async with app_client(redis) as client:
                tenant = await make_tenant(client)
                pool = await make_pool(client, tenant, codes=["KEEP-1", "KEEP-2"])
                base = f"/v1/projects/{tenant.id}/pools"
                # Full: the limit now sits below what is used.
                used = int((await redis.info("memory"))["used_memory"])
                await redis.config_set("maxmemory", used // 2)
                r = await client.post(
                    f"{base}/{pool['id']}/codes",
                    content="\n".join(f"CODE-{i:07d}" for i in range(200_000)),
                    headers={**tenant.admin, "Content-Type": "text/plain"},
                )
                assert r.status_code == 507, r.text
                assert r.json()["error"]["code"] == "storage_full"
                r = await client.post(base, json={"name": "another"}, headers=tenant.admin)
                assert r.status_code == 507, r.text
                # The hand-out route (api/fast.py) is never a 500: issue.lua pops before
                # it writes, and Redis checks memory only before a script's first write.
                r = await client.post(
                    f"{base}/{pool['id']}/issue", json={"count": 1}, headers=tenant.admin
                )
                assert r.status_code in (200, 507), r.text
                await redis.config_set("maxmemory", 0)
                got = (await client.get(f"{base}/{pool['id']}", headers=tenant.admin)).json()
                assert got["total"] == 2  # nothing of the refused upload was stored
                assert await redis.keys("*:stage:*") == []
        finally:
            await redis.aclose()


def test_oom_replies_are_storage_full_wherever_they_surface() -> None:
    """api/fast.py and app.py both turn unexpected errors into answers via
    errors.unexpected: a plain command's OOM and a script's OOM are a 507 there."""
    for exc in (
        OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        ResponseError(
            "Error running script: @user_script:11: -OOM command not allowed when used "
            "memory > 'maxmemory'."
        ),
    ):
        err = errors.unexpected(exc, "POST /x")
        assert (err.status, err.code) == (507, "storage_full")
    assert errors.unexpected(ResponseError("WRONGTYPE"), "POST /x").status == 500


async def test_forged_tokens_naming_a_key_do_not_use_up_its_limit(redis: Redis) -> None:
    """verify_key.lua counts only a valid key: a token with the right key id and a wrong
    secret is a 401 and leaves the key's window alone."""
    async with app_client(redis, rate_limit_pos=LIMIT) as client:
        tenant = await make_tenant(client)
        pool = await make_pool(client, tenant)
        url = f"/v1/projects/{tenant.id}/pools/{pool['id']}"
        token = tenant.pos["Authorization"].removeprefix("Bearer ")
        forged = {"Authorization": "Bearer " + token.rsplit(".", 1)[0] + ".wrong-secret"}
        await next_second(redis)
        assert set(await _burst(client, url, forged, 3 * LIMIT)) == {401}
        statuses = await _burst(client, url, tenant.pos, LIMIT)
        assert 429 not in statuses
