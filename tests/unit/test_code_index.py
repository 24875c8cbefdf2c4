"""The code index over HTTP (docs/index.md): every validate/redeem/release answer in
one script call whatever the pools hold, duplicates across pools, release and
re-issue, duplicates=skip uploads, failed uploads and deleted pools leaving no
entries, a restore rebuilding it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from codepool import keys
from codepool.durability import snapshot
from codepool.durability.restore import restore
from codepool.scripts import Arg, Scripts
from codepool.store import codeindex, codes
from tests.apphelpers import Client, Tenant, app_client, make_pool, make_tenant

TEXT = "text/plain"
# Longer than the scan the index replaced looked through in one call (SCAN_BOUND).
BIG = 60_001


@pytest.fixture
def script_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every script call by name, as the store makes them."""
    calls: Counter[str] = Counter()
    run = Scripts.run

    async def counted(self: Scripts, name: str, keys: Any, args: list[Arg]) -> Any:
        calls[name] += 1
        return await run(self, name, keys, args)

    monkeypatch.setattr(Scripts, "run", counted)
    return calls


async def _pos(c: Client, t: Tenant, action: str, code: str) -> Any:
    who = t.admin if action == "release" else t.pos
    return await c.post(f"/v1/projects/{t.id}/codes/{action}", json={"code": code}, headers=who)


async def _answer(c: Client, t: Tenant, code: str) -> tuple[str | None, str | None, str | None]:
    """validate's (status, reason, pool_id)."""
    v = (await _pos(c, t, "validate", code)).json()
    return v["status"], v["reason"], v["pool_id"]


async def _upload(c: Client, t: Tenant, pool_id: str, body: str, mode: str = "allow") -> Any:
    r = await c.post(
        f"/v1/projects/{t.id}/pools/{pool_id}/codes?duplicates={mode}",
        content=body,
        headers={**t.admin, "Content-Type": TEXT},
    )
    return r.status_code, r.json()


async def _entries(redis: Redis, project: str) -> int:
    """Index entries of the project (10 bytes each)."""
    found = [k async for k in redis.scan_iter(match=keys.code_index(project, "*"), count=1000)]
    # Up to 2^15 buckets: their lengths in pipelines, not one round trip each.
    total = 0
    for start in range(0, len(found), 1000):
        pipe = redis.pipeline(transaction=False)
        for key in found[start : start + 1000]:
            pipe.strlen(key)
        total += sum(await pipe.execute())
    return total // 10


# A pool past the old scan bound is slow to fill on fakeredis (5 s): the real server only.
@pytest.mark.real
async def test_every_answer_in_one_call_whatever_the_pool_size(
    real_redis: Redis, script_calls: Counter[str]
) -> None:
    redis = real_redis
    async with app_client(redis) as c:
        t = await make_tenant(c)
        small = await make_pool(c, t, ["S1", "S2", "DUP"], name="small")
        big = await make_pool(c, t, [f"B{i:06d}" for i in range(BIG)] + ["DUP"], name="big")
        assert await _entries(redis, t.id) == 3 + BIG + 1
        script_calls.clear()
        assert await _answer(c, t, "NOPE") == (None, "unknown_code", None)
        assert await _answer(c, t, f"B{BIG - 1:06d}") == ("available", "not_issued", big["id"])
        assert await _answer(c, t, "S2") == ("available", "not_issued", small["id"])
        assert (await _answer(c, t, "DUP"))[:2] == ("available", "not_issued")
        for action in ("redeem", "release"):
            r = await _pos(c, t, action, "NOPE")
            assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_code")
            r = await _pos(c, t, action, f"B{BIG - 1:06d}")
            assert (r.status_code, r.json()["error"]["code"]) == (409, "not_issued")
            assert r.json()["error"]["details"]["pool_id"] == big["id"]
        # One script call per answer: no slices of a scan after it (the old find_code).
        # (Others run meanwhile: authentication, the background workers' leases.)
        tills = {k: script_calls[k] for k in ("validate", "redeem", "release", "find_code")}
        assert tills == {"validate": 4, "redeem": 2, "release": 2, "find_code": 0}

        # DUP handed out of the small pool: its record answers; the big pool's DUP is
        # still there to be handed out.
        r = await c.post(
            f"/v1/projects/{t.id}/pools/{small['id']}/issue", json={"count": 3}, headers=t.admin
        )
        assert [x["code"] for x in r.json()["codes"]] == ["S1", "S2", "DUP"]
        assert await _answer(c, t, "DUP") == ("assigned", None, small["id"])
        assert (await _pos(c, t, "redeem", "DUP")).status_code == 200
        assert await _answer(c, t, "DUP") == ("redeemed", "already_redeemed", small["id"])
        # Released codes are found where they went back, again and again.
        for _ in range(2):
            assert (await _pos(c, t, "release", "S2")).status_code == 200
            assert await _answer(c, t, "S2") == ("available", "not_issued", small["id"])
            r = await c.post(
                f"/v1/projects/{t.id}/pools/{small['id']}/issue", json={"count": 1}, headers=t.admin
            )
            assert r.json()["codes"][0]["code"] == "S2"
            assert await _answer(c, t, "S2") == ("assigned", None, small["id"])
        assert (await _pos(c, t, "release", "S1")).status_code == 200
        assert await _entries(redis, t.id) == 3 + BIG + 1  # re-pointed, never appended
        # Deleting the big pool: its codes are unknown and its entries gone.
        assert (
            await c.delete(f"/v1/projects/{t.id}/pools/{big['id']}", headers=t.admin)
        ).status_code == 204
        assert await _answer(c, t, f"B{BIG - 1:06d}") == (None, "unknown_code", None)
        assert await _answer(c, t, "S1") == ("available", "not_issued", small["id"])
        assert await _entries(redis, t.id) == 3


async def test_skip_uploads_ask_the_index(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        a = await make_pool(c, t, ["X", "Y"], name="a")
        b = await make_pool(c, t, name="b")
        # X is in pool a, not in b: b takes it; a skips X and Y, and W's repeat.
        assert await _upload(c, t, b["id"], "X\nZ", "skip") == (
            200,
            {"added": 2, "skipped": 0, "total": 2, "available": 2},
        )
        assert (await _upload(c, t, a["id"], "X\nY\nW\nW", "skip"))[1]["added"] == 1
        await c.post(
            f"/v1/projects/{t.id}/pools/{a['id']}/issue", json={"count": 1}, headers=t.admin
        )
        # Handed out (X) or available (Y, W): all in the pool already.
        assert (await _upload(c, t, a["id"], "X\nY\nW", "skip"))[1]["skipped"] == 3
        assert (await _pos(c, t, "release", "X")).status_code == 200
        out = (await _upload(c, t, a["id"], "X\nV", "skip"))[1]
        assert (out["added"], out["skipped"]) == (1, 1)
        # A big skip upload over several chunks finds its own earlier codes.
        body = "\n".join(f"K{i % 1500}" for i in range(3000))
        out = (await _upload(c, t, b["id"], body, "skip"))[1]
        assert (out["added"], out["skipped"]) == (1500, 1500)
        assert await _answer(c, t, "K1499") == ("available", "not_issued", b["id"])


async def test_failed_uploads_leave_no_entries(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(codeindex, "FLUSH_CODES", 1000)  # entries reach Redis early
    # ... and the body is parsed (its codes staged and indexed) every 64 KiB, not 1 MiB.
    monkeypatch.setattr(codes, "PARSE_BYTES", 1 << 16)
    async with app_client(redis, max_codes_per_project=5000) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["KEEP"])
        before = await _entries(redis, t.id)
        # A bad line at the end of a body whose start was already staged and indexed.
        body = "\n".join(f"F{i}" for i in range(20_000)) + "\n" + "x" * 300
        status, _ = await _upload(c, t, pool["id"], body)
        assert status == 422
        # Over the quota: refused at commit, after all of it was indexed.
        status, _ = await _upload(c, t, pool["id"], "\n".join(f"Q{i}" for i in range(4000)))
        assert status == 200
        status, out = await _upload(c, t, pool["id"], "\n".join(f"R{i}" for i in range(4000)))
        assert (status, out["error"]["code"]) == (409, "quota_exceeded")
        assert await _entries(redis, t.id) == before + 4000
        assert await _answer(c, t, "R1") == (None, "unknown_code", None)
        assert await _answer(c, t, "F1") == (None, "unknown_code", None)
        uploads = await redis.hgetall(keys.code_index_uploads(t.id))
        assert len(uploads) == 4  # seq, the pool's identity, its two uploads


@pytest.mark.real
async def test_a_restore_rebuilds_the_index(real_redis: Redis, tmp_path: Path) -> None:
    async with app_client(real_redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"C{i}" for i in range(1000)])
        await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={"count": 10}, headers=t.admin
        )
        assert (await _pos(c, t, "release", "C3")).status_code == 200
    info = await snapshot.take_snapshot(real_redis, tmp_path)
    await real_redis.flushall()
    await restore(real_redis, info.path, [])
    assert await _entries(real_redis, t.id) == 991
    async with app_client(real_redis) as c:
        assert await _answer(c, t, "C999") == ("available", "not_issued", pool["id"])
        assert await _answer(c, t, "C3") == ("available", "not_issued", pool["id"])
        assert await _answer(c, t, "C4") == ("assigned", None, pool["id"])
        assert await _answer(c, t, "C1000") == (None, "unknown_code", None)
        # Release and re-issue go on from the rebuilt index.
        assert (await _pos(c, t, "release", "C4")).status_code == 200
        assert await _answer(c, t, "C4") == ("available", "not_issued", pool["id"])
