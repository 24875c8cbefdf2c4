"""Low-stock alerts and webhooks end to end: a real redis-server, a real SMTP server
(aiosmtpd) and a real HTTP receiver on loopback, app instances with their delivery
workers. Waiting is polling with a deadline, never a fixed sleep."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import pytest
from redis.asyncio import Redis

from codepool import keys
from codepool.app import create_app
from codepool.notify.store import DeliveryStore
from codepool.store.base import Backend
from tests.apphelpers import (
    Client,
    Tenant,
    app_client,
    make_pool,
    make_reward,
    make_tenant,
    serve_app,
    settings_for_tests,
    user_token,
)
from tests.receivers import Hit, eventually, mail_sink, signature_ok, webhook_receiver
from tests.servers import free_port

pytestmark = pytest.mark.real


def _fast(**overrides: Any) -> dict[str, Any]:
    """Settings that make a test's retries and take-overs take moments, not minutes."""
    return {
        "notify_poll": 0.05,
        "delivery_backoff": 0.05,
        "webhook_timeout": 1.0,
        "delivery_lease": 1.5,
        **overrides,
    }


async def _settled(redis: Redis, project_id: str) -> bool:
    """Nothing left to do: every outbox entry fanned out, every delivery done or dead."""
    outbox = await redis.xlen(keys.outbox(project_id))
    queued = await redis.zcard(keys.delivery_queue(project_id))
    return outbox == 0 and queued == 0


async def settle(redis: Redis, project_id: str) -> None:
    await eventually(lambda: _settled(redis, project_id), what="deliveries to settle")


def _order(hit: Hit) -> tuple[int, int]:
    ms, seq = str(hit.event["id"]).split("-")
    return int(ms), int(seq)


async def _issue(c: Client, t: Tenant, pool_id: str, count: int = 1) -> None:
    r = await c.post(
        f"/v1/projects/{t.id}/pools/{pool_id}/issue", json={"count": count}, headers=t.admin
    )
    assert r.status_code == 200, r.text


async def _purchase(c: Client, t: Tenant, reward_id: str, user: str) -> dict[str, Any]:
    r = await c.post(
        f"/v1/projects/{t.id}/rewards/{reward_id}/purchase", headers=user_token(t, user)
    )
    assert r.status_code == 201, r.text
    bought: dict[str, Any] = r.json()
    return bought


async def _event_ids(c: Client, t: Tenant, event_type: str) -> list[str]:
    r = await c.get(f"/v1/projects/{t.id}/events?type={event_type}&count=1000", headers=t.admin)
    return [e["id"] for e in r.json()["data"]]


async def test_one_alert_per_crossing_by_email_and_webhook_and_again_after_refill(
    real_redis: Redis,
) -> None:
    with mail_sink() as sink, webhook_receiver() as hooks:
        settings = _fast(smtp_url=sink.url, smtp_from="alerts@codepool.test")
        async with app_client(real_redis, **settings) as c:
            t = await make_tenant(c)
            pool = await make_pool(
                c,
                t,
                [f"C{i}" for i in range(8)],
                name="Summer",
                low_stock_thresholds=[5, 2],
                notify={"emails": ["ops@shop.test", "boss@shop.test"], "webhook_url": hooks.url()},
            )
            for _ in range(8):  # one at a time, down to 0: crosses 5, 2, then exhausted
                await _issue(c, t, pool["id"])
            await settle(real_redis, t.id)

            alerts = sorted(hooks.ok(), key=_order)
            assert [
                (h.event["type"], h.event.get("threshold"), h.event["available"]) for h in alerts
            ] == [
                ("POOL_LOW", 5, 5),
                ("POOL_LOW", 2, 2),
                ("POOL_EXHAUSTED", None, 0),
            ]
            assert len(sink.messages) == 3
            low_ids = await _event_ids(c, t, "POOL_LOW")
            assert [h.event["id"] for h in alerts[:2]] == low_ids

            # A refill to 4 re-arms threshold 2 (not 5: the stock is not above it).
            r = await c.post(
                f"/v1/projects/{t.id}/pools/{pool['id']}/codes",
                content="R1,R2,R3,R4",
                headers={**t.admin, "Content-Type": "text/plain"},
            )
            assert r.json()["available"] == 4
            await _issue(c, t, pool["id"], 2)  # 2 left: crosses 2 again
            await settle(real_redis, t.id)

    alerts = sorted(hooks.ok(), key=_order)
    assert len(alerts) == len(hooks.hits) == 4  # no failure, no duplicate
    assert (alerts[-1].event["type"], alerts[-1].event["threshold"]) == ("POOL_LOW", 2)
    secret = t.project["webhook_secret"]
    for hit in alerts:
        assert signature_ok(hit.body, hit.headers["x-codepool-signature"], secret)
        assert hit.headers["content-type"] == "application/json"
        assert hit.headers["x-codepool-event-id"] == hit.event["id"]
        assert hit.headers["x-codepool-delivery-attempt"] == "1"
        assert hit.event["project_id"] == t.id and hit.event["pool_id"] == pool["id"]
        assert hit.event["pool_name"] == "Summer"

    assert len(sink.messages) == 4
    assert sink.authenticated == [True] * 4  # logged in with the URL's user and password
    assert all(
        env == ("alerts@codepool.test", ["ops@shop.test", "boss@shop.test"])
        for env in sink.envelopes
    )
    texts = [m.get_content() for m in sink.messages]
    subjects = sorted(str(m["Subject"]) for m in sink.messages)
    assert subjects == sorted(
        [
            "[codepool] Acme: pool Summer is low (5 left)",
            "[codepool] Acme: pool Summer is low (2 left)",
            "[codepool] Acme: pool Summer is low (2 left)",
            "[codepool] Acme: pool Summer is exhausted",
        ]
    )
    crossing_5 = next(text for text in texts if "Threshold:  5" in text)
    for part in ("Acme (acme)", f"Summer ({pool['id']})", "Available:  5"):
        assert part in crossing_5


async def test_a_failing_receiver_still_gets_the_message_once(real_redis: Redis) -> None:
    with webhook_receiver() as hooks:
        hooks.fail_first = 2
        async with app_client(real_redis, **_fast()) as c:
            t = await make_tenant(c)
            pool = await make_pool(
                c, t, ["A", "B"], low_stock_thresholds=[1], notify={"webhook_url": hooks.url()}
            )
            await _issue(c, t, pool["id"])
            await settle(real_redis, t.id)
            dead = (await c.get(f"/v1/projects/{t.id}/deliveries/dead", headers=t.admin)).json()
    assert [h.status for h in hooks.hits] == [500, 500, 200]
    assert [h.headers["x-codepool-delivery-attempt"] for h in hooks.hits] == ["1", "2", "3"]
    assert len({h.body for h in hooks.hits}) == 1  # the same bytes, the same event id
    assert len({h.headers["x-codepool-event-id"] for h in hooks.hits}) == 1
    assert all(
        signature_ok(h.body, h.headers["x-codepool-signature"], t.project["webhook_secret"])
        for h in hooks.hits
    )
    assert dead["matched"] == 0


async def test_a_delivery_that_keeps_failing_is_dead_lettered_and_can_be_requeued(
    real_redis: Redis,
) -> None:
    with webhook_receiver() as hooks:
        hooks.fail_all = True
        async with app_client(real_redis, **_fast(delivery_max_attempts=3)) as c:
            t = await make_tenant(c)
            pool = await make_pool(c, t, ["ONLY"], notify={"webhook_url": hooks.url()})
            await _issue(c, t, pool["id"])  # 0 left: POOL_EXHAUSTED
            base = f"/v1/projects/{t.id}/deliveries/dead"

            async def dead() -> list[dict[str, Any]]:
                data: list[dict[str, Any]] = (await c.get(base, headers=t.admin)).json()["data"]
                return data

            [letter] = await eventually(dead, what="a dead letter")
            assert len(hooks.hits) == 3
            assert (letter["kind"], letter["url"], letter["attempts"], letter["error"]) == (
                "webhook",
                hooks.url(),
                3,
                "HTTP 500",
            )
            assert letter["event"]["type"] == "POOL_EXHAUSTED"
            assert letter["event"]["id"] == hooks.hits[0].headers["x-codepool-event-id"]
            assert (await c.get(base, headers=t.pos)).status_code == 403

            hooks.fail_all = False
            retry = await c.post(f"{base}/{letter['id']}/retry", headers=t.admin)
            assert retry.status_code == 204
            await eventually(hooks.ok, what="the requeued delivery")
            await settle(real_redis, t.id)
            assert await dead() == []
            assert (
                await c.post(f"{base}/{letter['id']}/retry", headers=t.admin)
            ).status_code == 404
    [delivered] = hooks.ok()
    assert delivered.headers["x-codepool-delivery-attempt"] == "1"  # a fresh count


async def test_project_webhook_gets_every_purchase_signed(real_redis: Redis) -> None:
    with webhook_receiver() as hooks:
        async with app_client(real_redis, **_fast()) as c:
            t = await make_tenant(c)
            hook = {"url": hooks.url("/project"), "events": ["REDEEMED_VOUCHER"]}
            r = await c.put(f"/v1/projects/{t.id}/webhook", json=hook, headers=t.admin)
            assert r.status_code == 200, r.text
            pool = await make_pool(c, t, [f"P{i}" for i in range(8)])
            reward = await make_reward(c, t, pool["id"])
            bought = [await _purchase(c, t, reward["id"], f"user-{i}") for i in range(5)]
            redeem = await c.post(
                f"/v1/projects/{t.id}/codes/redeem", json={"code": "P0"}, headers=t.pos
            )
            assert redeem.status_code == 200  # VOUCHER_USED: not subscribed
            await settle(real_redis, t.id)
            assert len(hooks.hits) == 5

            got = {h.event["purchase_id"]: h.event for h in hooks.ok()}
            for b in bought:
                e = got[b["purchase_id"]]
                assert (e["type"], e["code"], e["user_id"], e["reward_id"], e["pool_id"]) == (
                    "REDEEMED_VOUCHER",
                    b["code"],
                    b["user_id"],
                    reward["id"],
                    pool["id"],
                )
                assert e["project_id"] == t.id
            assert sorted(got[b["purchase_id"]]["id"] for b in bought) == sorted(
                await _event_ids(c, t, "REDEEMED_VOUCHER")
            )
            assert all(
                signature_ok(h.body, h.headers["x-codepool-signature"], t.project["webhook_secret"])
                for h in hooks.hits
            )

            # A rotated secret signs the very next delivery.
            rotated = await c.post(
                f"/v1/projects/{t.id}/secrets/rotate",
                json={"secret": "webhook_secret"},
                headers=t.admin,
            )
            new_secret = rotated.json()["webhook_secret"]
            await _purchase(c, t, reward["id"], "user-5")
            await settle(real_redis, t.id)
            last = hooks.hits[-1]
            assert signature_ok(last.body, last.headers["x-codepool-signature"], new_secret)
            assert not signature_ok(
                last.body, last.headers["x-codepool-signature"], t.project["webhook_secret"]
            )

            # Deleted: no more deliveries.
            assert (
                await c.delete(f"/v1/projects/{t.id}/webhook", headers=t.admin)
            ).status_code == 204
            await _purchase(c, t, reward["id"], "user-6")
            await settle(real_redis, t.id)
    assert len(hooks.hits) == 6


async def test_a_restart_in_the_middle_loses_nothing(
    real_redis: Redis, redis_server_url: str
) -> None:
    settings = _fast()
    with webhook_receiver() as hooks:
        async with app_client(real_redis, notify=False) as setup:
            t = await make_tenant(setup)
            hook = {"url": hooks.url(), "events": ["REDEEMED_VOUCHER"]}
            await setup.put(f"/v1/projects/{t.id}/webhook", json=hook, headers=t.admin)
            pool = await make_pool(setup, t, [f"R{i}" for i in range(10)])
            reward = await make_reward(setup, t, pool["id"])
            for i in range(3):
                await _purchase(setup, t, reward["id"], f"early-{i}")
        # A worker that died right after reading: three entries taken, never fanned out.
        store = DeliveryStore(Backend(real_redis, settings_for_tests(**settings)))
        await store.ensure_group(t.id)
        [(_, taken)] = await store.read([t.id], "crashed", 10, 50)
        assert len(taken) == 3

        # Instance A takes three more and stops while the receiver holds them: nothing
        # is acknowledged, nothing delivered.
        hooks.hold = True
        async with app_client(real_redis, **settings) as a:
            for i in range(3):
                await _purchase(a, t, reward["id"], f"late-{i}")
            await eventually(lambda: len(hooks.open()) >= 3, what="A to be mid-send")
        assert hooks.ok() == []
        hooks.release()

        # A fresh instance: once the leases of the dead end, it delivers all six.
        async with app_client(real_redis, **settings) as b:
            await settle(real_redis, t.id)
            event_ids = await _event_ids(b, t, "REDEEMED_VOUCHER")
    assert len(event_ids) == 6
    assert sorted(h.event["id"] for h in hooks.ok()) == sorted(event_ids)
    assert (await real_redis.xpending(keys.outbox(t.id), "notify"))["pending"] == 0


async def test_two_instances_deliver_each_message_once(
    real_redis: Redis, redis_server_url: str
) -> None:
    with mail_sink() as sink, webhook_receiver() as hooks:
        async with app_client(real_redis, notify=False) as setup:
            t = await make_tenant(setup)
            hook = {"url": hooks.url("/project"), "events": ["REDEEMED_VOUCHER"]}
            await setup.put(f"/v1/projects/{t.id}/webhook", json=hook, headers=t.admin)
            pool = await make_pool(
                setup,
                t,
                [f"T{i}" for i in range(40)],
                low_stock_thresholds=[10],
                notify={"emails": ["ops@shop.test"], "webhook_url": hooks.url("/pool")},
            )
            reward = await make_reward(setup, t, pool["id"])
        settings = settings_for_tests(redis_url=redis_server_url, **_fast(smtp_url=sink.url))
        async with AsyncExitStack() as stack:
            apps = [
                await stack.enter_async_context(serve_app(create_app(settings))) for _ in range(2)
            ]
            await asyncio.gather(
                *(_purchase(apps[i % 2], t, reward["id"], f"u{i}") for i in range(30))
            )
            await settle(real_redis, t.id)
            workers = [a.app.state.services.notifier for a in apps]
    # 30 purchases to the project hook, one alert to the pool hook and by email.
    assert sum(w.delivered for w in workers) == 32
    project_hits = [h for h in hooks.hits if h.path == "/project"]
    assert len(project_hits) == 30  # no duplicate
    assert len({h.event["id"] for h in project_hits}) == 30
    assert [h.event["type"] for h in hooks.hits if h.path == "/pool"] == ["POOL_LOW"]
    assert all(h.status == 200 for h in hooks.hits)
    assert len(sink.messages) == 1


async def test_issuing_goes_on_while_every_receiver_is_down(
    real_redis: Redis, redis_server_url: str
) -> None:
    """A receiver that hangs, a webhook URL on a closed port, an SMTP server that is not
    there: purchases all succeed while those deliveries hang and fail, and every alert
    waits, queued, for its turn."""
    closed = f"http://127.0.0.1:{free_port()}/hook"
    settings = _fast(
        smtp_url=f"smtp://127.0.0.1:{free_port()}",
        webhook_timeout=5.0,
        delivery_lease=6.0,
        delivery_max_attempts=100,
    )
    with webhook_receiver() as hooks:
        hooks.hold = True
        # Its own client, as `codepool serve` builds it: bursts wait for a connection.
        app = create_app(settings_for_tests(redis_url=redis_server_url, **settings))
        async with serve_app(app) as c:
            t = await make_tenant(c)
            hook = {"url": hooks.url(), "events": ["POOL_LOW", "POOL_EXHAUSTED"]}
            await c.put(f"/v1/projects/{t.id}/webhook", json=hook, headers=t.admin)
            pool = await make_pool(
                c,
                t,
                [f"B{i:03d}" for i in range(200)],
                low_stock_thresholds=[150, 100, 50],
                notify={"emails": ["ops@shop.test"], "webhook_url": closed},
            )
            reward = await make_reward(c, t, pool["id"])
            url = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"

            async def burst(users: range) -> None:
                replies = await asyncio.gather(
                    *(c.post(url, headers=user_token(t, f"u{i}")) for i in users)
                )
                assert [r.status_code for r in replies] == [201] * len(users)

            await burst(range(100))  # crosses 150 and 100

            async def retrying() -> bool:
                attempts = await real_redis.hvals(keys.delivery_attempts(t.id))
                return any(int(n) >= 2 for n in attempts)

            await eventually(hooks.open, what="deliveries hanging at the receiver")
            await eventually(retrying, what="failed deliveries being retried")
            await burst(range(100, 200))  # crosses 50, then exhausted
            assert hooks.open() and await retrying()  # still down, still failing

            p = (await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)).json()
            assert (p["available"], p["assigned"]) == (0, 200)
            # 4 alerts x (hanging hook, closed hook, email): all queued, none lost, none sent.
            await eventually(
                lambda: _count(real_redis, keys.deliveries(t.id), 12), what="12 deliveries"
            )
            dead = (await c.get(f"/v1/projects/{t.id}/deliveries/dead", headers=t.admin)).json()
            assert dead["matched"] == 0
        assert hooks.ok() == []


async def _count(redis: Redis, key: str, expected: int) -> bool:
    return int(await redis.hlen(key)) == expected
