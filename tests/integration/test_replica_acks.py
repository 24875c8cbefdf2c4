"""CODEPOOL_REPLICA_ACKS on one real redis-server, which has no replica: WAIT 1 can
never be met, so every hand-out, redeem, release and confirm answers 503
not_replicated and tells nobody its code; with 0 (the default) nothing waits. (The
cluster, where replicas acknowledge, is tests/cluster/test_cluster_acks.py.)"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import pytest
from redis.asyncio import Redis

from codepool import redispipes
from tests.apphelpers import (
    app_client,
    app_workers,
    make_pool,
    make_reward,
    make_tenant,
    user_token,
)

pytestmark = pytest.mark.real


async def test_a_change_no_replica_holds_is_told_to_nobody(
    real_redis: Redis, redis_server_url: str
) -> None:
    async with app_client(real_redis) as setup:
        t = await make_tenant(setup)
        pool = await make_pool(setup, t, [f"A-{i}" for i in range(10)])
        reward = await make_reward(setup, t, pool["id"])
        issued = await setup.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={"count": 2}, headers=t.admin
        )
        codes = [c["code"] for c in issued.json()["codes"]]
        held = await setup.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue",
            json={"count": 1, "hold_seconds": 600},
            headers=t.admin,
        )
        codes.append(held.json()["codes"][0]["code"])
    codes_url = f"/v1/projects/{t.id}/codes"
    async with AsyncExitStack() as stack:
        (app,) = await app_workers(
            stack, redis_server_url, count=1, replica_acks=1, replica_acks_timeout=0.05
        )
        answers = [
            await app.post(
                f"/v1/projects/{t.id}/pools/{pool['id']}/issue",
                json={"count": 1},
                headers={**t.admin, "Idempotency-Key": "k1"},
            ),
            await app.post(
                f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase",
                headers=user_token(t, "ann"),
            ),
            await app.post(f"{codes_url}/redeem", json={"code": codes[0]}, headers=t.pos),
            await app.post(f"{codes_url}/release", json={"code": codes[1]}, headers=t.admin),
            await app.post(f"{codes_url}/confirm", json={"code": codes[2]}, headers=t.admin),
        ]
        # A retry with the same key is refused the same way: it is the same hand-out.
        again = await app.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue",
            json={"count": 1},
            headers={**t.admin, "Idempotency-Key": "k1"},
        )
    for r in [*answers, again]:
        assert r.status_code == 503, r.text
        body: dict[str, Any] = r.json()["error"]
        assert body["code"] == "not_replicated"
        assert body["details"] == {"acks": 0, "wanted": 1, "retry_after": 1}
        assert r.headers["Retry-After"] == "1"
        assert "codes" not in r.text and "A-" not in r.text  # no code told


async def test_no_wait_without_replica_acks(
    real_redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default sends no WAIT: the hot path keeps its one round trip."""

    async def forbidden(*_: Any, **__: Any) -> Any:
        raise AssertionError("WAIT sent with CODEPOOL_REPLICA_ACKS=0")

    monkeypatch.setattr("codepool.scripts.eval_then_wait", forbidden)
    async with app_client(real_redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["X-1", "X-2"])
        r = await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={"count": 1}, headers=t.admin
        )
        assert r.status_code == 200
        code = r.json()["codes"][0]["code"]
        assert (
            await c.post(f"/v1/projects/{t.id}/codes/redeem", json={"code": code}, headers=t.pos)
        ).status_code == 200


async def test_eval_then_wait_reloads_a_flushed_script(real_redis: Redis) -> None:
    """NOSCRIPT (a restarted or failed-over Redis): loaded on that connection, run once."""
    source = "redis.call('INCR', KEYS[1]) return 7"
    sha = await real_redis.script_load(source)
    await real_redis.script_flush()
    reply, acks = await redispipes.eval_then_wait(real_redis, sha, source, ["n"], [], 0, 10)
    assert (reply, acks) == (7, 0)
    assert await real_redis.get("n") == b"1"
