"""Holds: hold_seconds on issue and purchase, confirm, the reaper and its lease (fake and
real Redis). Races, restarts and restores are in tests/integration/test_holds.py."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from codepool import holds, keys
from codepool.holds import HoldReaper
from codepool.services import Services
from codepool.settings import load_settings
from codepool.store.base import Backend
from codepool.store.issuing import IssueRequest, issue_batch
from tests.apphelpers import (
    Client,
    Tenant,
    app_client,
    make_pool,
    make_reward,
    make_tenant,
    user_token,
)
from tests.scripthelpers import POOL, P, create_pool, fill


def _services(c: Client) -> Services:
    services: Services = c.app.state.services
    return services


async def _reap_later(c: Client, monkeypatch: pytest.MonkeyPatch, seconds: float) -> int:
    """One reaper tick as if ``seconds`` had passed."""
    monkeypatch.setattr(holds, "now", lambda: time.time() + seconds)
    try:
        return await _services(c).reaper.tick()
    finally:
        monkeypatch.setattr(holds, "now", time.time)


async def _post(c: Client, t: Tenant, action: str, code: str, who: str = "admin") -> Any:
    headers = t.admin if who == "admin" else t.pos
    return await c.post(f"/v1/projects/{t.id}/codes/{action}", json={"code": code}, headers=headers)


async def test_a_held_purchase_counts_until_it_expires_then_goes_back(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A1", "A2", "A3"])
        reward = await make_reward(c, t, pool["id"], per_user_limit=1)
        buy = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
        kim = {**user_token(t, "kim"), "Idempotency-Key": "k1"}
        r = await c.post(buy, json={"hold_seconds": 60}, headers=kim)
        assert r.status_code == 201, r.text
        bought = r.json()
        code, hold = bought["code"], bought["hold_expires_at"]
        assert hold == bought["assigned_time"] + 60
        # A retry before it expires is the first answer again.
        again = await c.post(buy, json={"hold_seconds": 60}, headers=kim)
        assert again.status_code == 201 and again.json() == bought
        # The same key with another hold is another request.
        other = await c.post(buy, json={"hold_seconds": 30}, headers=kim)
        assert other.status_code == 422, other.text

        # Everything that shows the hand-out shows its hold.
        v = (await _post(c, t, "validate", code, "pos")).json()
        assert (v["valid"], v["status"], v["hold_expires_at"]) == (True, "assigned", hold)
        base = f"/v1/projects/{t.id}/pools/{pool['id']}"
        listed = (await c.get(f"{base}/codes?status=assigned", headers=t.admin)).json()["data"]
        assert [(e["code"], e["hold_expires_at"]) for e in listed] == [(code, hold)]
        rows = list(
            csv.DictReader(io.StringIO((await c.get(f"{base}/codes.csv", headers=t.admin)).text))
        )
        assert {r["code"]: r["hold_expires_at"] for r in rows}[code] == repr(hold)
        assert {r["code"]: r["hold_expires_at"] for r in rows}["A2"] == ""
        vouchers = (await c.get(f"/v1/projects/{t.id}/users/kim/vouchers", headers=t.admin)).json()[
            "data"
        ]
        assert [v["hold_expires_at"] for v in vouchers] == [hold]
        events = (await c.get(f"/v1/projects/{t.id}/events", headers=t.admin)).json()["data"]
        assert [(e["type"], e["purchase_id"], e.get("hold_expires_at")) for e in events] == [
            ("REDEEMED_VOUCHER", bought["purchase_id"], hold)
        ]

        # The hold counts against the per-user limit while it lives.
        more = await c.post(buy, headers=user_token(t, "kim"))
        assert more.status_code == 409 and more.json()["error"]["code"] == "per_user_limit_reached"

        # Not yet due: nothing happens.
        assert await _reap_later(c, monkeypatch, 30) == 0
        assert await _reap_later(c, monkeypatch, 61) == 1
        v = (await _post(c, t, "validate", code, "pos")).json()
        assert (v["status"], v["reason"]) == ("available", "not_issued")
        got = (await c.get(base, headers=t.admin)).json()
        assert (got["available"], got["assigned"], got["total"]) == (3, 0, 3)
        events = (await c.get(f"/v1/projects/{t.id}/events", headers=t.admin)).json()["data"]
        released = events[-1]
        assert (released["type"], released["code"], released["reason"], released["user_id"]) == (
            "VOUCHER_RELEASED",
            code,
            "hold_expired",
            "kim",
        )
        # Kim's own events (the per-user index) tell the hold's end too.
        mine = (await c.get(f"/v1/projects/{t.id}/events", headers=user_token(t, "kim"))).json()
        assert [(e["type"], e.get("reason")) for e in mine["data"]] == [
            ("REDEEMED_VOUCHER", None),
            ("VOUCHER_RELEASED", "hold_expired"),
        ]
        # The code went to the end of the list, as a release puts it.
        avail = await redis.lrange(keys.pool_available(t.id, pool["id"]), 0, -1)
        assert avail[-1] == code.encode()
        assert await redis.zcard(keys.holds(t.id)) == 0

        # A retry of the expired purchase must not tell a code that went back.
        late = await c.post(buy, json={"hold_seconds": 60}, headers=kim)
        assert late.status_code == 409 and late.json()["error"]["code"] == "codes_released"
        # The per-user limit was given back with the code.
        fresh = await c.post(buy, headers=user_token(t, "kim"))
        assert fresh.status_code == 201 and fresh.json()["hold_expires_at"] is None


async def test_confirm_makes_a_hold_final_and_a_redeem_confirms(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["C1", "C2", "C3", "C4"])
        issue = f"/v1/projects/{t.id}/pools/{pool['id']}/issue"
        r = await c.post(issue, json={"count": 2, "hold_seconds": 30}, headers=t.admin)
        assert r.status_code == 200, r.text
        (c1, c2) = r.json()["codes"]
        assert c1["hold_expires_at"] == c1["assigned_time"] + 30 == c2["hold_expires_at"]

        ok = await _post(c, t, "confirm", c1["code"])
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert (body["code"], body["status"], body["hold_expires_at"]) == (
            c1["code"],
            "assigned",
            None,
        )
        assert (await _post(c, t, "validate", c1["code"])).json()["hold_expires_at"] is None
        twice = await _post(c, t, "confirm", c1["code"])
        assert (twice.status_code, twice.json()["error"]["code"]) == (409, "not_held")
        unknown = await _post(c, t, "confirm", "NOPE")
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_code")
        available = await _post(c, t, "confirm", "C3")
        assert (available.status_code, available.json()["error"]["code"]) == (409, "not_issued")
        forbidden = await _post(c, t, "confirm", c2["code"], "pos")
        assert forbidden.status_code == 403

        # A redeem confirms: the reaper leaves the redeemed code alone.
        redeemed = await _post(c, t, "redeem", c2["code"], "pos")
        assert redeemed.status_code == 200 and "hold_expires_at" not in redeemed.json()
        after = await _post(c, t, "confirm", c2["code"])
        assert (after.status_code, after.json()["error"]["code"]) == (409, "already_redeemed")

        # A hand-out without a hold has nothing to confirm.
        plain = (await c.post(issue, json={"count": 1}, headers=t.admin)).json()["codes"][0]
        assert plain["hold_expires_at"] is None
        assert (await _post(c, t, "confirm", plain["code"])).json()["error"]["code"] == "not_held"

        # Past the holds' end the reaper finds nothing to give back and drops its hints.
        assert await redis.zcard(keys.holds(t.id)) == 2
        assert await _reap_later(c, monkeypatch, 60) == 0
        assert await redis.zcard(keys.holds(t.id)) == 0
        got = (await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)).json()
        assert (got["available"], got["assigned"], got["redeemed"]) == (1, 2, 1)


async def test_an_admin_release_of_a_hold_leaves_the_reaper_nothing(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["R1", "R2"])
        issue = f"/v1/projects/{t.id}/pools/{pool['id']}/issue"
        code = (await c.post(issue, json={"hold_seconds": 5}, headers=t.admin)).json()["codes"][0]
        assert (await _post(c, t, "release", code["code"])).status_code == 200
        # Handed out again, with a later hold: the first hold's hint must not end it.
        again = await c.post(issue, json={"count": 2, "hold_seconds": 100}, headers=t.admin)
        assert code["code"] in {x["code"] for x in again.json()["codes"]}
        assert await _reap_later(c, monkeypatch, 10) == 0
        assert (await _post(c, t, "validate", code["code"])).json()["status"] == "assigned"
        # ... and it still ends when its own hold does.
        assert await _reap_later(c, monkeypatch, 101) == 2


@pytest.fixture
def backend(redis: Redis) -> Backend:
    return Backend(redis, load_settings({}, hold_reap_interval=0.05, hold_reaper_lease=0.3))


async def test_a_batch_without_holds_sends_no_hold_arguments(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests without hold_seconds pay nothing for holds: not a key, not an argument."""
    await create_pool(backend)
    await fill(backend, [f"X{i}" for i in range(10)])
    seen: list[tuple[list[str], list[Any]]] = []
    run = backend.scripts.run

    async def spy(name: str, names: list[str], args: list[Any]) -> Any:
        seen.append((list(names), list(args)))
        return await run(name, names, args)

    monkeypatch.setattr(backend.scripts, "run", spy)
    plain = [IssueRequest(count=1), IssueRequest(count=2, user_id="u")]
    await issue_batch(backend, P, POOL, plain)
    # issue.lua's header: 7 keys, 3 a request, 3 after them, 3 a group (one group here);
    # 7 arguments, 6 a request, 4 a group.
    assert len(seen[0][0]) == 7 + 3 * 2 + 3 + 3 and len(seen[0][1]) == 7 + 6 * 2 + 4
    held = [IssueRequest(count=1), IssueRequest(count=1, hold_seconds=9)]
    results = await issue_batch(backend, P, POOL, held)
    assert seen[1][0][-1] == keys.holds(P) and seen[1][1][-2:] == ["", seen[1][1][0] + 9]
    assert results[0].hold_expires_at is None
    assert results[1].hold_expires_at == results[1].assigned_time + 9  # type: ignore[operator]
    assert await backend.client.zscore(keys.holds(P), results[1].codes[0]) == pytest.approx(
        results[1].hold_expires_at
    )


async def test_one_reaper_holds_the_lease_and_another_takes_over(backend: Backend) -> None:
    await create_pool(backend)
    await fill(backend, ["L1", "L2"])
    await backend.client.sadd(keys.PROJECTS, P)
    a, b = HoldReaper(backend), HoldReaper(backend)
    await a.tick()
    await b.tick()
    assert (a.leading, b.leading) == (True, False)
    # The holder stops: it gives the lease up, the other takes it at its next tick.
    await a.close()
    await b.tick()
    assert b.leading
    # The holder dies without a word: the lease is taken over once its TTL ran out.
    await a.tick()
    assert not a.leading
    await asyncio.sleep(0.35)
    await a.tick()
    assert a.leading
    await b.tick()
    assert not b.leading
    await a.close()


async def test_the_reaper_runs_in_the_services_and_gives_back_within_a_second(
    redis: Redis,
) -> None:
    async with app_client(redis, hold_reap_interval=0.1) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["S1"])
        issue = f"/v1/projects/{t.id}/pools/{pool['id']}/issue"
        r = (await c.post(issue, json={"hold_seconds": 1}, headers=t.admin)).json()
        hold = r["codes"][0]["hold_expires_at"]
        while (await _post(c, t, "validate", "S1")).json()["status"] == "assigned":
            assert time.time() < hold + 1.0, "the hold was not given back within a second"
            await asyncio.sleep(0.05)
        assert time.time() >= hold
        assert _services(c).reaper.released == 1
        metrics = (await c.get("/metrics")).text
        assert "codepool_holds_released_total 1\n" in metrics
        assert "codepool_hold_reaper_leading 1\n" in metrics
        # The expiry is counted as a release in the pool's per-minute series.
        stats = (
            await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}/stats", headers=t.admin)
        ).json()
        assert sum(p["issued"] for p in stats["series"]) == 1
        assert sum(p["released"] for p in stats["series"]) == 1
