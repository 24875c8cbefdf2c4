"""The project webhook and dead-letter endpoints over HTTP; the worker on both backends."""

from __future__ import annotations

from redis.asyncio import Redis

from tests.apphelpers import app_client, make_pool, make_tenant
from tests.receivers import eventually

FAST = {"notify_poll": 0.02, "delivery_backoff": 0.02}


async def test_project_webhook_put_get_delete(redis: Redis) -> None:
    async with app_client(redis, notify=False) as c:
        t = await make_tenant(c)
        other = await make_tenant(c, "other")
        url = f"/v1/projects/{t.id}/webhook"
        missing = await c.get(url, headers=t.admin)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "webhook_not_found"
        body = {
            "url": "https://hooks.example.com/codepool",
            "events": ["REDEEMED_VOUCHER", "POOL_LOW", "REDEEMED_VOUCHER"],
        }
        r = await c.put(url, json=body, headers=t.admin)
        assert r.status_code == 200, r.text
        assert r.json() == {
            "url": "https://hooks.example.com/codepool",
            "events": ["REDEEMED_VOUCHER", "POOL_LOW"],
        }
        assert (await c.get(url, headers=t.admin)).json() == r.json()
        changed = await c.put(
            url, json={"url": "http://x.test/h", "events": ["VOUCHER_USED"]}, headers=t.admin
        )
        assert changed.json() == {"url": "http://x.test/h", "events": ["VOUCHER_USED"]}

        for bad in (
            {"url": "ftp://x.test/h", "events": ["POOL_LOW"]},
            {"url": "not a url", "events": ["POOL_LOW"]},
            {"url": "https://x.test/h", "events": ["NOPE"]},
            {"url": "https://x.test/h", "events": []},
            {"url": "https://x.test/h"},
            {"url": "https://x.test/h", "events": ["POOL_LOW"], "secret": "x"},
        ):
            r = await c.put(url, json=bad, headers=t.admin)
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", bad
        assert (await c.put(url, json=body, headers=t.pos)).status_code == 403
        assert (await c.get(url, headers=t.pos)).status_code == 403
        assert (await c.get(url, headers=other.admin)).status_code == 404
        assert (await c.delete(url, headers=other.admin)).status_code == 404
        assert (await c.get(url)).status_code == 401

        assert (await c.delete(url, headers=t.admin)).status_code == 204
        assert (await c.get(url, headers=t.admin)).status_code == 404
        gone = await c.delete(url, headers=t.admin)
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "webhook_not_found"


async def test_dead_letter_endpoints(redis: Redis) -> None:
    async with app_client(redis, notify=False) as c:
        t = await make_tenant(c)
        base = f"/v1/projects/{t.id}/deliveries/dead"
        r = await c.get(base, headers=t.admin)
        assert r.status_code == 200
        assert r.json() == {
            "data": [],
            "matched": 0,
            "matched_limited": False,
            "skip": 0,
            "limit": 20,
        }
        assert (await c.get(base, headers=t.pos)).status_code == 403
        missing = await c.post(f"{base}/1-0.0/retry", headers=t.admin)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "delivery_not_found"
        assert (
            await c.get("/v1/projects/nope/deliveries/dead", headers=t.admin)
        ).status_code == 404


async def test_email_alert_without_smtp_server_goes_to_the_dead_letters(redis: Redis) -> None:
    """No CODEPOOL_SMTP_URL: retrying cannot help, so the alert is dead-lettered at once,
    visible to admins, instead of being retried forever. Issuing is not disturbed."""
    async with app_client(redis, **FAST) as c:
        t = await make_tenant(c)
        pool = await make_pool(
            c, t, ["A", "B", "C"], low_stock_thresholds=[1], notify={"emails": ["ops@example.com"]}
        )
        issue = f"/v1/projects/{t.id}/pools/{pool['id']}/issue"
        assert (await c.post(issue, json={"count": 2}, headers=t.admin)).status_code == 200
        base = f"/v1/projects/{t.id}/deliveries/dead"

        async def dead() -> list[dict[str, object]]:
            data: list[dict[str, object]] = (await c.get(base, headers=t.admin)).json()["data"]
            return data

        [letter] = await eventually(dead, what="a dead letter")
        assert letter["kind"] == "email" and letter["to"] == ["ops@example.com"]
        assert letter["attempts"] == 1 and "CODEPOOL_SMTP_URL" in str(letter["error"])
        event = letter["event"]
        assert isinstance(event, dict)
        assert (event["type"], event["pool_id"], event["threshold"], event["available"]) == (
            "POOL_LOW",
            pool["id"],
            1,
            1,
        )
        assert event["project_id"] == t.id and event["pool_name"] == "pool-1"
        assert (await c.post(issue, json={"count": 1}, headers=t.admin)).status_code == 200
