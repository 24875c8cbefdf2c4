"""Uploads (three formats, duplicates, all or nothing, limits), issuing, listing, export."""

from __future__ import annotations

import csv
import io

import pytest
from redis.asyncio import Redis

from tests.apphelpers import Tenant, app_client, make_pool, make_tenant


def _codes_url(t: Tenant, pool_id: str) -> str:
    return f"/v1/projects/{t.id}/pools/{pool_id}/codes"


async def test_upload_text_csv_json_and_refill(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t)
        url = _codes_url(t, pool["id"])
        r = await c.post(
            url, content=" A1, B2,,\nC3\r\n\n", headers={**t.admin, "Content-Type": "text/plain"}
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"added": 3, "skipped": 0, "total": 3, "available": 3}
        r = await c.post(
            url,
            content='code,value\nD4,5\n"E5",6\n',
            headers={**t.admin, "Content-Type": "text/csv"},
        )
        assert r.json() == {"added": 2, "skipped": 0, "total": 5, "available": 5}
        r = await c.post(url, json={"codes": ["F6", "A1"]}, headers=t.admin)
        assert r.json() == {"added": 2, "skipped": 0, "total": 7, "available": 7}
        listed = (await c.get(f"{url}?count=100", headers=t.admin)).json()
        assert [e["code"] for e in listed["data"]] == ["A1", "B2", "C3", "D4", "E5", "F6", "A1"]
        assert listed["matched"] == 7


async def test_upload_skip_duplicates(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A", "B", "C"])
        url = _codes_url(t, pool["id"])
        issued = await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={"count": 1}, headers=t.admin
        )
        assert issued.json()["codes"][0]["code"] == "A"
        r = await c.post(
            f"{url}?duplicates=skip",
            content="A\nB\nD\nD\nE",
            headers={**t.admin, "Content-Type": "text/plain"},
        )
        assert r.json() == {"added": 2, "skipped": 3, "total": 5, "available": 4}
        r = await c.post(
            f"{url}?duplicates=bogus",
            content="Z",
            headers={**t.admin, "Content-Type": "text/plain"},
        )
        assert r.status_code == 400


async def test_bad_upload_stores_nothing(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["KEEP"])
        url = _codes_url(t, pool["id"])
        body = "GOOD1\nBAD CODE\nGOOD2\n" + "X" * 129 + "\nGOOD3"
        r = await c.post(url, content=body, headers={**t.admin, "Content-Type": "text/plain"})
        assert r.status_code == 422
        err = r.json()["error"]
        assert err["code"] == "invalid_codes"
        assert err["details"]["error_count"] == 2
        first = err["details"]["errors"][0]
        assert first["index"] == 1 and first["line"] == 2 and first["reason"] == "whitespace"
        assert err["details"]["errors"][1]["reason"] == "too_long"
        p = (await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)).json()
        assert (p["total"], p["available"]) == (1, 1)
        staging = [k async for k in redis.scan_iter(match="*stage*")]
        assert staging == []


async def test_bad_upload_after_many_good_chunks_stores_nothing(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t)
        # Well past one parse step (1 MiB), so good codes were already staged.
        good = "\n".join(f"CODE{i:08d}" for i in range(150_000))
        r = await c.post(
            _codes_url(t, pool["id"]),
            content=good + "\nBAD,\x01",
            headers={**t.admin, "Content-Type": "text/plain"},
        )
        assert r.status_code == 422
        p = (await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)).json()
        assert p["total"] == 0
        assert [k async for k in redis.scan_iter(match="*stage*")] == []


async def test_upload_limits_and_media_types(redis: Redis) -> None:
    async with app_client(redis, max_upload_bytes=100) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t)
        url = _codes_url(t, pool["id"])
        r = await c.post(
            url, content="A\n" * 100, headers={**t.admin, "Content-Type": "text/plain"}
        )
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        r = await c.post(
            url, content=b"<xml/>", headers={**t.admin, "Content-Type": "application/xml"}
        )
        assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
        r = await c.post(url, json={"codes": [1, 2]}, headers=t.admin)
        assert r.status_code == 400
        r = await c.post(
            f"/v1/projects/{t.id}/pools/missing/codes",
            content="A",
            headers={**t.admin, "Content-Type": "text/plain"},
        )
        assert r.status_code == 404
        assert (await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)).json()[
            "total"
        ] == 0


async def test_issue_exhaustion_and_counts(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A", "B", "C"])
        url = f"/v1/projects/{t.id}/pools/{pool['id']}/issue"
        r = await c.post(url, json={"count": 2, "user_id": "u-1"}, headers=t.admin)
        assert r.status_code == 200
        body = r.json()
        assert [x["code"] for x in body["codes"]] == ["A", "B"] and body["available"] == 1
        assert body["codes"][0]["assigned_time"] > 0
        r = await c.post(url, json={"count": 2}, headers=t.admin)
        assert r.status_code == 409 and r.json()["error"]["code"] == "pool_exhausted"
        r = await c.post(url, json={}, headers=t.admin)
        assert r.json()["codes"][0]["code"] == "C"
        for body_ in ({"count": 0}, {"count": 1001}, {"count": "x"}, {"user_id": ""}):
            assert (await c.post(url, json=body_, headers=t.admin)).status_code == 400
        p = (await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)).json()
        assert (p["total"], p["available"], p["assigned"], p["redeemed"]) == (3, 0, 3, 0)


async def test_issue_idempotency(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A", "B", "C"])
        url = f"/v1/projects/{t.id}/pools/{pool['id']}/issue"
        h = {**t.admin, "Idempotency-Key": "order-42"}
        first = await c.post(url, json={"count": 1}, headers=h)
        again = await c.post(url, json={"count": 1}, headers=h)
        assert first.status_code == again.status_code == 200
        assert first.json() == again.json()
        other = await c.post(url, json={"count": 2}, headers=h)
        assert (
            other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
        )
        p = (await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)).json()
        assert p["assigned"] == 1
        assert (
            await c.post(url, json={"count": 1}, headers={**t.admin, "Idempotency-Key": ""})
        ).status_code == 400


async def test_listing_by_status_and_csv_export(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A", "B", "C", "D", "A"])
        base = f"/v1/projects/{t.id}/pools/{pool['id']}"
        await c.post(f"{base}/issue", json={"count": 3, "user_id": "bob"}, headers=t.admin)
        await c.post(f"{base}/issue", json={"count": 1}, headers=t.admin)
        assigned = (await c.get(f"{base}/codes?status=assigned", headers=t.admin)).json()
        assert assigned["matched"] == 4
        assert [(e["code"], e["user_id"]) for e in assigned["data"]] == [
            ("A", "bob"),
            ("B", "bob"),
            ("C", "bob"),
            ("D", None),
        ]
        available = (await c.get(f"{base}/codes?status=available", headers=t.admin)).json()
        assert [e["code"] for e in available["data"]] == ["A"] and available["matched"] == 1
        page = (await c.get(f"{base}/codes?status=assigned&skip=1&count=2", headers=t.admin)).json()
        assert [e["code"] for e in page["data"]] == ["B", "C"]
        assert (await c.get(f"{base}/codes?status=bogus", headers=t.admin)).status_code == 400
        # The second "A" goes out too: two instances of one string, both listed once each.
        await c.post(f"{base}/issue", json={"count": 1, "user_id": "eve"}, headers=t.admin)
        everything = (await c.get(f"{base}/codes", headers=t.admin)).json()
        pairs = sorted((e["code"], e["user_id"] or "") for e in everything["data"])
        assert pairs == [("A", "bob"), ("A", "eve"), ("B", "bob"), ("C", "bob"), ("D", "")]
        assert everything["matched"] == 5

        r = await c.get(f"{base}/codes.csv", headers=t.admin)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert len(rows) == 5 and {row["status"] for row in rows} == {"assigned"}
        assert sum(1 for row in rows if row["code"] == "A") == 2
        r = await c.get(f"{base}/codes.csv?status=available", headers=t.admin)
        assert r.text.splitlines() == [
            "code,status,assigned_time,redeemed_time,user_id,reward_id,hold_expires_at"
        ]


@pytest.mark.parametrize("count", [1, 7])
async def test_issue_counts_stay_exact(redis: Redis, count: int) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"C{i}" for i in range(20)])
        base = f"/v1/projects/{t.id}/pools/{pool['id']}"
        seen: list[str] = []
        while True:
            r = await c.post(f"{base}/issue", json={"count": count}, headers=t.admin)
            if r.status_code != 200:
                assert r.json()["error"]["code"] == "pool_exhausted"
                break
            seen += [x["code"] for x in r.json()["codes"]]
        assert len(seen) == len(set(seen)) == 20 - (20 % count)
        p = (await c.get(base, headers=t.admin)).json()
        assert p["available"] + p["assigned"] + p["redeemed"] == p["total"] == 20
