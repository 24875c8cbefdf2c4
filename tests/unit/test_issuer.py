"""The coalescing issuer: callers that go away while their request waits."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from codepool import keys
from codepool.auth import Credential
from codepool.issuer import Issuer
from codepool.scripts import Status
from codepool.settings import load_settings
from codepool.store.base import Backend, text
from codepool.store.issuing import IssueRequest, issue_batch
from tests.scripthelpers import POOL, P, create_pool, fill


async def test_a_caller_cancelled_while_waiting_gets_no_code_and_others_are_served(
    redis: Redis,
) -> None:
    b = Backend(redis, load_settings({}))
    await create_pool(b)
    await fill(b, [f"C{i}" for i in range(10)])
    issuer = Issuer(b, max_requests=100)
    # The first request starts a batch at once; the rest queue behind it.
    first = asyncio.create_task(issuer.issue(P, POOL, IssueRequest(count=1, user_id="a")))
    await asyncio.sleep(0)
    queued = [
        asyncio.create_task(issuer.issue(P, POOL, IssueRequest(count=1, user_id=f"q{i}")))
        for i in range(4)
    ]
    await asyncio.sleep(0)  # every queued task is now waiting on its future
    queued[1].cancel()
    queued[3].cancel()
    results = await asyncio.gather(first, *queued, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    assert isinstance(results[4], asyncio.CancelledError)
    served = [r for r in results if not isinstance(r, BaseException)]
    assert [r.status for r in served] == [Status.OK] * 3
    assert [r.codes for r in served] == [["C0"], ["C1"], ["C2"]]
    await issuer.close()
    # Only the three callers still waiting were handed codes; the rest stay available.
    log = await redis.lrange(keys.pool_log(P, POOL), 0, -1)
    assert [text(c) for c in log] == ["C0", "C1", "C2"]
    assert await redis.llen(keys.pool_available(P, POOL)) == 7
    assert issuer.requests == 3


async def test_requests_of_many_groups_in_one_call_each_get_their_own_checks(
    redis: Redis,
) -> None:
    """issue.lua sends what requests share (reward, credential, limit) once per group:
    a batch mixing groups must still check each request against its own group (its
    reward's pool, per-user limit and hide_code; its credential; its rate limit)."""
    backend = Backend(redis, load_settings({}))
    await create_pool(backend)
    await fill(backend, [f"G{i}" for i in range(20)])
    await redis.hset(keys.project(P), "user_token_secret", "s3cret")
    await redis.hset(keys.api_keys(P), "k-live", "{}")
    for reward_id, pool_id, per_user, hide in [
        ("once", POOL, "1", "0"),
        ("hidden", POOL, "", "1"),
        ("elsewhere", "other", "", "0"),
    ]:
        await redis.hset(
            keys.reward(P, reward_id),
            mapping={"pool_id": pool_id, "per_user_limit": per_user, "hide_code": hide},
        )
    user, live = Credential("user", "s3cret"), Credential("key", "k-live")
    rotated, revoked = Credential("user", "old"), Credential("key", "k-x")
    batch = [
        IssueRequest(count=1, user_id="ann", reward_id="once", credential=user),
        IssueRequest(count=1, user_id="bob", reward_id="hidden", credential=live),
        IssueRequest(count=1, user_id="ann", reward_id="once", credential=user),
        IssueRequest(count=1, user_id="cy", reward_id="elsewhere", credential=user),
        IssueRequest(count=1, user_id="dee", reward_id="gone", credential=user),
        IssueRequest(count=1, user_id="eve", reward_id="once", credential=rotated),
        IssueRequest(count=1, user_id="fay", reward_id="hidden", credential=revoked),
        IssueRequest(count=2),
        IssueRequest(count=1, user_id="gus", rate_key="user:gus", rate_limit=1),
        IssueRequest(count=1, user_id="gus", rate_key="user:gus", rate_limit=1),
    ]
    results = await issue_batch(backend, P, POOL, batch)
    assert [r.status for r in results] == [
        Status.OK,
        Status.OK,
        Status.PER_USER_LIMIT,
        Status.REWARD_MOVED,
        Status.NO_REWARD,
        Status.STALE_CREDENTIAL,
        Status.STALE_CREDENTIAL,
        Status.OK,
        Status.OK,
        Status.RATE_LIMITED,
    ]
    assert [r.hide_code for r in results if r.status == Status.OK] == [False, True, False, False]
    assert [len(r.codes) for r in results] == [1, 1, 0, 0, 0, 0, 0, 2, 1, 0]
    assert text(await redis.hget(keys.reward_users(P, "once"), "ann")) == "1"
