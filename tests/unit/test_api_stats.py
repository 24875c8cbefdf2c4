"""GET .../pools/{pool}/stats and the pool field empty_soon_alerts, over HTTP."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from codepool.store import stats as stats_module
from tests.apphelpers import ROOT, app_client, make_pool, make_tenant, user_token


async def test_stats_shape_zeros_and_counts(redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"C{i}" for i in range(10)])
        base = f"/v1/projects/{t.id}/pools/{pool['id']}"
        issued = await c.post(f"{base}/issue", json={"count": 3}, headers=t.admin)
        assert issued.status_code == 200
        first = issued.json()["codes"][0]
        redeem = await c.post(
            f"/v1/projects/{t.id}/codes/redeem", json={"code": first["code"]}, headers=t.pos
        )
        assert redeem.status_code == 200
        release = await c.post(
            f"/v1/projects/{t.id}/codes/release",
            json={"code": issued.json()["codes"][1]["code"]},
            headers=t.admin,
        )
        assert release.status_code == 200
        # Asked a minute after the hand-outs: the window holds their minute and this one.
        at = first["assigned_time"] + 60
        monkeypatch.setattr(stats_module, "now", lambda: at)
        r = await c.get(f"{base}/stats?minutes=5", headers=t.admin)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"pool_id", "available", "rate_per_minute", "empty_at", "series"}
        assert body["pool_id"] == pool["id"] and body["available"] == 8
        series = body["series"]
        assert len(series) == 5
        assert [p["t"] for p in series] == [(at // 60 - 4 + i) * 60 for i in range(5)]
        # The hand-outs in their minute (one script call, one `now`); the redeem and the
        # release a moment later, in that minute or the next.
        assert series[3]["t"] == first["assigned_time"] // 60 * 60
        assert series[3]["issued"] == 3 and sum(p["issued"] for p in series) == 3
        assert sum(p["redeemed"] for p in series) == sum(p["released"] for p in series) == 1
        zeros = [p for p in series if p["issued"] == p["redeemed"] == p["released"] == 0]
        assert len(zeros) >= 3
        # 3 in the minute before: a rate (the weighted mean of the whole minutes), an end.
        assert body["rate_per_minute"] > 0
        assert body["empty_at"] == pytest.approx(at + 8 * 60 / body["rate_per_minute"], abs=1)

        default = (await c.get(f"{base}/stats", headers=t.admin)).json()
        assert len(default["series"]) == 60
        week = (await c.get(f"{base}/stats?minutes=10080", headers=ROOT)).json()
        assert len(week["series"]) == 10080 and sum(p["issued"] for p in week["series"]) == 3


async def test_stats_of_an_idle_pool(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A"])
        r = await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}/stats?minutes=1", headers=t.admin)
        body = r.json()
        assert body["rate_per_minute"] == 0 and body["empty_at"] is None
        assert body["available"] == 1 and len(body["series"]) == 1
        assert body["series"][0]["t"] % 60 == 0


async def test_stats_bounds_roles_and_other_projects(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        other = await make_tenant(c, "other")
        pool = await make_pool(c, t, ["A"])
        url = f"/v1/projects/{t.id}/pools/{pool['id']}/stats"
        for bad in ("0", "10081", "-1", "x"):
            r = await c.get(f"{url}?minutes={bad}", headers=t.admin)
            assert r.status_code == 400, (bad, r.text)
            assert "error" in r.json()
        assert (await c.get(url, headers=t.pos)).status_code == 403
        assert (await c.get(url, headers=user_token(t, "u1"))).status_code == 403
        assert (await c.get(url, headers=other.admin)).status_code == 404
        missing = await c.get(f"/v1/projects/{t.id}/pools/nope/stats", headers=t.admin)
        assert missing.status_code == 404
        assert (await c.get(url)).status_code == 401


async def test_empty_soon_alerts_field(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        base = f"/v1/projects/{t.id}/pools"
        r = await c.post(
            base, json={"name": "p", "empty_soon_alerts": [600, 60, 600]}, headers=t.admin
        )
        assert r.status_code == 201, r.text
        pool = r.json()
        assert pool["empty_soon_alerts"] == [60, 600]
        got = (await c.get(f"{base}/{pool['id']}", headers=t.admin)).json()
        assert got["empty_soon_alerts"] == [60, 600]
        assert (await c.post(base, json={"name": "q"}, headers=t.admin)).json()[
            "empty_soon_alerts"
        ] == []
        p = await c.patch(
            f"{base}/{pool['id']}", json={"empty_soon_alerts": [3600]}, headers=t.admin
        )
        assert p.status_code == 200 and p.json()["empty_soon_alerts"] == [3600]
        p = await c.patch(f"{base}/{pool['id']}", json={"name": "renamed"}, headers=t.admin)
        assert p.json()["empty_soon_alerts"] == [3600]
        p = await c.patch(f"{base}/{pool['id']}", json={"empty_soon_alerts": []}, headers=t.admin)
        assert p.json()["empty_soon_alerts"] == []
        for bad in ([0], [-5], [1.5], ["x"], list(range(1, 12)), [2_678_401]):
            r = await c.post(
                base, json={"name": f"bad-{bad!s}", "empty_soon_alerts": bad}, headers=t.admin
            )
            assert r.status_code == 400, (bad, r.text)
            r = await c.patch(
                f"{base}/{pool['id']}", json={"empty_soon_alerts": bad}, headers=t.admin
            )
            assert r.status_code == 400, (bad, r.text)
