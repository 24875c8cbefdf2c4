"""Rewards, purchases, user tokens, events and vouchers over HTTP."""

from __future__ import annotations

import time

import jwt
from redis.asyncio import Redis

from tests.apphelpers import ROOT, app_client, auth, make_pool, make_reward, make_tenant, user_token


async def test_reward_crud_and_pool_used_by(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A", "B"])
        other = await make_pool(c, t, ["Z"], name="other")
        base = f"/v1/projects/{t.id}/rewards"
        reward = await make_reward(
            c, t, pool["id"], name="Coffee", per_user_limit=2, metadata={"sku": "c1"}
        )
        assert (
            reward["available"] == 2
            and reward["hide_code"] is False
            and reward["metadata"] == {"sku": "c1"}
        )
        assert (await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)).json()[
            "used_by"
        ] == [reward["id"]]
        in_use = await c.delete(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)
        assert in_use.status_code == 409 and in_use.json()["error"]["code"] == "pool_in_use"
        assert in_use.json()["error"]["details"]["used_by"] == [reward["id"]]
        missing_pool = await c.post(base, json={"name": "x", "pool_id": "nope"}, headers=t.admin)
        assert missing_pool.status_code == 404
        moved = await c.patch(
            f"{base}/{reward['id']}",
            json={"pool_id": other["id"], "per_user_limit": None},
            headers=t.admin,
        )
        assert (
            moved.status_code == 200
            and moved.json()["pool_id"] == other["id"]
            and moved.json()["available"] == 1
        )
        assert moved.json()["per_user_limit"] is None
        assert (await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)).json()[
            "used_by"
        ] == []
        assert (
            await c.delete(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)
        ).status_code == 204
        assert (await c.delete(f"{base}/{reward['id']}", headers=t.admin)).status_code == 204
        assert (await c.get(f"{base}/{reward['id']}", headers=t.admin)).status_code == 404
        assert (await c.get(f"/v1/projects/{t.id}/pools/{other['id']}", headers=t.admin)).json()[
            "used_by"
        ] == []
        assert (
            await c.post(
                base,
                json={"name": "x", "pool_id": other["id"], "per_user_limit": 0},
                headers=t.admin,
            )
        ).status_code == 400


async def test_user_purchase_flow_and_trace(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A", "B", "C"])
        reward = await make_reward(c, t, pool["id"])
        url = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
        alice = user_token(t, "alice")
        r = await c.post(url, headers=alice)
        assert r.status_code == 201, r.text
        bought = r.json()
        assert (
            bought["user_id"] == "alice"
            and bought["code"] == "A"
            and bought["reward_id"] == reward["id"]
        )
        assert bought["purchase_id"] and bought["assigned_time"] > 0
        # Admin on behalf of a user; a user may not buy for someone else.
        r = await c.post(url, json={"user_id": "bob"}, headers=t.admin)
        assert r.status_code == 201 and r.json()["code"] == "B"
        assert (await c.post(url, json={}, headers=t.admin)).status_code == 400
        assert (await c.post(url, json={"user_id": "bob"}, headers=alice)).status_code == 403
        assert (await c.post(url, headers=t.pos)).status_code == 403

        events = (await c.get(f"/v1/projects/{t.id}/events", headers=t.admin)).json()
        purchases = [e for e in events["data"] if e["type"] == "REDEEMED_VOUCHER"]
        assert [(e["user_id"], e["code"]) for e in purchases] == [("alice", "A"), ("bob", "B")]
        assert all(e["pool_id"] == pool["id"] and e["reward_id"] == reward["id"] for e in purchases)
        mine = (await c.get(f"/v1/projects/{t.id}/events", headers=alice)).json()
        assert [e["code"] for e in mine["data"]] == ["A"]
        assert (
            await c.get(f"/v1/projects/{t.id}/events?user_id=bob", headers=alice)
        ).status_code == 403
        by_user = (
            await c.get(
                f"/v1/projects/{t.id}/events?user_id=bob&type=REDEEMED_VOUCHER", headers=t.admin
            )
        ).json()
        assert [e["code"] for e in by_user["data"]] == ["B"]
        after = (
            await c.get(f"/v1/projects/{t.id}/events?after={purchases[0]['id']}", headers=t.admin)
        ).json()
        assert purchases[0]["id"] not in [e["id"] for e in after["data"]]
        assert (
            await c.get(f"/v1/projects/{t.id}/events?after=yesterday", headers=t.admin)
        ).status_code == 400
        assert (
            await c.get(f"/v1/projects/{t.id}/events?type=NOPE", headers=t.admin)
        ).status_code == 400

        vouchers = (await c.get(f"/v1/projects/{t.id}/users/alice/vouchers", headers=alice)).json()
        assert vouchers["matched"] == 1
        v = vouchers["data"][0]
        assert (v["code"], v["status"], v["pool_id"], v["purchase_id"]) == (
            "A",
            "assigned",
            pool["id"],
            bought["purchase_id"],
        )
        assert (
            await c.get(f"/v1/projects/{t.id}/users/bob/vouchers", headers=alice)
        ).status_code == 403
        assert (await c.get(f"/v1/projects/{t.id}/users/bob/vouchers", headers=t.admin)).json()[
            "data"
        ][0]["code"] == "B"


async def test_hide_code_takes_a_code_but_does_not_show_it(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["SECRET1"])
        reward = await make_reward(c, t, pool["id"], hide_code=True)
        url = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
        carol = user_token(t, "carol")
        r = await c.post(url, headers=carol)
        assert r.status_code == 201 and r.json()["code"] is None
        r = await c.post(url, headers=user_token(t, "dave"))
        assert r.status_code == 409 and r.json()["error"]["code"] == "pool_exhausted"
        own = (await c.get(f"/v1/projects/{t.id}/users/carol/vouchers", headers=carol)).json()
        assert own["data"][0]["code"] is None
        admin_view = (
            await c.get(f"/v1/projects/{t.id}/users/carol/vouchers", headers=t.admin)
        ).json()
        assert admin_view["data"][0]["code"] == "SECRET1"
        events = (
            await c.get(f"/v1/projects/{t.id}/events?type=REDEEMED_VOUCHER", headers=t.admin)
        ).json()
        assert events["data"][0]["code"] == "SECRET1"


async def test_per_user_limit_expiry_and_listing_by_role(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"C{i}" for i in range(5)])
        empty = await make_pool(c, t, name="empty")
        expired = await make_pool(c, t, ["E1"], name="expired", expires_at=time.time() - 1)
        limited = await make_reward(c, t, pool["id"], name="limited", per_user_limit=2)
        await make_reward(c, t, empty["id"], name="sold out")
        gone = await make_reward(c, t, expired["id"], name="too late")
        erin = user_token(t, "erin")
        url = f"/v1/projects/{t.id}/rewards/{limited['id']}/purchase"
        assert (await c.post(url, headers=erin)).status_code == 201
        assert (await c.post(url, headers=erin)).status_code == 201
        r = await c.post(url, headers=erin)
        assert r.status_code == 409 and r.json()["error"]["code"] == "per_user_limit_reached"
        assert (await c.post(url, headers=user_token(t, "frank"))).status_code == 201
        r = await c.post(f"/v1/projects/{t.id}/rewards/{gone['id']}/purchase", headers=erin)
        assert r.status_code == 410 and r.json()["error"]["code"] == "pool_expired"

        admin_list = (await c.get(f"/v1/projects/{t.id}/rewards", headers=t.admin)).json()
        assert {r["name"]: r["available"] for r in admin_list["data"]} == {
            "limited": 2,
            "sold out": 0,
            "too late": 1,
        }
        user_list = (await c.get(f"/v1/projects/{t.id}/rewards", headers=erin)).json()
        assert [r["name"] for r in user_list["data"]] == ["limited"] and user_list["matched"] == 1
        assert (await c.get(f"/v1/projects/{t.id}/rewards", headers=t.pos)).status_code == 403


async def test_purchase_idempotency(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A", "B"])
        reward = await make_reward(c, t, pool["id"])
        url = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
        h = {**user_token(t, "gina"), "Idempotency-Key": "cart-1"}
        first, again = await c.post(url, headers=h), await c.post(url, headers=h)
        assert first.status_code == again.status_code == 201
        assert first.json() == again.json()
        # The same key from another user is another request, not a replay.
        other = await c.post(url, headers={**user_token(t, "hank"), "Idempotency-Key": "cart-1"})
        assert other.status_code == 201 and other.json()["code"] != first.json()["code"]
        p = (await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)).json()
        assert p["assigned"] == 2


async def test_a_retry_after_its_code_was_released_tells_it_to_nobody(redis: Redis) -> None:
    """A released code goes back to the pool and may go to someone else: a retry of the
    purchase it came from must not tell it again (that would be the same code told to
    two people). The retry is refused; a new key buys again."""
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A", "B", "C"])
        reward = await make_reward(c, t, pool["id"])
        url = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
        h = {**user_token(t, "gina"), "Idempotency-Key": "cart-1"}
        code = (await c.post(url, headers=h)).json()["code"]
        r = await c.post(f"/v1/projects/{t.id}/codes/release", json={"code": code}, headers=t.admin)
        assert r.status_code == 200, r.text
        rest = await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={"count": 3}, headers=t.admin
        )
        assert code in [x["code"] for x in rest.json()["codes"]]  # someone else's now
        again = await c.post(url, headers=h)
        assert again.status_code == 409, again.text
        assert again.json()["error"]["code"] == "codes_released"
        assert code not in again.text
        p = (await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)).json()
        assert (p["available"], p["assigned"]) == (0, 3)


async def test_bad_user_tokens_are_refused(redis: Redis) -> None:
    async with app_client(redis) as c:
        a = await make_tenant(c, "alpha")
        b = await make_tenant(c, "beta")
        pool = await make_pool(c, a, ["A"])
        reward = await make_reward(c, a, pool["id"])
        url = f"/v1/projects/{a.id}/rewards"
        assert (await c.get(url, headers=user_token(a, "u"))).status_code == 200
        expired = user_token(a, "u", ttl=-10)
        r = await c.get(url, headers=expired)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        good = user_token(a, "u")["Authorization"]
        head, payload, sig = good.split(".")
        tampered_sig = sig[:-2] + ("AA" if not sig.endswith("AA") else "BB")
        assert (
            await c.get(url, headers={"Authorization": f"{head}.{payload}.{tampered_sig}"})
        ).status_code == 401
        forged = jwt.encode(
            {"sub": "u"}, "a-guess-that-is-long-enough-for-hs256!!", algorithm="HS256"
        )
        assert (await c.get(url, headers=auth(forged))).status_code == 401
        none_alg = jwt.encode({"sub": "u"}, "", algorithm="none")
        assert (await c.get(url, headers=auth(none_alg))).status_code == 401
        no_sub = jwt.encode({"x": 1}, a.project["user_token_secret"], algorithm="HS256")
        assert (await c.get(url, headers=auth(no_sub))).status_code == 401
        # B's token is worthless in A, and A's in B.
        assert (await c.get(url, headers=user_token(b, "u"))).status_code == 401
        assert (
            await c.post(f"{url}/{reward['id']}/purchase", headers=user_token(b, "u"))
        ).status_code == 401
        assert (
            await c.get(f"/v1/projects/{b.id}/rewards", headers=user_token(a, "u"))
        ).status_code == 401
        # Users have no business outside rewards, events and their vouchers.
        assert (
            await c.get(f"/v1/projects/{a.id}/pools", headers=user_token(a, "u"))
        ).status_code == 403
        # Rotating the secret invalidates tokens signed with the old one.
        old = user_token(a, "u")
        r = await c.post(
            f"/v1/projects/{a.id}/secrets/rotate",
            json={"secret": "user_token_secret"},
            headers=a.admin,
        )
        assert r.status_code == 200
        assert (await c.get(url, headers=old)).status_code == 401
        assert (
            await c.get(url, headers=user_token(a, "u", secret=r.json()["user_token_secret"]))
        ).status_code == 200
        assert (
            await c.post(f"/v1/projects/{a.id}/secrets/rotate", json={"secret": "x"}, headers=ROOT)
        ).status_code == 400


async def test_cached_credentials_stop_working_at_once_on_the_hot_paths(redis: Redis) -> None:
    """Issue and purchase authenticate from a per-process cache; issue.lua re-checks the
    credential, so revoking a key or rotating the secret still refuses the very next call."""
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"H{i}" for i in range(10)])
        reward = await make_reward(c, t, pool["id"])
        issue = f"/v1/projects/{t.id}/pools/{pool['id']}/issue"
        buy = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"

        made = await c.post(
            f"/v1/projects/{t.id}/keys", json={"role": "admin", "name": "temp"}, headers=ROOT
        )
        temp = auth(made.json()["key"])
        assert (await c.post(issue, json={}, headers=temp)).status_code == 200  # now cached
        assert (
            await c.delete(f"/v1/projects/{t.id}/keys/{made.json()['id']}", headers=ROOT)
        ).status_code == 204
        r = await c.post(issue, json={}, headers=temp)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        r = await c.post(buy, json={"user_id": "u"}, headers=temp)
        assert r.status_code == 401

        old = user_token(t, "nina")
        assert (await c.post(buy, headers=old)).status_code == 201  # secret now cached
        rotated = await c.post(
            f"/v1/projects/{t.id}/secrets/rotate",
            json={"secret": "user_token_secret"},
            headers=t.admin,
        )
        assert (await c.post(buy, headers=old)).status_code == 401
        fresh = user_token(t, "nina", secret=rotated.json()["user_token_secret"])
        assert (await c.post(buy, headers=fresh)).status_code == 201

        p = (await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)).json()
        assert p["assigned"] == 3  # the refused calls took nothing
