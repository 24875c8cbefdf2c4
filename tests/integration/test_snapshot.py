"""Snapshots, the journal and restore, on a real redis-server.

The strongest check here: a snapshot taken while hundreds of purchases, issues, redeems
and releases run through two app instances, plus the journal they wrote, restores to
exactly the state Redis held when they were done.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from codepool import cli, keys
from codepool.app import create_app
from codepool.durability import keyspace, snapshot, snapshot_dir, snapshot_format, startup
from codepool.durability.journal import Journal, journal_dir
from codepool.durability.journal_files import journal_files, prune, read_journal
from codepool.durability.records import (
    IssueRecord,
    RedeemRecord,
    ReleaseRecord,
    encode_frames,
    idempotency_value,
)
from codepool.durability.restore import has_state, restore
from codepool.scripts import Arg, Scripts
from codepool.store.base import Backend, text
from codepool.store.issuing import IssueRequest, issue_batch
from codepool.store.trace import StreamEntries, parse_user_event
from tests.apphelpers import (
    ROOT,
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
from tests.statehelpers import Dump, assert_same_state, dump

pytestmark = pytest.mark.real


async def _rich_project(c: Client) -> tuple[Tenant, dict[str, Any], list[str]]:
    """A project with every kind of key: pools (one with duplicate codes and thresholds),
    a reward, purchases with Idempotency-Keys, a bulk issue, a redeem, a release."""
    t = await make_tenant(c)
    codes = [f"CODE-{i:04d}" for i in range(300)] + ["TWICE"] * 3
    pool = await make_pool(c, t, codes, low_stock_thresholds=[250, 5])
    await make_pool(c, t, ["OTHER-1", "OTHER-2"], name="pool-2")
    reward = await make_reward(c, t, pool["id"], per_user_limit=3)
    told: list[str] = []
    for i in range(8):
        r = await c.post(
            f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase",
            headers={**user_token(t, f"user-{i % 3}"), "Idempotency-Key": f"k-{i}"},
        )
        assert r.status_code == 201, r.text
        told.append(r.json()["code"])
    r = await c.post(
        f"/v1/projects/{t.id}/pools/{pool['id']}/issue",
        json={"count": 20, "user_id": "partner"},
        headers=t.admin,
    )
    told += [x["code"] for x in r.json()["codes"]]
    assert (
        await c.post(f"/v1/projects/{t.id}/codes/redeem", json={"code": told[0]}, headers=t.pos)
    ).status_code == 200
    assert (
        await c.post(f"/v1/projects/{t.id}/codes/release", json={"code": told[9]}, headers=t.admin)
    ).status_code == 200
    return t, pool, told


async def test_round_trip_reproduces_every_key(real_redis: Redis, tmp_path: Path) -> None:
    async with app_client(real_redis, notify=False) as c:
        await _rich_project(c)
    # An idempotency record with a TTL, and a key of a kind codepool does not know yet.
    await real_redis.zadd("cp:{acme}:future", {"a": 1.5, "b": 2})
    before = await dump(real_redis)
    info = await snapshot.take_snapshot(real_redis, tmp_path)
    assert info.codes == 303 - 28 + 1 + 2
    await real_redis.flushall()
    await restore(real_redis, info.path, [])
    after = await dump(real_redis)
    assert after.pop(keys.EPOCH.encode())[0] == "string"
    assert after == before


async def _buyers(redis: Redis, counts: dict[str, int]) -> Tenant:
    """A project whose users (user id -> codes) got their codes from real issue calls,
    many users to a call as a flash sale's coalesced purchases are."""
    async with app_client(redis, notify=False) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"C-{i:05d}" for i in range(sum(counts.values()) + 50)])
    backend = Backend(redis, settings_for_tests())
    requests = [IssueRequest(count=n, user_id=user) for user, n in counts.items()]
    for i in range(0, len(requests), 250):
        chunk = requests[i : i + 250]
        results = await issue_batch(backend, t.id, pool["id"], chunk)
        assert [len(r.codes) for r in results] == [q.count for q in chunk]
    return t


class _CountingScripts(Scripts):
    """Scripts that count the calls reading per-user code lists."""

    def __init__(self, client: Redis) -> None:
        super().__init__(client)
        self.user_list_calls: list[int] = []  # per call: how many user lists it read

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        users = sum(1 for key in keys if (k := keyspace.classify(key)) and k.kind == "user")
        if users:
            self.user_list_calls.append(users)
        return await super().run(name, keys, args)


async def test_many_user_lists_round_trip_exactly(
    real_redis: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thousand buyers, a few holding more codes than a slice, one list emptied and one
    grown while the snapshot reads them: every user list comes back as Redis held it."""
    monkeypatch.setattr(snapshot, "LIST_SLICE", 200)  # 2 items per list in a batch call
    counts = {f"buyer-{i:04d}": 1 + i % 3 for i in range(1000)}
    for user in ("buyer-0003", "buyer-0500", "buyer-0999"):
        counts[user] = 450  # a head, then slices of LIST_SLICE
    t = await _buyers(real_redis, counts)
    expiring = keys.user_codes(t.id, "buyer-0001")
    await real_redis.pexpire(expiring, 600_000)
    gone, grown = keys.user_codes(t.id, "buyer-0998"), keys.user_codes(t.id, "buyer-0003")
    read_lists = snapshot._Reader._read_lists

    async def read_then_change(self: snapshot._Reader, names: list[str], *args: Any) -> Any:
        result = await read_lists(self, names, *args)
        if grown in names:  # between its head and the rest; and before `gone` is read
            assert gone not in names
            await real_redis.rpush(grown, *[f"LATE-{i}" for i in range(300)])
            await real_redis.delete(gone)
        return result

    monkeypatch.setattr(snapshot._Reader, "_read_lists", read_then_change)
    scripts = _CountingScripts(real_redis)
    info = await snapshot.take_snapshot(real_redis, tmp_path, scripts=scripts)
    live = await dump(real_redis)
    assert gone.encode() not in live and len(live[grown.encode()][1]) == 750
    assert live[expiring.encode()][2]
    assert max(scripts.user_list_calls) == snapshot.USER_LISTS_PER_CALL
    # Deleted before its batch was read: what read_list wrote for a missing key.
    (end,) = [f for f in snapshot_format.read_frames(info.path) if getattr(f, "key", "") == gone]
    assert isinstance(end, snapshot_format.KeyEnd) and end.expires_ms == 0

    await real_redis.flushall()
    await restore(real_redis, info.path, [])
    restored = await dump(real_redis)
    restored.pop(keys.EPOCH.encode())
    assert restored == live


async def test_user_lists_cost_one_script_call_per_batch(
    real_redis: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round trips grow with batches of user lists, not with users: the old reader made
    a script call and a PTTL per user."""
    await _buyers(real_redis, {f"u{i}": 1 + i % 2 for i in range(1000)})
    pttl = real_redis.pttl
    pttl_keys: list[Any] = []

    def counting_pttl(name: Any) -> Any:
        pttl_keys.append(name)
        return pttl(name)

    monkeypatch.setattr(real_redis, "pttl", counting_pttl)
    scripts = _CountingScripts(real_redis)
    await snapshot.take_snapshot(real_redis, tmp_path, scripts=scripts)
    calls = scripts.user_list_calls
    assert len(calls) == 10, f"{len(calls)} script calls read 1,000 user lists"
    assert not [k for k in pttl_keys if (kind := keyspace.classify(k)) and kind.kind == "user"]
    assert calls == [snapshot.USER_LISTS_PER_CALL] * 10


async def test_restore_is_idempotent(real_redis: Redis, tmp_path: Path) -> None:
    settings = journaled_settings("unused", tmp_path)
    async with app_client(real_redis, notify=False) as c:
        t, pool, _ = await _rich_project(c)
        info = await snapshot.take_snapshot(real_redis, snapshot_dir.snapshots_dir(tmp_path))
    # Hand-outs after the snapshot, journaled.
    async with app_client(real_redis, journal=True, data_dir=str(tmp_path), notify=False) as c:
        r = await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={"count": 7}, headers=t.admin
        )
        assert r.status_code == 200
    records = startup.journal_since(settings, info.path)
    assert len(records) == 1
    await restore(real_redis, info.path, records)
    once = await dump(real_redis)
    await restore(real_redis, info.path, records)
    twice = await dump(real_redis)
    once.pop(keys.EPOCH.encode())
    twice.pop(keys.EPOCH.encode())
    assert once == twice


async def _user_streams(redis: Redis, project: str) -> dict[bytes, list[tuple[bytes, bytes]]]:
    """Every per-user event index of ``project``: key -> (event id, type) per event."""
    return {
        key: [parse_user_event(item) for item in cast(list[bytes], await redis.lrange(key, 0, -1))]
        async for key in redis.scan_iter(match=keys.user_events(project, "*"))
    }


async def test_user_event_streams_come_back_from_snapshot_and_journal(
    real_redis: Redis, tmp_path: Path
) -> None:
    """Snapshots leave the per-user event streams out; a restore rebuilds each from the
    project stream (snapshot) and the missed events (journal): every user's stream holds
    exactly the project's events about that user, under the same ids."""
    settings = journaled_settings("unused", tmp_path)
    async with app_client(real_redis, notify=False) as c:
        t, _, _ = await _rich_project(c)
        info = await snapshot.take_snapshot(real_redis, snapshot_dir.snapshots_dir(tmp_path))
    async with app_client(real_redis, journal=True, data_dir=str(tmp_path), notify=False) as c:
        reward = (await c.get(f"/v1/projects/{t.id}/rewards", headers=t.admin)).json()["data"][0]
        url = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
        late = []
        for user in ("user-7", "user-8", "user-7"):
            r = await c.post(url, headers=user_token(t, user))
            assert r.status_code == 201
            late.append(r.json()["code"])
        for path, code, who in (("redeem", late[0], t.pos), ("release", late[1], t.admin)):
            r = await c.post(f"/v1/projects/{t.id}/codes/{path}", json={"code": code}, headers=who)
            assert r.status_code == 200
    live = await _user_streams(real_redis, t.id)
    assert len(live) == 6  # user-0..2, partner (a release), user-7, user-8
    records = startup.journal_since(settings, info.path)
    assert records
    await real_redis.flushall()
    await restore(real_redis, info.path, records)
    restored = await _user_streams(real_redis, t.id)
    assert set(restored) == set(live)
    project = cast(StreamEntries, await real_redis.xrange(keys.events(t.id)))
    for key, entries in restored.items():
        head, tail = keys.user_events(t.id, "\0").split("\0")
        user = key.decode().removeprefix(head).removesuffix(tail)
        mine = [(i, f[b"type"]) for i, f in project if f.get(b"user_id") == user.encode()]
        assert entries == mine, user
        # The same events as live (the ids of events the restore wrote again are new).
        assert sorted(t for _, t in entries) == sorted(t for _, t in live[key])


async def test_snapshot_while_issuing_plus_journal_is_exact(
    real_redis: Redis, redis_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny slices: the snapshot takes hundreds of reads, interleaved with the traffic.
    monkeypatch.setattr(snapshot, "AVAIL_SLICE", 40)
    monkeypatch.setattr(snapshot, "HASH_SLICE", 10)
    monkeypatch.setattr(snapshot, "LIST_SLICE", 20)
    monkeypatch.setattr(snapshot, "STREAM_SLICE", 20)
    read = snapshot._Reader._read

    async def slow_read(self: snapshot._Reader, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.002)  # let the traffic run between any two slices
        return await read(self, *args, **kwargs)

    monkeypatch.setattr(snapshot._Reader, "_read", slow_read)
    # 50 users buying as fast as they can: a race, not a rate (no rate limit).
    settings = journaled_settings(redis_server_url, tmp_path, rate_limit_user=0)
    async with app_client(real_redis, notify=False) as c:
        t = await make_tenant(c)
        # Thresholds the sale crosses while the snapshot reads: alerts of hand-outs it
        # missed come back from the journal.
        codes = [f"C-{i:05d}" for i in range(3000)] + ["DUP"] * 30
        pool = await make_pool(c, t, codes, low_stock_thresholds=[2950, 2800, 2700, 2400])
        reward = await make_reward(c, t, pool["id"])
    rng = random.Random(6)
    told: list[str] = []
    async with AsyncExitStack() as stack:
        workers = [
            await stack.enter_async_context(serve_app(create_app(settings))) for _ in range(2)
        ]

        async def buyer(i: int) -> None:
            w = workers[i % 2]
            headers = {**user_token(t, f"u{i % 50}"), "Idempotency-Key": f"buy-{i}"}
            url = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
            r = await w.post(url, headers=headers)
            assert r.status_code == 201, r.text
            if i % 7 == 0:  # a retry: the same code again, never a second one
                again = await w.post(url, headers=headers)
                assert again.json()["code"] == r.json()["code"]
            code = r.json()["code"]
            told.append(code)
            if i % 5 == 0:
                await asyncio.sleep(rng.random() / 50)
                path = "redeem" if i % 10 == 0 else "release"
                who = t.pos if path == "redeem" else t.admin
                resp = await w.post(
                    f"/v1/projects/{t.id}/codes/{path}", json={"code": code}, headers=who
                )
                assert resp.status_code == 200, resp.text

        async def partner(i: int) -> None:
            r = await workers[i % 2].post(
                f"/v1/projects/{t.id}/pools/{pool['id']}/issue",
                json={"count": 1 + i % 4, "user_id": f"partner-{i % 3}"},
                headers=t.admin,
            )
            assert r.status_code == 200, r.text
            told.extend(x["code"] for x in r.json()["codes"])

        async def snap() -> snapshot_format.SnapshotInfo:
            await asyncio.sleep(0.05)
            return await snapshot.take_snapshot(real_redis, snapshot_dir.snapshots_dir(tmp_path))

        traffic = [buyer(i) for i in range(600)] + [partner(i) for i in range(100)]
        rng.shuffle(traffic)
        snapping = asyncio.create_task(snap())
        await asyncio.gather(*traffic)
        info = await snapping
    assert len(told) == 600 + sum(1 + i % 4 for i in range(100))

    live = await dump(real_redis)
    records = read_journal(journal_dir(tmp_path), since=info.started_at)
    assert records, "the traffic outlasted the snapshot's start"
    await real_redis.flushall()
    await restore(real_redis, info.path, records)
    restored = await dump(real_redis)
    restored.pop(keys.EPOCH.encode())

    assert_same_state(restored, live)

    # And in the terms of the issue: nothing available that anyone was told, exact counters.
    available = await real_redis.lrange(keys.pool_available(t.id, pool["id"]), 0, -1)
    told_unique = {c for c in told if c != "DUP"}
    released = {text(c) for c in available} & told_unique
    for code in released:  # a released code is available again, and only then
        record = await real_redis.hget(keys.issued(t.id), code)
        assert record is None
    p = await real_redis.hgetall(keys.pool(t.id, pool["id"]))
    assert int(p[b"total"]) == 3030 == len(available) + int(p[b"assigned"]) + int(p[b"redeemed"])


async def test_a_release_while_a_log_is_read_is_made_good(
    real_redis: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release LREMs from the pool log while the snapshot reads it slice by slice: the
    reader skips an entry. The restore notices (by the release's position) and rebuilds
    the log from the issued records."""
    monkeypatch.setattr(snapshot, "LIST_SLICE", 10)
    async with app_client(real_redis, journal=True, data_dir=str(tmp_path), notify=False) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"C{i:03d}" for i in range(100)])
        r = await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={"count": 60}, headers=t.admin
        )
        codes = [x["code"] for x in r.json()["codes"]]
        log_key = keys.pool_log(t.id, pool["id"])
        read = snapshot._Reader._read
        released: list[str] = []

        async def read_then_release(self: snapshot._Reader, *args: Any) -> Any:
            result = await read(self, *args)
            if args[0] == log_key and not released:
                released.append(codes[2])  # before the reader's position: shifts the rest
                resp = await c.post(
                    f"/v1/projects/{t.id}/codes/release", json={"code": codes[2]}, headers=t.admin
                )
                assert resp.status_code == 200
            return result

        monkeypatch.setattr(snapshot._Reader, "_read", read_then_release)
        info = await snapshot.take_snapshot(real_redis, snapshot_dir.snapshots_dir(tmp_path))
    live = await real_redis.lrange(log_key, 0, -1)
    assert len(live) == 59
    records = read_journal(journal_dir(tmp_path), since=info.started_at)
    await real_redis.flushall()
    await restore(real_redis, info.path, records)
    assert await real_redis.lrange(log_key, 0, -1) == live


async def test_corrupt_newest_snapshot_falls_back_to_the_previous(
    real_redis: Redis, tmp_path: Path
) -> None:
    directory = snapshot_dir.snapshots_dir(tmp_path)
    settings = journaled_settings("unused", tmp_path)
    async with app_client(real_redis, journal=True, data_dir=str(tmp_path), notify=False) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"C{i}" for i in range(100)])
        older = await snapshot.take_snapshot(real_redis, directory)
        issue = f"/v1/projects/{t.id}/pools/{pool['id']}/issue"
        first = (await c.post(issue, json={"count": 10}, headers=t.admin)).json()["codes"]
        newer = await snapshot.take_snapshot(real_redis, directory)
        second = (await c.post(issue, json={"count": 5}, headers=t.admin)).json()["codes"]
    data = bytearray(newer.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newer.path.write_bytes(bytes(data))
    with pytest.raises(snapshot_format.SnapshotError):
        snapshot_format.verify(newer.path)
    assert snapshot_dir.newest_valid(directory) == older.path

    await real_redis.flushall()
    with snapshot_dir.directory_lock(directory):
        await startup.restore_from_disk(real_redis, settings)
    told = {x["code"] for x in first + second}
    available = {
        text(c) for c in await real_redis.lrange(keys.pool_available(t.id, pool["id"]), 0, -1)
    }
    assert len(available) == 85 and not available & told
    counts = await real_redis.hmget(keys.pool(t.id, pool["id"]), "total", "assigned")
    assert [int(text(x)) for x in counts] == [100, 15]


async def test_journal_only_restore_keeps_what_was_handed_out(
    real_redis: Redis, tmp_path: Path
) -> None:
    async with app_client(real_redis, journal=True, data_dir=str(tmp_path), notify=False) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"C{i}" for i in range(50)])
        reward = await make_reward(c, t, pool["id"])
        r = await c.post(
            f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase",
            headers=user_token(t, "alice"),
        )
        bought = r.json()["code"]
        issued = await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={"count": 4}, headers=t.admin
        )
        codes = [x["code"] for x in issued.json()["codes"]]
        await c.post(f"/v1/projects/{t.id}/codes/redeem", json={"code": codes[0]}, headers=t.pos)
    records = read_journal(journal_dir(tmp_path))
    assert [type(r) for r in records] == [IssueRecord, IssueRecord, RedeemRecord]
    await real_redis.flushall()
    stats = await restore(real_redis, None, records)
    assert stats.placeholders == 1 and stats.projects == 0  # no snapshot: no project record

    placeholder = await real_redis.hgetall(keys.pool(t.id, pool["id"]))
    assert placeholder[b"name"] == f"restored-{pool['id']}".encode()
    assert (placeholder[b"total"], placeholder[b"assigned"], placeholder[b"redeemed"]) == (
        b"5",
        b"4",
        b"1",
    )
    # The project comes back when root creates it again under its id; the pool with it.
    async with app_client(real_redis, notify=False) as c:
        assert (
            await c.post("/v1/projects", json={"id": t.id, "name": "again"}, headers=ROOT)
        ).status_code == 201
        r = await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=ROOT)
        assert r.json()["assigned"] == 4 and r.json()["available"] == 0
        # Uploading the codes again with duplicates=skip skips the ones handed out.
        up = await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/codes?duplicates=skip",
            content="\n".join(f"C{i}" for i in range(50)),
            headers={**ROOT, "Content-Type": "text/plain"},
        )
        assert up.json()["added"] == 45 and up.json()["skipped"] == 5
        check = await c.post(
            f"/v1/projects/{t.id}/codes/validate", json={"code": bought}, headers=ROOT
        )
        assert check.json()["status"] == "assigned" and check.json()["user_id"] == "alice"


async def test_catch_up_applies_what_redis_lost(real_redis: Redis, tmp_path: Path) -> None:
    """Redis kept its data but lost its last writes (AOF everysec: a power cut, or a kill -9
    while a slow fsync postponed the AOF write) - writes that a snapshot taken since may
    even hold."""
    settings = journaled_settings("unused", tmp_path)
    directory = snapshot_dir.snapshots_dir(tmp_path)
    assert await startup.ensure_state(real_redis, settings) == "initialized"
    epoch = await real_redis.get(keys.EPOCH)
    async with app_client(real_redis, journal=True, data_dir=str(tmp_path), notify=False) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"C{i}" for i in range(40)])
        base = await snapshot.take_snapshot(real_redis, directory)
        r = await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={"count": 6}, headers=t.admin
        )
        told = {x["code"] for x in r.json()["codes"]}
        await snapshot.take_snapshot(real_redis, directory)  # newer than the lost writes
    # Redis as it was before the issue call, with its own state marker: it "kept" its data.
    await real_redis.flushall()
    await restore(real_redis, base.path, [])
    assert epoch is not None
    await real_redis.set(keys.EPOCH, epoch)
    assert await startup.ensure_state(real_redis, settings) == "caught-up"
    available = {
        text(c) for c in await real_redis.lrange(keys.pool_available(t.id, pool["id"]), 0, -1)
    }
    assert len(available) == 34 and not available & told
    assert await startup.ensure_state(real_redis, settings) == "kept"


async def test_ensure_state_outcomes(real_redis: Redis, tmp_path: Path) -> None:
    settings = journaled_settings("unused", tmp_path)
    assert await startup.ensure_state(real_redis, settings) == "initialized"
    assert await startup.ensure_state(real_redis, settings) == "kept"
    async with app_client(real_redis, notify=False) as c:
        await make_tenant(c)
    await startup.snapshot_now(real_redis, settings)
    # A restore that died half-way: done again from scratch.
    await real_redis.set(keys.RESTORING, "1")
    await real_redis.delete(keys.project("acme"))
    assert await startup.ensure_state(real_redis, settings) == "restored"
    assert await real_redis.exists(keys.project("acme"), keys.EPOCH) == 2
    assert not await real_redis.exists(keys.RESTORING)
    # Redis lost everything.
    await real_redis.flushall()
    assert not await has_state(real_redis)
    assert await startup.ensure_state(real_redis, settings) == "restored"
    assert await real_redis.sismember(keys.PROJECTS, "acme")


async def test_readyz_is_503_while_restoring(real_redis: Redis) -> None:
    async with app_client(real_redis, notify=False) as c:
        assert (await c.get("/readyz")).status_code == 200
        await real_redis.set(keys.RESTORING, "1")
        r = await c.get("/readyz")
        assert r.status_code == 503 and r.json()["error"]["details"]["reason"] == "restoring"


async def test_a_failed_journal_write_tells_no_code(real_redis: Redis, tmp_path: Path) -> None:
    blocked = tmp_path / "data"
    blocked.mkdir()
    (blocked / "snapshots").write_text("not a directory")  # the journal cannot be created
    async with app_client(real_redis, journal=True, data_dir=str(blocked), notify=False) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A", "B", "C"])
        before = await snapshot.take_snapshot(real_redis, tmp_path / "elsewhere")
        url = f"/v1/projects/{t.id}/pools/{pool['id']}/issue"
        headers = {**t.admin, "Idempotency-Key": "once"}
        r = await c.post(url, json={"count": 1}, headers=headers)
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        # Once the disk works again, the retry gets the popped code, and that is journaled.
        (blocked / "snapshots").unlink()
        again = await c.post(url, json={"count": 1}, headers=headers)
        assert again.status_code == 200
        code = again.json()["codes"][0]["code"]
    (record,) = read_journal(journal_dir(blocked))
    assert isinstance(record, IssueRecord)
    assert record.handouts[0].codes == [code] and record.handouts[0].position == -1
    # Only the replayed answer is journaled (no position): a restore still takes the
    # code out of the available list, by value.
    await real_redis.flushall()
    await restore(real_redis, before.path, [record])
    assert await real_redis.lrange(keys.pool_available(t.id, pool["id"]), 0, -1) == [b"B", b"C"]
    assert await real_redis.hget(keys.issued(t.id), code) is not None
    counts = await real_redis.hmget(keys.pool(t.id, pool["id"]), "total", "assigned")
    assert counts == [b"3", b"1"]


async def test_journal_idempotency_record_matches_issue_lua(
    real_redis: Redis, tmp_path: Path
) -> None:
    async with app_client(real_redis, journal=True, data_dir=str(tmp_path), notify=False) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A", "B", "C", "D"])
        r = await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue",
            json={"count": 2},
            headers={**t.admin, "Idempotency-Key": "x"},
        )
        assert r.status_code == 200
    (record,) = read_journal(journal_dir(tmp_path))
    assert isinstance(record, IssueRecord)
    (h,) = record.handouts
    stored = await real_redis.get(h.idem_key)
    assert stored is not None and text(stored) == h.idem_value
    assert h.position == 0 and h.codes == ["A", "B"]
    fingerprint = h.idem_value.split("\x1f")[0]
    assert idempotency_value(fingerprint, h.at, "", 2, ["A", "B"]) == h.idem_value


async def test_redeem_and_release_are_journaled_with_their_counters(
    real_redis: Redis, tmp_path: Path
) -> None:
    async with app_client(real_redis, journal=True, data_dir=str(tmp_path), notify=False) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A", "B", "C"])
        await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={"count": 2}, headers=t.admin
        )
        await c.post(f"/v1/projects/{t.id}/codes/redeem", json={"code": "A"}, headers=t.pos)
        await c.post(f"/v1/projects/{t.id}/codes/release", json={"code": "B"}, headers=t.admin)
    _, redeem, release = read_journal(journal_dir(tmp_path))
    assert isinstance(redeem, RedeemRecord) and (redeem.code, redeem.seq) == ("A", 1)
    # B went back behind C: position popped (2) + index 1.
    assert isinstance(release, ReleaseRecord) and (release.code, release.position) == ("B", 3)


# -- the journal file itself ------------------------------------------------------------


async def test_group_commit_and_a_torn_tail(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    records = [
        RedeemRecord(
            written=float(i),
            project="p",
            pool="x",
            code=f"c{i}",
            at="1",
            user="",
            reward="",
            purchase="",
            redeemed_at="2",
            seq=i,
        )
        for i in range(200)
    ]
    await asyncio.gather(*(journal.append([r]) for r in records))
    assert journal.writes < 20  # many appends, few fsyncs
    await journal.close()
    (path,) = journal_files(tmp_path)
    # A write cut short by a crash: the reader stops before it.
    with path.open("ab") as f:
        f.write(encode_frames(records[:1])[:-3])
    assert read_journal(tmp_path) == records
    assert [r.written for r in read_journal(tmp_path, since=150)] == [
        float(i) for i in range(150, 200)
    ]


def test_prune_keeps_files_a_writer_may_still_use(tmp_path: Path) -> None:
    young = tmp_path / f"{int((time.time() - 5) * 1e6)}-1-aa.cpj"
    old = tmp_path / f"{int((time.time() - 3600) * 1e6)}-1-bb.cpj"
    for path in (young, old):
        path.write_bytes(b"")
        os.utime(path, (time.time() - 100, time.time() - 100))
    assert prune(tmp_path, before=time.time() - 50, rotate_after=60) == 1
    assert journal_files(tmp_path) == [young]


# -- the command line -----------------------------------------------------------------


def test_cli_snapshot_and_restore(
    redis_server_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def setup() -> Dump:
        client = Redis.from_url(redis_server_url)
        await client.flushall()
        async with app_client(client, notify=False) as c:
            await _rich_project(c)
        state = await dump(client)
        await client.aclose()
        return state

    async def now() -> Dump:
        client = Redis.from_url(redis_server_url)
        state = await dump(client)
        await client.aclose()
        state.pop(keys.EPOCH.encode(), None)
        return state

    async def flush() -> None:
        client = Redis.from_url(redis_server_url)
        await client.flushall()
        await client.aclose()

    with capsys.disabled():  # the app sets up logging to stderr: not the captured one
        before = asyncio.run(setup())
    # cli.main sets up logging to the (captured) stderr: undo that after the test.
    monkeypatch.setattr(logging.getLogger(), "handlers", list(logging.getLogger().handlers))
    monkeypatch.setenv("CODEPOOL_REDIS_URL", redis_server_url)
    monkeypatch.setenv("CODEPOOL_DATA_DIR", str(tmp_path))
    assert cli.main(["snapshot"]) == 0
    path = Path(capsys.readouterr().out.split("\t")[0])
    assert path.parent == tmp_path / "snapshots" and path.is_file()

    assert cli.main(["restore", str(path)]) == 1  # Redis holds state: refused
    assert "--force" in capsys.readouterr().err
    asyncio.run(flush())
    assert cli.main(["restore", str(path)]) == 0
    assert "restored" in capsys.readouterr().out
    assert asyncio.run(now()) == before
    assert cli.main(["restore", "--force", str(path)]) == 0
    assert asyncio.run(now()) == before
    # A restore is followed by a snapshot of what it restored.
    assert len(snapshot_dir.list_snapshots(tmp_path / "snapshots")) == 3

    corrupt = tmp_path / "bad.cps"
    corrupt.write_bytes(path.read_bytes()[:-5])
    assert cli.main(["restore", "--force", str(corrupt)]) == 1
    assert "corrupt" in capsys.readouterr().err


def test_key_names_are_classified_from_keys_py() -> None:
    def kind(key: str) -> tuple[str, str, str] | None:
        found = keyspace.classify(key)
        return None if found is None else (found.kind, found.project, found.id)

    assert kind(keys.PROJECTS) is None and kind(keys.EPOCH) is None
    assert kind(keys.issued("p-1")) == ("issued", "p-1", "")
    assert kind(keys.pool("p", "a_B-c")) == ("pool", "p", "a_B-c")
    assert kind(keys.pool_available("p", "x")) == ("avail", "p", "x")
    assert kind(keys.pool_log("p", "x")) == ("log", "p", "x")
    assert kind(keys.pool_staging("p", "x", "u")) == ("skip", "p", "x")
    assert kind(keys.code_index("p", 7)) == ("skip", "p", "7")
    assert kind(keys.code_index_uploads("p")) == ("skip", "p", "")
    assert kind(keys.pool_upload_lock("p", "x")) == ("skip", "p", "x")
    assert kind(keys.user_codes("p", "a:b:codes")) == ("user", "p", "a:b:codes")
    assert kind(keys.reward_users("p", "r")) == ("reward_users", "p", "r")
    assert kind(keys.idempotency("p", "d")) == ("idem", "p", "d")
    for other in (keys.project("p"), keys.pool_rewards("p", "x"), keys.outbox("p")):
        assert kind(other) == ("other", "p", "")
