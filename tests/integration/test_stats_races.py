"""Per-minute counters under racing clients, and through a snapshot and a restore, on a
real redis-server: the series is exact (the sum over a window is the hand-outs in it),
and a restore gives back the counters, the empty-soon state and the alerts Redis lost.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from codepool import keys
from codepool.app import create_app
from codepool.durability import snapshot, snapshot_dir, snapshot_format
from codepool.durability.journal import journal_dir
from codepool.durability.journal_files import read_journal
from codepool.durability.restore import restore
from codepool.store import issuing, pos
from codepool.store import stats as stats_module
from codepool.store.base import text
from codepool.store.stats import minute_of
from codepool.store.trace import StreamEntries
from tests.apphelpers import (
    WORKERS,
    app_client,
    app_workers,
    journaled_settings,
    make_pool,
    make_reward,
    make_tenant,
    serve_app,
    user_token,
)
from tests.statehelpers import assert_same_state, dump

pytestmark = pytest.mark.real


async def test_series_is_exact_across_minute_boundaries_under_racing_clients(
    real_redis: Redis, redis_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with app_client(real_redis) as setup:
        t = await make_tenant(setup)
        pool = await make_pool(setup, t, [f"C-{i:05d}" for i in range(3000)])
    # The scripts' clock runs 120 times faster than the wall clock, from just before a
    # minute boundary: the race below spans a few minutes of it, with batches of
    # hand-outs on either side of each boundary.
    boundary = (time.time() // 60 + 1) * 60
    started = [0.0]

    def fast_now() -> float:
        return boundary - 1 + (time.monotonic() - started[0]) * 120

    for module in (issuing, pos, stats_module):
        monkeypatch.setattr(module, "now", fast_now)
    base = f"/v1/projects/{t.id}"
    issued_minutes: Counter[int] = Counter()
    async with AsyncExitStack() as stack:
        workers = await app_workers(stack, redis_server_url)

        async def one(i: int) -> None:
            # Spread over ~0.9 s (~108 s of the scripts' clock): started all at once, the
            # 900 would coalesce into a couple of script calls within one minute.
            await asyncio.sleep(i / 1000)
            w = workers[i % WORKERS]
            r = await w.post(
                f"{base}/pools/{pool['id']}/issue",
                json={"count": 1 + i % 3, "user_id": f"u{i % 40}"},
                headers=t.admin,
            )
            assert r.status_code == 200, r.text
            codes = r.json()["codes"]
            for c in codes:
                issued_minutes[minute_of(c["assigned_time"])[0]] += 1
            if i % 4 == 0:  # a redeem or a release races the next hand-outs
                path, who = ("redeem", t.pos) if i % 8 == 0 else ("release", t.admin)
                resp = await w.post(
                    f"{base}/codes/{path}", json={"code": codes[0]["code"]}, headers=who
                )
                assert resp.status_code == 200, resp.text

        started[0] = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(900)))
        r = await workers[0].get(f"{base}/pools/{pool['id']}/stats?minutes=10", headers=t.admin)
    assert r.status_code == 200, r.text
    series = r.json()["series"]
    handed_out = sum(1 + i % 3 for i in range(900))
    assert len(issued_minutes) >= 2, "the race did not cross a minute boundary"
    # Each minute holds exactly the hand-outs made in it; the window's sum is them all.
    got = {minute_of(p["t"])[0]: p for p in series}
    assert {m: got[m]["issued"] for m in issued_minutes} == dict(issued_minutes)
    assert sum(p["issued"] for p in series) == handed_out
    # Redeems and releases likewise, minute by minute (their events carry the script's time).
    expected: dict[str, Counter[int]] = {"VOUCHER_USED": Counter(), "VOUCHER_RELEASED": Counter()}
    for _, fields in cast(StreamEntries, await real_redis.xrange(keys.events(t.id))):
        kind = text(fields[b"type"])
        if kind in expected:
            expected[kind][minute_of(float(fields[b"time"]))[0]] += 1
    assert sum(expected["VOUCHER_USED"].values()) == 900 // 8 + (1 if 900 % 8 else 0)
    for kind, field in (("VOUCHER_USED", "redeemed"), ("VOUCHER_RELEASED", "released")):
        counted = {minute_of(p["t"])[0]: p[field] for p in series if p[field]}
        assert counted == dict(expected[kind]), kind
    pool_now = (await real_redis.hgetall(keys.pool(t.id, pool["id"])))[b"assigned"]
    assert int(pool_now) == handed_out - sum(p["redeemed"] + p["released"] for p in series)


async def test_snapshot_during_a_sale_restores_counters_and_empty_soon_state(
    real_redis: Redis, redis_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot, "AVAIL_SLICE", 40)
    monkeypatch.setattr(snapshot, "HASH_SLICE", 10)
    monkeypatch.setattr(snapshot, "LIST_SLICE", 20)
    monkeypatch.setattr(snapshot, "STREAM_SLICE", 20)
    read = snapshot._Reader._read

    async def slow_read(self: snapshot._Reader, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.002)  # the sale runs between any two slices
        return await read(self, *args, **kwargs)

    monkeypatch.setattr(snapshot._Reader, "_read", slow_read)
    settings = journaled_settings(redis_server_url, tmp_path)
    async with app_client(real_redis, notify=False) as c:
        t = await make_tenant(c)
        pool = await make_pool(
            c,
            t,
            [f"C-{i:05d}" for i in range(3000)],
            low_stock_thresholds=[1000],
            empty_soon_alerts=[60, 600, 3600, 86400],
            notify={"emails": ["ops@example.com"]},
        )
        reward = await make_reward(c, t, pool["id"])
    rng = random.Random(17)
    async with AsyncExitStack() as stack:
        workers = [
            await stack.enter_async_context(serve_app(create_app(settings))) for _ in range(2)
        ]

        async def buyer(i: int) -> None:
            w = workers[i % 2]
            r = await w.post(
                f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase",
                headers=user_token(t, f"u{i % 50}"),
            )
            assert r.status_code == 201, r.text
            if i % 6 == 0:
                await asyncio.sleep(rng.random() / 50)
                path, who = ("redeem", t.pos) if i % 12 == 0 else ("release", t.admin)
                resp = await w.post(
                    f"/v1/projects/{t.id}/codes/{path}",
                    json={"code": r.json()["code"]},
                    headers=who,
                )
                assert resp.status_code == 200, resp.text

        async def snap() -> snapshot_format.SnapshotInfo:
            await asyncio.sleep(0.05)
            return await snapshot.take_snapshot(real_redis, snapshot_dir.snapshots_dir(tmp_path))

        snapping = asyncio.create_task(snap())
        await asyncio.gather(*(buyer(i) for i in range(700)))
        info = await snapping

    live = await dump(real_redis)
    fired = [
        text(f[b"threshold_seconds"])
        for _, f in cast(StreamEntries, await real_redis.xrange(keys.events(t.id)))
        if f[b"type"] == b"POOL_EMPTY_SOON"
    ]
    assert fired, "the sale fired no empty-soon alert"
    records = read_journal(journal_dir(tmp_path), since=info.started_at)
    await real_redis.flushall()
    await restore(real_redis, info.path, records)
    restored = await dump(real_redis)
    restored.pop(keys.EPOCH.encode())
    # Every key: the day's counters, the pool's soon_armed, the events and the outbox
    # entries of the alerts (those the snapshot missed written again by the restore).
    assert_same_state(restored, live, ids_renewed=True)


async def test_changes_after_the_snapshot_are_counted_from_the_journal(
    real_redis: Redis, redis_server_url: str, tmp_path: Path
) -> None:
    settings = journaled_settings(redis_server_url, tmp_path)
    async with serve_app(create_app(settings)) as c:
        t = await make_tenant(c)
        # One pool counted before the snapshot and after; one only after (its day's key
        # is not in the snapshot at all).
        a = await make_pool(
            c, t, [f"A-{i:04d}" for i in range(1000)], empty_soon_alerts=[300, 3600]
        )
        b = await make_pool(c, t, [f"B-{i:04d}" for i in range(100)], name="pool-b")
        base = f"/v1/projects/{t.id}"

        async def issue(pool: dict[str, Any], count: int) -> list[str]:
            r = await c.post(
                f"{base}/pools/{pool['id']}/issue", json={"count": count}, headers=t.admin
            )
            assert r.status_code == 200, r.text
            return [x["code"] for x in r.json()["codes"]]

        await issue(a, 3)
        info = await snapshot.take_snapshot(real_redis, snapshot_dir.snapshots_dir(tmp_path))
        assert not await real_redis.exists(*stats_module.stats_keys(t.id, b["id"], time.time()))
        # After the snapshot: a burst that fires empty-soon alerts, a redeem, a release,
        # and pool b's first hand-outs.
        for _ in range(30):
            await issue(a, 20)
        codes = await issue(b, 5)
        await c.post(f"{base}/codes/redeem", json={"code": codes[0]}, headers=t.pos)
        await c.post(f"{base}/codes/release", json={"code": codes[1]}, headers=t.admin)
    live = await dump(real_redis)
    assert b"POOL_EMPTY_SOON" in {
        f[b"type"] for _, f in cast(StreamEntries, await real_redis.xrange(keys.events(t.id)))
    }
    records = read_journal(journal_dir(tmp_path), since=info.started_at)
    await real_redis.flushall()
    await restore(real_redis, info.path, records)
    restored = await dump(real_redis)
    restored.pop(keys.EPOCH.encode())
    assert_same_state(restored, live, ids_renewed=True)
