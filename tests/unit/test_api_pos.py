"""Point of sale over HTTP: validate, redeem, release; every reason and transition."""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from tests.apphelpers import (
    Client,
    Tenant,
    app_client,
    make_pool,
    make_reward,
    make_tenant,
    user_token,
)


async def _pos(
    c: Client, t: Tenant, action: str, code: str, headers: dict[str, str] | None = None
) -> Any:
    return await c.post(
        f"/v1/projects/{t.id}/codes/{action}", json={"code": code}, headers=headers or t.pos
    )


async def _counts(c: Client, t: Tenant, pool_id: str) -> tuple[int, int, int, int]:
    p = (await c.get(f"/v1/projects/{t.id}/pools/{pool_id}", headers=t.admin)).json()
    assert p["available"] + p["assigned"] + p["redeemed"] == p["total"]
    return p["total"], p["available"], p["assigned"], p["redeemed"]


async def test_validate_redeem_lifecycle(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A1", "B2"])
        reward = await make_reward(c, t, pool["id"])
        bought = (
            await c.post(
                f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase", headers=user_token(t, "kim")
            )
        ).json()
        assert bought["code"] == "A1"

        v = (await _pos(c, t, "validate", "ZZZ")).json()
        assert v == {
            "valid": False,
            "status": None,
            "reason": "unknown_code",
            "pool_id": None,
            "reward_id": None,
            "user_id": None,
            "purchase_id": None,
            "assigned_time": None,
            "redeemed_time": None,
            "hold_expires_at": None,
        }
        v = (await _pos(c, t, "validate", "B2")).json()
        assert (v["valid"], v["status"], v["reason"], v["pool_id"]) == (
            False,
            "available",
            "not_issued",
            pool["id"],
        )
        v = (await _pos(c, t, "validate", "A1")).json()
        assert (v["valid"], v["status"], v["reason"]) == (True, "assigned", None)
        assert (v["user_id"], v["reward_id"], v["purchase_id"]) == (
            "kim",
            reward["id"],
            bought["purchase_id"],
        )
        assert v["assigned_time"] == bought["assigned_time"] and v["redeemed_time"] is None
        assert await _counts(c, t, pool["id"]) == (2, 1, 1, 0)  # validate changed nothing

        r = await _pos(c, t, "redeem", "A1")
        assert r.status_code == 200, r.text
        used = r.json()
        assert (used["code"], used["status"], used["user_id"]) == ("A1", "redeemed", "kim")
        assert used["redeemed_time"] >= used["assigned_time"]
        assert await _counts(c, t, pool["id"]) == (2, 1, 0, 1)

        again = await _pos(c, t, "redeem", "A1")
        assert again.status_code == 409
        err = again.json()["error"]
        assert (
            err["code"] == "already_redeemed"
            and err["details"]["redeemed_time"] == used["redeemed_time"]
        )
        v = (await _pos(c, t, "validate", "A1")).json()
        assert (v["valid"], v["status"], v["reason"], v["redeemed_time"]) == (
            False,
            "redeemed",
            "already_redeemed",
            used["redeemed_time"],
        )
        r = await _pos(c, t, "redeem", "B2")
        assert r.status_code == 409 and r.json()["error"]["code"] == "not_issued"
        r = await _pos(c, t, "redeem", "NOPE")
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_code"
        assert (await _pos(c, t, "redeem", "")).status_code == 400

        events = (
            await c.get(f"/v1/projects/{t.id}/events?type=VOUCHER_USED", headers=t.admin)
        ).json()["data"]
        assert [(e["code"], e["user_id"]) for e in events] == [("A1", "kim")]
        vouchers = (await c.get(f"/v1/projects/{t.id}/users/kim/vouchers", headers=t.admin)).json()[
            "data"
        ]
        assert [(x["code"], x["status"], x["redeemed_time"]) for x in vouchers] == [
            ("A1", "redeemed", used["redeemed_time"])
        ]
        listed = (
            await c.get(
                f"/v1/projects/{t.id}/pools/{pool['id']}/codes?status=redeemed", headers=t.admin
            )
        ).json()
        assert [(x["code"], x["redeemed_time"]) for x in listed["data"]] == [
            ("A1", used["redeemed_time"])
        ]


async def test_a_string_uploaded_thrice_redeems_once_per_issued_instance(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["SAVE10", "SAVE10", "SAVE10"])
        base = f"/v1/projects/{t.id}/pools/{pool['id']}"
        await c.post(f"{base}/issue", json={"count": 2}, headers=t.admin)
        assert (await _pos(c, t, "redeem", "SAVE10")).status_code == 200
        v = (await _pos(c, t, "validate", "SAVE10")).json()
        assert v["valid"] is True  # one issued instance is still assigned
        assert (await _pos(c, t, "redeem", "SAVE10")).status_code == 200
        third = await _pos(c, t, "redeem", "SAVE10")
        assert third.status_code == 409 and third.json()["error"]["code"] == "already_redeemed"
        assert await _counts(c, t, pool["id"]) == (3, 1, 0, 2)
        await c.post(f"{base}/issue", json={"count": 1}, headers=t.admin)
        assert (await _pos(c, t, "redeem", "SAVE10")).status_code == 200
        assert await _counts(c, t, pool["id"]) == (3, 0, 0, 3)


async def test_release_and_reissue(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["R1", "R2"])
        reward = await make_reward(c, t, pool["id"], per_user_limit=1)
        buy = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
        lee = user_token(t, "lee")
        assert (await c.post(buy, headers=lee)).json()["code"] == "R1"
        assert (await c.post(buy, headers=lee)).json()["error"]["code"] == "per_user_limit_reached"
        # pos may not release; admin may.
        assert (await _pos(c, t, "release", "R1")).status_code == 403
        r = await _pos(c, t, "release", "R1", t.admin)
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["user_id"], r.json()["available"]) == (
            "available",
            "lee",
            2,
        )
        assert await _counts(c, t, pool["id"]) == (2, 2, 0, 0)
        v = (await _pos(c, t, "validate", "R1")).json()
        assert v["reason"] == "not_issued"
        assert (await c.get(f"/v1/projects/{t.id}/users/lee/vouchers", headers=t.admin)).json()[
            "matched"
        ] == 0
        # The hold is given back: the user may buy again; R1 went to the back of the line.
        assert (await c.post(buy, headers=lee)).json()["code"] == "R2"
        assert (await c.post(buy, headers=user_token(t, "max"))).json()["code"] == "R1"
        assert (await _pos(c, t, "redeem", "R1")).status_code == 200
        r = await _pos(c, t, "release", "R1", t.admin)
        assert r.status_code == 409 and r.json()["error"]["code"] == "already_redeemed"
        assert (await _pos(c, t, "release", "NOPE", t.admin)).status_code == 404
        types = [
            e["type"]
            for e in (await c.get(f"/v1/projects/{t.id}/events?count=100", headers=t.admin)).json()[
                "data"
            ]
        ]
        assert types.count("VOUCHER_RELEASED") == 1 and types.count("VOUCHER_USED") == 1
        listed = (
            await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}/codes", headers=t.admin)
        ).json()
        assert sorted((x["code"], x["status"], x["user_id"]) for x in listed["data"]) == [
            ("R1", "redeemed", "max"),
            ("R2", "assigned", "lee"),
        ]


async def test_release_of_never_issued_code(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        await make_pool(c, t, ["N1"])
        r = await _pos(c, t, "release", "N1", t.admin)
        assert r.status_code == 409 and r.json()["error"]["code"] == "not_issued"


async def test_expired_pool(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["X1", "X2"])
        base = f"/v1/projects/{t.id}/pools/{pool['id']}"
        await c.post(f"{base}/issue", json={"count": 1}, headers=t.admin)
        await c.patch(base, json={"expires_at": time.time() - 1}, headers=t.admin)
        v = (await _pos(c, t, "validate", "X1")).json()
        assert (v["valid"], v["status"], v["reason"]) == (False, "assigned", "pool_expired")
        r = await _pos(c, t, "redeem", "X1")
        assert r.status_code == 410 and r.json()["error"]["code"] == "pool_expired"
        r = await c.post(f"{base}/issue", json={"count": 1}, headers=t.admin)
        assert r.status_code == 410 and r.json()["error"]["code"] == "pool_expired"
        assert await _counts(c, t, pool["id"]) == (2, 1, 1, 0)
        await c.patch(base, json={"expires_at": None}, headers=t.admin)
        assert (await _pos(c, t, "redeem", "X1")).status_code == 200


async def test_pos_key_can_do_nothing_else(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        other = await make_tenant(c, "other")
        pool = await make_pool(c, t, ["P1"])
        reward = await make_reward(c, t, pool["id"])
        await c.post(f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={}, headers=t.admin)
        for method, path, body in [
            ("GET", f"/v1/projects/{t.id}/rewards", None),
            ("POST", f"/v1/projects/{t.id}/rewards", {"name": "x", "pool_id": pool["id"]}),
            ("GET", f"/v1/projects/{t.id}/rewards/{reward['id']}", None),
            ("POST", f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase", {"user_id": "u"}),
            ("GET", f"/v1/projects/{t.id}/events", None),
            ("GET", f"/v1/projects/{t.id}/users/u/vouchers", None),
            ("POST", f"/v1/projects/{t.id}/codes/release", {"code": "P1"}),
            ("GET", f"/v1/projects/{t.id}/keys", None),
            ("POST", f"/v1/projects/{t.id}/secrets/rotate", {"secret": "webhook_secret"}),
        ]:
            r = await c.request(method, path, json=body, headers=t.pos)
            assert r.status_code == 403, (method, path, r.text)
        # Nor anything in another project, where it does not even see the code.
        assert (await _pos(c, other, "validate", "P1", t.pos)).status_code == 404
        # Users cannot use the till either.
        assert (await _pos(c, t, "redeem", "P1", user_token(t, "u"))).status_code == 403
        assert (await _pos(c, t, "validate", "P1")).json()["valid"] is True


async def test_never_issued_codes_deep_in_a_long_pool(redis: Redis) -> None:
    """Past the in-script scan bound the search goes on in slices: still exact."""
    async with app_client(redis) as c:
        t = await make_tenant(c)
        codes = [f"D{i:06d}" for i in range(90_000)]
        pool = await make_pool(c, t, codes)
        await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={"count": 5}, headers=t.admin
        )
        for code in ("D000010", "D060001", "D089999"):
            v = (await _pos(c, t, "validate", code)).json()
            assert (v["reason"], v["pool_id"]) == ("not_issued", pool["id"]), code
        r = await _pos(c, t, "redeem", "D075000")
        assert r.status_code == 409 and r.json()["error"]["code"] == "not_issued"
        r = await _pos(c, t, "release", "D075000", t.admin)
        assert r.status_code == 409 and r.json()["error"]["code"] == "not_issued"
        assert (await _pos(c, t, "validate", "NOT-THERE")).json()["reason"] == "unknown_code"
        assert (await _pos(c, t, "redeem", "NOT-THERE")).status_code == 404
        assert (await _pos(c, t, "validate", "D000002")).json()["valid"] is True
