"""The fast ASGI shell of issue and purchase (api/fast.py) answers as Litestar does.

Every request of a table goes to an app with the fast routes and to one without them
(``fast_routes=False``), each on an empty Redis; the answers must match in status,
error code, message and details, and in the shape of a success. Ids the server picks
are replaced by their names before comparing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from codepool.api.fast import MAX_BODY
from tests.apphelpers import (
    ROOT,
    Client,
    Tenant,
    app_client,
    auth,
    make_pool,
    make_reward,
    make_tenant,
    user_token,
)

Ask = Callable[[Client, "World"], Awaitable[Any]]


class World(msgspec.Struct, kw_only=True):
    t: Tenant
    other: Tenant
    pool: str
    small: str
    reward: str
    limited: str

    def issue(self, pool: str | None = None) -> str:
        return f"/v1/projects/{self.t.id}/pools/{pool or self.pool}/issue"

    def purchase(self, reward: str | None = None) -> str:
        return f"/v1/projects/{self.t.id}/rewards/{reward or self.reward}/purchase"


async def _world(c: Client) -> World:
    t = await make_tenant(c)
    other = await make_tenant(c, "other")
    pool = await make_pool(c, t, [f"C{i:04d}" for i in range(100)])
    small = await make_pool(c, t, ["S1"], name="small")
    reward = await make_reward(c, t, pool["id"])
    limited = await make_reward(c, t, pool["id"], name="once", per_user_limit=1)
    return World(
        t=t,
        other=other,
        pool=pool["id"],
        small=small["id"],
        reward=reward["id"],
        limited=limited["id"],
    )


def _json(w: World, **extra: str) -> dict[str, str]:
    return {**w.t.admin, "Content-Type": "application/json", **extra}


# name -> the request(s) it makes; what each returns is compared between the shells.
CASES: dict[str, Ask] = {
    "issue": lambda c, w: c.post(w.issue(), content=b'{"count":2}', headers=_json(w)),
    "issue empty object": lambda c, w: c.post(w.issue(), content=b"{}", headers=_json(w)),
    "issue lax number": lambda c, w: c.post(w.issue(), content=b'{"count":"3"}', headers=_json(w)),
    "issue for a user": lambda c, w: c.post(
        w.issue(), json={"count": 1, "user_id": "u-1"}, headers=w.t.admin
    ),
    "issue trailing slash": lambda c, w: c.post(w.issue() + "/", json={}, headers=w.t.admin),
    "issue no body": lambda c, w: c.post(w.issue(), headers=w.t.admin),
    "issue count 0": lambda c, w: c.post(w.issue(), json={"count": 0}, headers=w.t.admin),
    "issue held": lambda c, w: c.post(
        w.issue(), json={"count": 2, "hold_seconds": 30}, headers=w.t.admin
    ),
    "issue hold 0": lambda c, w: c.post(w.issue(), json={"hold_seconds": 0}, headers=w.t.admin),
    "issue hold too long": lambda c, w: c.post(
        w.issue(), json={"hold_seconds": 86401}, headers=w.t.admin
    ),
    "purchase held": lambda c, w: c.post(
        w.purchase(), json={"hold_seconds": 60}, headers=user_token(w.t, "u-5")
    ),
    "issue count too big": lambda c, w: c.post(w.issue(), json={"count": 10**9}, headers=w.t.admin),
    "issue bad json": lambda c, w: c.post(w.issue(), content=b"nope", headers=_json(w)),
    "issue array": lambda c, w: c.post(w.issue(), content=b"[]", headers=_json(w)),
    "issue unknown field": lambda c, w: c.post(w.issue(), json={"x": 1}, headers=w.t.admin),
    "issue bad user id": lambda c, w: c.post(w.issue(), json={"user_id": 5}, headers=w.t.admin),
    "issue no auth": lambda c, w: c.post(w.issue(), json={}),
    "issue bad scheme": lambda c, w: c.post(
        w.issue(), json={}, headers={"Authorization": "Basic abc"}
    ),
    "issue bad key": lambda c, w: c.post(w.issue(), json={}, headers=auth("cp_nope_nope")),
    "issue pos key": lambda c, w: c.post(w.issue(), json={}, headers=w.t.pos),
    "issue user token": lambda c, w: c.post(w.issue(), json={}, headers=user_token(w.t, "u-1")),
    "issue other project": lambda c, w: c.post(w.issue(), json={}, headers=w.other.admin),
    "issue unknown pool": lambda c, w: c.post(w.issue("nope"), json={}, headers=w.t.admin),
    "issue exhausted": lambda c, w: c.post(w.issue(w.small), json={"count": 2}, headers=w.t.admin),
    "issue pool id of another key": lambda c, w: c.post(
        w.issue(w.pool + ":avail"), json={}, headers=w.t.admin
    ),
    "issue project id of another key": lambda c, w: c.post(
        w.issue().replace(w.t.id, w.t.id + ":x"), json={}, headers=ROOT
    ),
    "issue idempotent": lambda c, w: _twice(
        c,
        w.issue(),
        [{"count": 2}, {"count": 2}, {"count": 1}],
        _json(w, **{"Idempotency-Key": "k1"}),
    ),
    "issue bad idempotency key": lambda c, w: c.post(
        w.issue(), json={}, headers={**w.t.admin, "Idempotency-Key": "k" * 256}
    ),
    "issue wrong method": lambda c, w: c.get(w.issue(), headers=w.t.admin),
    "purchase by user": lambda c, w: c.post(w.purchase(), headers=user_token(w.t, "u-1")),
    "purchase null body": lambda c, w: c.post(
        w.purchase(), content=b"null", headers=user_token(w.t, "u-2")
    ),
    "purchase own id": lambda c, w: c.post(
        w.purchase(), json={"user_id": "u-3"}, headers=user_token(w.t, "u-3")
    ),
    "purchase for another": lambda c, w: c.post(
        w.purchase(), json={"user_id": "u-9"}, headers=user_token(w.t, "u-3")
    ),
    "purchase by admin": lambda c, w: c.post(
        w.purchase(), json={"user_id": "u-4"}, headers=w.t.admin
    ),
    "purchase admin no user": lambda c, w: c.post(w.purchase(), headers=w.t.admin),
    "purchase pos key": lambda c, w: c.post(w.purchase(), json={"user_id": "u"}, headers=w.t.pos),
    "purchase expired token": lambda c, w: c.post(
        w.purchase(), headers=user_token(w.t, "u-1", ttl=-10)
    ),
    "purchase other project token": lambda c, w: c.post(
        w.purchase(), headers=user_token(w.other, "u-1")
    ),
    "purchase unknown reward": lambda c, w: c.post(
        w.purchase("nope"), headers=user_token(w.t, "u-1")
    ),
    "purchase reward id of another key": lambda c, w: c.post(
        w.purchase(w.reward + ":users"), headers=user_token(w.t, "u-1")
    ),
    "purchase limit": lambda c, w: _twice(
        c, w.purchase(w.limited), [None, None], user_token(w.t, "u-5")
    ),
    "purchase bad json": lambda c, w: c.post(
        w.purchase(), content=b"{", headers={**user_token(w.t, "u-6")}
    ),
    "purchase idempotent": lambda c, w: _twice(
        c, w.purchase(), [None, None], {**user_token(w.t, "u-7"), "Idempotency-Key": "p1"}
    ),
}


async def _twice(c: Client, path: str, bodies: list[Any], headers: dict[str, str]) -> list[Any]:
    """Several requests in a row; answers of one key must repeat their codes."""
    answers = []
    for body in bodies:
        answers.append(await c.post(path, json=body, headers=headers))
    return answers


def _normal(value: Any, w: World) -> Any:
    """An answer with what differs between two runs (ids, codes, times) named instead."""
    if isinstance(value, list):
        return [_normal(v, w) for v in value]
    if hasattr(value, "status_code"):
        return (value.status_code, value.headers.get("content-type"), _normal(value.json(), w))
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k in ("assigned_time", "purchase_id", "hold_expires_at"):
                out[k] = type(v).__name__
            elif k == "code" and "message" not in value:  # a voucher code, not an error's
                out[k] = None if v is None else "<code>"
            else:
                out[k] = _normal(v, w)
        return out
    if isinstance(value, str):
        for name in ("pool", "small", "reward", "limited"):
            value = value.replace(getattr(w, name), f"<{name}>")
        return value
    return value


async def _answers(redis: Redis, fast: bool) -> dict[str, Any]:
    await redis.flushall()
    async with app_client(redis, fast_routes=fast) as c:
        w = await _world(c)
        return {name: _normal(await ask(c, w), w) for name, ask in CASES.items()}


async def test_fast_routes_answer_as_litestar_does(redis: Redis) -> None:
    fast = await _answers(redis, fast=True)
    slow = await _answers(redis, fast=False)
    # The one difference, on purpose: Litestar words a missing body as "'data'".
    assert slow["issue no body"][2]["error"]["details"]["errors"][0]["message"] == "'data'"
    slow["issue no body"][2]["error"]["details"]["errors"][0]["message"] = "a JSON body is required"
    for name in CASES:
        assert fast[name] == slow[name], name
    # The table covers what it claims to: successes and each kind of refusal.
    statuses = {answer[0] for answer in fast.values() if isinstance(answer, tuple)}
    assert {200, 201, 400, 401, 403, 404, 405, 409} <= statuses


async def test_idempotent_retry_repeats_its_codes(redis: Redis) -> None:
    async with app_client(redis) as c:
        w = await _world(c)
        first, again, other = await _twice(
            c,
            w.issue(),
            [{"count": 2}, {"count": 2}, {"count": 1}],
            _json(w, **{"Idempotency-Key": "k"}),
        )
        assert first.status_code == again.status_code == 200
        assert first.json()["codes"] == again.json()["codes"]
        assert other.status_code == 422
        assert other.json()["error"]["code"] == "idempotency_key_reused"


async def test_oversized_body_is_refused_and_takes_nothing(redis: Redis) -> None:
    async with app_client(redis) as c:
        w = await _world(c)
        big = b'{"count":1,"user_id":"' + b"x" * MAX_BODY + b'"}'
        r = await c.post(w.issue(), content=big, headers=_json(w))
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        pool = (await c.get(f"/v1/projects/{w.t.id}/pools/{w.pool}", headers=w.t.admin)).json()
        assert pool["available"] == 100


@pytest.mark.parametrize("path", ["/v1/projects//pools/x/issue", "/v1/projects/acme/pools//issue"])
async def test_empty_path_segments_go_to_litestar(redis: Redis, path: str) -> None:
    async with app_client(redis) as c:
        await _world(c)
        r = await c.post(path, json={}, headers=ROOT)
        assert r.status_code in (404, 405) and "error" in r.json()


async def test_unexpected_failure_is_a_500_in_the_one_shape(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with app_client(redis) as c:
        w = await _world(c)

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("boom")

        monkeypatch.setattr(c.app.state.services.issuer, "issue", broken)
        r = await c.post(w.issue(), json={}, headers=w.t.admin)
        assert r.status_code == 500
        assert r.json() == {
            "error": {"code": "internal_error", "message": "internal error", "details": {}}
        }
