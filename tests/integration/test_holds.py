"""Holds on a real redis-server: expiries racing purchases, confirm racing the reaper,
a restart mid-hold, and holds carried by a snapshot and by the journal."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from codepool import keys
from codepool.app import create_app
from codepool.durability import catchup, snapshot, snapshot_dir
from codepool.durability.journal import journal_dir
from codepool.durability.journal_files import read_journal
from codepool.durability.records import ConfirmRecord, IssueRecord, ReleaseRecord
from codepool.durability.restore import restore
from codepool.store.base import text
from codepool.store.records import parse_record
from codepool.store.trace import StreamEntries
from tests.apphelpers import (
    Client,
    Tenant,
    app_client,
    journaled_settings,
    make_pool,
    make_reward,
    make_tenant,
    serve_app,
    settings_for_tests,
    user_token,
)
from tests.statehelpers import assert_same_state, dump

pytestmark = pytest.mark.real

FAST = {"hold_reap_interval": 0.1, "hold_reaper_lease": 1.0}


async def _events(r: Redis, project: str) -> list[dict[str, str]]:
    entries = cast(StreamEntries, await r.xrange(keys.events(project)))
    return [{text(k): text(v) for k, v in fields.items()} for _, fields in entries]


async def _counts(c: Client, t: Tenant, pool_id: str) -> dict[str, int]:
    got = (await c.get(f"/v1/projects/{t.id}/pools/{pool_id}", headers=t.admin)).json()
    assert got["available"] + got["assigned"] + got["redeemed"] == got["total"], got
    return {k: got[k] for k in ("available", "assigned", "redeemed", "total")}


def _no_code_out_twice(events: list[dict[str, str]]) -> None:
    """Per code, hand-outs and releases alternate: never handed out while out."""
    out: Counter[str] = Counter()
    for e in events:
        if e["type"] == "REDEEMED_VOUCHER":
            out[e["code"]] += 1
            assert out[e["code"]] == 1, f"{e['code']} handed out twice"
        elif e["type"] == "VOUCHER_RELEASED":
            out[e["code"]] -= 1
            assert out[e["code"]] == 0, f"{e['code']} released while not out"


async def test_500_holds_expire_exactly_once_while_purchases_race_them(
    redis_server_url: str, real_redis: Redis
) -> None:
    codes = [f"H{i:04d}" for i in range(600)]
    async with AsyncExitStack() as stack:
        # Three app instances on one Redis, as workers: three reapers, one lease.
        workers = [
            await stack.enter_async_context(
                serve_app(
                    create_app(
                        settings_for_tests(
                            redis_url=redis_server_url, redis_max_connections=16, **FAST
                        )
                    )
                )
            )
            for _ in range(3)
        ]
        c = workers[0]
        t = await make_tenant(c)
        pool = await make_pool(c, t, codes)
        reward = await make_reward(c, t, pool["id"])
        buy = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"

        async def hold(i: int) -> dict[str, Any]:
            r = await workers[i % 3].post(
                buy, json={"hold_seconds": 1}, headers=user_token(t, f"h{i}")
            )
            assert r.status_code == 201, r.text
            body: dict[str, Any] = r.json()
            return body

        held = await asyncio.gather(*(hold(i) for i in range(500)))
        assert len({h["code"] for h in held}) == 500
        last_end = max(h["hold_expires_at"] for h in held)
        kept: list[str] = []

        async def buyer(i: int) -> None:
            # Buys until it gets a code or the holds are long gone: the pool runs dry
            # (100 free codes for 300 buyers) and refills as the holds expire.
            while time.time() < last_end + 3:
                r = await workers[i % 3].post(buy, headers=user_token(t, f"b{i}"))
                if r.status_code == 201:
                    kept.append(r.json()["code"])
                    return
                assert r.json()["error"]["code"] == "pool_exhausted", r.text
                await asyncio.sleep(0.02)

        await asyncio.gather(*(buyer(i) for i in range(300)))
        deadline = last_end + 5
        while await real_redis.zcard(keys.holds(t.id)):
            assert time.time() < deadline, "holds left behind"
            await asyncio.sleep(0.1)
        leaders = [w for w in workers if w.app.state.services.reaper.leading]
        assert len(leaders) == 1
        reaped = sum(w.app.state.services.reaper.released for w in workers)

        events = await _events(real_redis, t.id)
        _no_code_out_twice(events)
        expired = [e for e in events if e.get("reason") == "hold_expired"]
        # Every hold went back exactly once, each within a second of its end.
        assert reaped == len(expired) == 500
        assert sorted(e["code"] for e in expired) == sorted(h["code"] for h in held)
        ends = {h["code"]: h["hold_expires_at"] for h in held}
        lags = [float(e["time"]) - ends[e["code"]] for e in expired]
        assert min(lags) >= 0 and max(lags) < 1.0, (min(lags), max(lags))
        # The racing buyers all got a code, none twice; every code is accounted for.
        assert len(kept) == 300 == len(set(kept))
        assert await _counts(c, t, pool["id"]) == {
            "available": 300,
            "assigned": 300,
            "redeemed": 0,
            "total": 600,
        }
        records = cast(dict[bytes, bytes], await real_redis.hgetall(keys.issued(t.id)))
        assert sorted(text(k) for k in records) == sorted(kept)
        assert all(i.hold_expires_at is None for r in records.values() for i in parse_record(r))


async def test_confirm_racing_expiry_is_confirmed_or_released_never_both(
    real_redis: Redis,
) -> None:
    async with app_client(real_redis, **FAST) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"K{i:03d}" for i in range(200)])
        issue = f"/v1/projects/{t.id}/pools/{pool['id']}/issue"
        r = await c.post(issue, json={"count": 200, "hold_seconds": 1}, headers=t.admin)
        handed = r.json()["codes"]
        end = handed[0]["hold_expires_at"]
        outcome: dict[str, str] = {}

        async def confirm(k: int, code: str) -> None:
            # Spread over the end of the hold: some come first, some after the reaper.
            await asyncio.sleep(max(0.0, end - time.time() - 0.3 + k * 0.006))
            r = await c.post(
                f"/v1/projects/{t.id}/codes/confirm", json={"code": code}, headers=t.admin
            )
            outcome[code] = "confirmed" if r.status_code == 200 else r.json()["error"]["code"]

        await asyncio.gather(*(confirm(k, h["code"]) for k, h in enumerate(handed)))
        await asyncio.sleep(max(0.0, end + 1.2 - time.time()))
        events = await _events(real_redis, t.id)
        released = Counter(e["code"] for e in events if e.get("reason") == "hold_expired")
        confirmed = {code for code, o in outcome.items() if o == "confirmed"}
        assert set(outcome.values()) <= {"confirmed", "not_issued"}, Counter(outcome.values())
        for code, o in outcome.items():
            status = (
                await c.post(
                    f"/v1/projects/{t.id}/codes/validate", json={"code": code}, headers=t.admin
                )
            ).json()["status"]
            if o == "confirmed":
                assert released[code] == 0 and status == "assigned", code
            else:
                assert released[code] == 1 and status == "available", code
        # The race really raced: both outcomes happened.
        assert 0 < len(confirmed) < 200, len(confirmed)
        counts = await _counts(c, t, pool["id"])
        assert counts["assigned"] == len(confirmed)


async def test_a_restart_mid_hold_still_gives_it_back(real_redis: Redis) -> None:
    async with app_client(real_redis, **FAST) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["Q1", "Q2"])
        reward = await make_reward(c, t, pool["id"], per_user_limit=1)
        r = await c.post(
            f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase",
            json={"hold_seconds": 1},
            headers=user_token(t, "ann"),
        )
        code, end = r.json()["code"], r.json()["hold_expires_at"]
    # No process runs while the hold ends: it stays assigned.
    await asyncio.sleep(max(0.0, end + 0.3 - time.time()))
    assert (await real_redis.hget(keys.pool(t.id, pool["id"]), "assigned")) == b"1"
    async with app_client(real_redis, **FAST) as c:
        started = time.time()
        while (await _counts(c, t, pool["id"]))["assigned"]:
            assert time.time() < started + 1.0, "not given back after the restart"
            await asyncio.sleep(0.05)
        events = await _events(real_redis, t.id)
        assert (events[-1]["code"], events[-1]["reason"]) == (code, "hold_expired")
        # Given back to ann's limit too.
        again = await c.post(
            f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase", headers=user_token(t, "ann")
        )
        assert again.status_code == 201, again.text


async def test_a_snapshot_carries_holds_and_they_expire_after_the_restore(
    real_redis: Redis, tmp_path: Path
) -> None:
    async with app_client(
        real_redis, notify=False, hold_reap_interval=5, hold_reaper_lease=10
    ) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"S{i}" for i in range(5)])
        issue = f"/v1/projects/{t.id}/pools/{pool['id']}/issue"
        r = await c.post(issue, json={"count": 2, "hold_seconds": 2}, headers=t.admin)
        held = r.json()["codes"]
        info = await snapshot.take_snapshot(real_redis, tmp_path)
    live = await dump(real_redis)
    await real_redis.flushall()
    await restore(real_redis, info.path, [])
    restored = await dump(real_redis)
    restored.pop(keys.EPOCH.encode(), None)
    assert_same_state(restored, live)
    async with app_client(real_redis, **FAST) as c:
        v = await c.post(
            f"/v1/projects/{t.id}/codes/validate", json={"code": held[0]["code"]}, headers=t.admin
        )
        assert v.json()["hold_expires_at"] == held[0]["hold_expires_at"]
        # Both given back within a second of their end (polled, not slept out).
        while (await _counts(c, t, pool["id"]))["available"] < 5:
            assert time.time() < held[0]["hold_expires_at"] + 1.0, "holds not given back"
            await asyncio.sleep(0.05)
        assert (await _counts(c, t, pool["id"]))["available"] == 5


async def test_the_journal_restores_holds_confirms_and_expiries_exactly(
    real_redis: Redis, tmp_path: Path
) -> None:
    """A snapshot from before the holds, plus the journal: the hand-outs with their holds,
    a confirm, and the reaper's releases come back as Redis had them."""
    async with serve_app(
        create_app(journaled_settings("unused", tmp_path, **FAST), client=real_redis)
    ) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"J{i}" for i in range(10)], low_stock_thresholds=[8])
        reward = await make_reward(c, t, pool["id"], per_user_limit=2)
        base = await snapshot.take_snapshot(real_redis, snapshot_dir.snapshots_dir(tmp_path))
        buy = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
        short = [
            (await c.post(buy, json={"hold_seconds": 1}, headers=user_token(t, f"u{i}"))).json()
            for i in range(3)
        ]
        long = (await c.post(buy, json={"hold_seconds": 600}, headers=user_token(t, "u0"))).json()
        confirmed = short[0]["code"]
        ok = await c.post(
            f"/v1/projects/{t.id}/codes/confirm", json={"code": confirmed}, headers=t.admin
        )
        assert ok.status_code == 200
        end = max(s["hold_expires_at"] for s in short)
        while await real_redis.zcard(keys.holds(t.id)) > 1:  # the long hold's entry stays
            assert time.time() < end + 2
            await asyncio.sleep(0.05)
    records = read_journal(journal_dir(tmp_path))
    kinds = Counter(type(r).__name__ for r in records)
    assert kinds == Counter({"IssueRecord": 4, "ConfirmRecord": 1, "ReleaseRecord": 2}), kinds
    assert all(r.reason == "hold_expired" for r in records if isinstance(r, ReleaseRecord))
    assert sum(1 for r in records if isinstance(r, ConfirmRecord)) == 1
    assert {h.hold for r in records if isinstance(r, IssueRecord) for h in r.handouts} == {
        repr(s["hold_expires_at"]) for s in [*short, long]
    }
    live = await dump(real_redis)
    await real_redis.flushall()
    await restore(real_redis, base.path, records)
    restored = await dump(real_redis)
    for d in (live, restored):  # the state markers differ by design
        d.pop(keys.EPOCH.encode(), None)
    assert_same_state(restored, live, ids_renewed=True)
    record = await real_redis.hget(keys.issued(t.id), long["code"])
    assert isinstance(record, bytes)
    assert parse_record(record)[0].hold_expires_at == long["hold_expires_at"]
    # Restoring twice gives the same state (a confirm applied again changes nothing).
    await real_redis.flushall()
    await restore(real_redis, base.path, records)
    again = await dump(real_redis)
    again.pop(keys.EPOCH.encode(), None)
    assert_same_state(again, live, ids_renewed=True)
    holds_left: dict[str, list[float]] = defaultdict(list)
    scored = cast(
        list[tuple[bytes, float]], await real_redis.zrange(keys.holds(t.id), 0, -1, withscores=True)
    )
    for code, score in scored:
        holds_left[text(code)].append(score)
    assert holds_left == {long["code"]: [long["hold_expires_at"]]}
    # A Redis that kept its data (start-up catch-up) lacks nothing; one that lost the
    # confirm's write is told by the record, which is still held (no counter says it).
    assert await catchup.unapplied(real_redis, records) == []
    await real_redis.flushall()
    await restore(real_redis, base.path, [r for r in records if not isinstance(r, ConfirmRecord)])
    lost = await catchup.unapplied(real_redis, records)
    assert [(op.kind, op.code) for op in lost] == [("confirm", confirmed.encode())]
