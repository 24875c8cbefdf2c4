"""Pools over HTTP: create, read, list, patch, delete."""

from __future__ import annotations

from redis.asyncio import Redis

from tests.apphelpers import app_client, make_pool, make_tenant


async def test_pool_lifecycle(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        base = f"/v1/projects/{t.id}/pools"
        r = await c.post(
            base,
            json={
                "name": "Summer",
                "low_stock_thresholds": [10, 100],
                "notify": {
                    "emails": ["ops@example.com"],
                    "webhook_url": "https://hooks.example.com/x",
                },
                "expires_at": 4102444800.0,
            },
            headers=t.admin,
        )
        assert r.status_code == 201, r.text
        pool = r.json()
        assert pool["name"] == "Summer" and pool["project_id"] == t.id
        assert pool["low_stock_thresholds"] == [100, 10]
        assert pool["total"] == pool["available"] == pool["assigned"] == pool["redeemed"] == 0
        assert pool["used_by"] == [] and pool["expires_at"] == 4102444800.0
        assert pool["notify"]["emails"] == ["ops@example.com"]

        taken = await c.post(base, json={"name": "Summer"}, headers=t.admin)
        assert taken.status_code == 409 and taken.json()["error"]["code"] == "pool_name_taken"

        other = await make_pool(c, t, ["X", "Y", "Z"], name="Winter")
        listed = (await c.get(base, headers=t.admin)).json()
        assert listed["matched"] == 2
        by_name = {p["name"]: p for p in listed["data"]}
        assert by_name["Winter"] == {
            "id": other["id"],
            "name": "Winter",
            "total": 3,
            "available": 3,
        }
        page = (await c.get(f"{base}?skip=1&count=1", headers=t.admin)).json()
        assert len(page["data"]) == 1 and page["skip"] == 1 and page["limit"] == 1

        p = await c.patch(f"{base}/{pool['id']}", json={"name": "Winter"}, headers=t.admin)
        assert p.status_code == 409
        p = await c.patch(
            f"{base}/{pool['id']}",
            json={"name": "Autumn", "expires_at": None, "low_stock_thresholds": []},
            headers=t.admin,
        )
        assert p.status_code == 200, p.text
        assert p.json()["name"] == "Autumn" and p.json()["expires_at"] is None
        assert p.json()["low_stock_thresholds"] == []
        # The old name is free again.
        assert (await c.post(base, json={"name": "Summer"}, headers=t.admin)).status_code == 201

        assert (await c.delete(f"{base}/{other['id']}", headers=t.admin)).status_code == 204
        assert (await c.get(f"{base}/{other['id']}", headers=t.admin)).status_code == 404
        assert (await c.delete(f"{base}/{other['id']}", headers=t.admin)).status_code == 404
        assert (await c.get(base, headers=t.admin)).json()["matched"] == 2


async def test_pool_validation_errors(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        base = f"/v1/projects/{t.id}/pools"
        for body in [
            {},
            {"name": ""},
            {"name": "x", "low_stock_thresholds": [-1]},
            {"name": "x", "notify": {"emails": ["not-an-email"]}},
            {"name": "x", "notify": {"webhook_url": "ftp://x"}},
            {"name": "x", "unknown_field": 1},
        ]:
            r = await c.post(base, json=body, headers=t.admin)
            assert r.status_code == 400, body
            assert r.json()["error"]["code"] == "invalid_request"
        r = await c.get(f"{base}?count=1001", headers=t.admin)
        assert r.status_code == 400
        r = await c.get(f"{base}?skip=-1", headers=t.admin)
        assert r.status_code == 400
        assert (await c.get(base, headers=t.admin)).json()["matched"] == 0


async def test_deleting_a_pool_forgets_its_issued_codes(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A", "B", "C"])
        base = f"/v1/projects/{t.id}/pools/{pool['id']}"
        assert (
            await c.post(f"{base}/issue", json={"count": 2}, headers=t.admin)
        ).status_code == 200
        assert (await c.delete(base, headers=t.admin)).status_code == 204
        assert not await redis.exists(f"cp:{{{t.id}}}:issued")
        leftovers = [k async for k in redis.scan_iter(match=f"cp:{{{t.id}}}:pool:{pool['id']}*")]
        assert leftovers == []
