"""GET .../codes pages: any window of the listing (available codes first, then handed-out
ones) is that slice of the whole list, and a page deep among the available codes costs
one LRANGE at its offset, not a walk from the head (what list_voucher_codes of an agent
on a 10M-code pool waited seconds for)."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from tests.apphelpers import app_client, make_pool, make_tenant


async def _listing(c: Any, url: str, headers: dict[str, str], **params: Any) -> Any:
    r = await c.get(url, params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def test_every_window_is_that_slice_of_the_whole_listing(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"P-{i:02d}" for i in range(12)])
        base = f"/v1/projects/acme/pools/{pool['id']}"
        await c.post(f"{base}/issue", json={"count": 3, "user_id": "ann"}, headers=t.admin)
        issued = await c.post(f"{base}/issue", json={"count": 2}, headers=t.admin)
        code = issued.json()["codes"][0]["code"]
        await c.post("/v1/projects/acme/codes/redeem", json={"code": code}, headers=t.pos)
        for status in (None, "available", "assigned", "redeemed"):
            query = {} if status is None else {"status": status}
            whole = await _listing(c, f"{base}/codes", t.admin, count=1000, **query)
            expected = {None: 12, "available": 7, "assigned": 4, "redeemed": 1}[status]
            assert len(whole["data"]) == whole["matched"] == expected
            for skip in range(14):
                for count in (1, 2, 5, 7, 8, 20):
                    page = await _listing(
                        c, f"{base}/codes", t.admin, skip=skip, count=count, **query
                    )
                    assert page["data"] == whole["data"][skip : skip + count], (
                        status,
                        skip,
                        count,
                    )
                    assert (page["skip"], page["limit"]) == (skip, count)
        statuses = [e["status"] for e in whole["data"]]
        assert statuses == ["redeemed"]
        everything = await _listing(c, f"{base}/codes", t.admin, count=1000)
        kinds = [e["status"] for e in everything["data"]]
        assert kinds[:7] == ["available"] * 7
        assert sorted(kinds[7:]) == ["assigned"] * 4 + ["redeemed"]


async def _lrange_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_lrange", {}).get("calls", 0))


async def test_a_deep_page_of_available_codes_is_one_lrange(real_redis: Redis) -> None:
    async with app_client(real_redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"D-{i:06d}" for i in range(30_000)])
        url = f"/v1/projects/acme/pools/{pool['id']}/codes"
        before = await _lrange_calls(real_redis)
        page = await _listing(c, url, t.admin, skip=29_990, count=5)
        assert [e["code"] for e in page["data"]] == [f"D-{i:06d}" for i in range(29_990, 29_995)]
        # Before: one LRANGE per 5000 codes skipped (6 here; 2000 at the end of 10M).
        assert await _lrange_calls(real_redis) - before == 1
