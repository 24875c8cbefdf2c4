"""The coalescing issuer: callers that go away while their request waits."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from codepool import keys
from codepool.issuer import Issuer
from codepool.scripts import Status
from codepool.settings import load_settings
from codepool.store.base import Backend, text
from codepool.store.issuing import IssueRequest
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
