"""SSRF: webhook URLs reach public addresses only, when set and again when sent."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from codepool.models import WebhookEvent
from codepool.notify import webhook
from tests.apphelpers import app_client, make_tenant
from tests.receivers import webhook_receiver

INTERNAL = [
    "http://127.0.0.1/hook",
    "http://localhost:6379/",
    "http://[::1]/hook",
    "http://2130706433/",  # 127.0.0.1 as one number
    "http://0x7f.1/",
    "http://127.1/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data",  # cloud metadata
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://0.0.0.0/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://224.0.0.1/",
    "https://user:pw@127.0.0.1:8443/hook?token=t",
]


@pytest.mark.parametrize("url", INTERNAL)
async def test_internal_webhook_urls_are_refused_when_set(redis: Redis, url: str) -> None:
    async with app_client(redis, webhook_allow_private=False) as c:
        t = await make_tenant(c)
        base = f"/v1/projects/{t.id}"
        answers = [
            await c.put(
                f"{base}/webhook", json={"url": url, "events": ["POOL_LOW"]}, headers=t.admin
            ),
            await c.post(
                f"{base}/pools", json={"name": "p", "notify": {"webhook_url": url}}, headers=t.admin
            ),
        ]
        pool = await c.post(f"{base}/pools", json={"name": "ok"}, headers=t.admin)
        answers.append(
            await c.patch(
                f"{base}/pools/{pool.json()['id']}",
                json={"notify": {"webhook_url": url}},
                headers=t.admin,
            )
        )
        for r in answers:
            assert r.status_code == 422, r.text
            assert r.json()["error"]["code"] == "webhook_url_not_allowed"
        # Nothing was stored.
        assert (await c.get(f"{base}/webhook", headers=t.admin)).status_code == 404
        pools = (await c.get(f"{base}/pools", headers=t.admin)).json()["data"]
        assert [p["name"] for p in pools] == ["ok"]
        kept = (await c.get(f"{base}/pools/{pool.json()['id']}", headers=t.admin)).json()
        assert kept["notify"]["webhook_url"] is None


async def test_a_public_address_is_taken_and_private_ones_when_allowed(redis: Redis) -> None:
    async with app_client(redis, webhook_allow_private=False) as c:
        t = await make_tenant(c)
        url = f"/v1/projects/{t.id}/webhook"
        public = {"url": "https://93.184.216.34/hook", "events": ["POOL_LOW"]}
        assert (await c.put(url, json=public, headers=t.admin)).status_code == 200
    async with app_client(redis, webhook_allow_private=True) as c:
        private = {"url": "http://127.0.0.1:9/hook", "events": ["POOL_LOW"]}
        assert (await c.put(url, json=private, headers=t.admin)).status_code == 200


async def test_a_name_that_resolves_inside_is_not_connected_to_at_send_time() -> None:
    """A URL set while its name was public and resolving inside now (DNS rebinding):
    the attempt checks the address it would connect to, and sends nothing."""
    event = WebhookEvent(id="1-0", type="POOL_LOW", time=1.0, project_id="p")
    with webhook_receiver() as hooks:
        inside = hooks.url().replace("127.0.0.1", "localhost")
        async with webhook.new_client(5.0) as client:
            refused = await webhook.post(client, inside, event, "s", 1)
        assert not refused.ok and refused.error == "connection failed"
        assert hooks.hits == []
        async with webhook.new_client(5.0, allow_private=True) as client:
            delivered = await webhook.post(client, inside, event, "s", 1)
        assert delivered.ok and len(hooks.hits) == 1
