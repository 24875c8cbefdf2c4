"""Many hosts' journals: Redis's clock in every record, merging the journals of every
host in Redis's order, reading a gathered file once, host ids, and the check that a
restore has the journal of every host that journaled since its snapshot began."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from redis.asyncio import Redis

from codepool import keys
from codepool.app import create_app
from codepool.durability import snapshot, snapshot_dir, startup
from codepool.durability.hosts import (
    RestoreRunningError,
    heartbeat,
    host_id,
    restore_running,
)
from codepool.durability.journal import Journal, file_host, file_name, journal_dir
from codepool.durability.journal_files import journal_hosts, read_journal, read_journals
from codepool.durability.plan import held, index_journal
from codepool.durability.records import (
    ConfirmRecord,
    Handout,
    IssueRecord,
    Record,
    RedeemRecord,
    ReleaseRecord,
    encode_frames,
)
from codepool.durability.restore import restore
from codepool.durability.snapshot_format import read_header
from codepool.settings import SettingsError, load_settings
from tests.apphelpers import (
    journaled_settings,
    make_pool,
    make_reward,
    make_tenant,
    serve_app,
    user_token,
)


def _issue(user: str, redis_us: int, written: float) -> IssueRecord:
    handout = Handout(codes=["C1"], position=0, at="100.0", user=user, reward="r", purchase="p1")
    return IssueRecord(
        written=written, project="p", pool="q", handouts=[handout], redis_us=redis_us
    )


def _release(user: str, redis_us: int, written: float) -> ReleaseRecord:
    return ReleaseRecord(
        written=written, project="p", pool="q", code="C1", at="100.0", user=user,
        reward="r", purchase="p1", released_at="101.0", position=5, redis_us=redis_us,
    )  # fmt: skip


def _write(directory: Path, name: str, records: Sequence[Record]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(encode_frames(records))
    return path


def test_journals_of_many_hosts_merge_in_redis_order(tmp_path: Path) -> None:
    """Host b's file is older (by name) and its clock ahead, but Redis released the code
    after host a handed it out: the release comes after the hand-out, and the buyer's
    per-user count ends at 0 (file order would apply the release first and leave 1)."""
    a, b = tmp_path / "a", tmp_path / "b"
    _write(b, file_name(50.0, "host-b", 1, "bb"), [_release("u", 2_000_000, 999.0)])
    _write(a, file_name(60.0, "host-a", 1, "aa"), [_issue("u", 1_000_000, 10.0)])
    records = read_journals([a, b])
    assert [type(r) for r in records] == [IssueRecord, ReleaseRecord]
    ops = index_journal(records)["p"].by_reward[b"r"]
    assert held(0, ops, {}) == 0
    # Since a time (Redis's clock): the release only.
    assert [type(r) for r in read_journals([a, b], since=1.5)] == [ReleaseRecord]


def test_a_file_gathered_twice_is_read_once_its_longest_copy(tmp_path: Path) -> None:
    name = file_name(50.0, "host-a", 7, "cc")
    full: list[Record] = [_issue("u", 1_000_000, 1.0), _release("u", 2_000_000, 2.0)]
    _write(tmp_path / "own", name, full)
    _write(tmp_path / "gathered", name, full[:1])  # copied while it was shorter
    records = read_journals([tmp_path / "gathered", tmp_path / "own"])
    assert records == full


def test_host_ids_name_journal_files(tmp_path: Path) -> None:
    name = file_name(1.5, "web-1.example", 42, "ab12")
    assert name == "1500000-web-1.example-42-ab12.cpj"
    assert file_host(Path(name)) == "web-1.example"
    assert file_host(Path("1500000-42-ab12.cpj")) == ""  # older files: no host
    # The default id is made once per data directory and kept.
    settings = load_settings({}, data_dir=str(tmp_path))
    made = host_id(settings)
    assert made == host_id(settings) == (tmp_path / "host-id").read_text().strip()
    assert host_id(load_settings({"CODEPOOL_HOST_ID": "web-2"})) == "web-2"
    with pytest.raises(SettingsError):
        load_settings({"CODEPOOL_HOST_ID": "a/b"})


async def test_every_journaled_change_carries_redis_time(redis: Redis, tmp_path: Path) -> None:
    """Hand-outs (issue and purchase), redeems, releases, confirms and expired holds:
    each record holds the time Redis made the change, by Redis's clock."""
    before = await redis.time()
    async with serve_app(
        create_app(
            journaled_settings(
                "unused",
                tmp_path,
                host_id="h1",
                hold_reap_interval=0.1,
                hold_reaper_lease=1.0,
            ),
            client=redis,
        )
    ) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"T{i}" for i in range(6)])
        reward = await make_reward(c, t, pool["id"])
        buy = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"
        codes = [
            (await c.post(buy, json={"hold_seconds": 1}, headers=user_token(t, f"u{i}"))).json()[
                "code"
            ]
            for i in range(4)
        ]
        issued = await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={}, headers=t.admin
        )
        assert issued.status_code == 200
        for verb, code in (("confirm", codes[0]), ("redeem", codes[0]), ("release", codes[1])):
            r = await c.post(
                f"/v1/projects/{t.id}/codes/{verb}", json={"code": code}, headers=t.admin
            )
            assert r.status_code == 200, r.text
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the reaper gives the other two holds back
            kinds = [type(r) for r in read_journal(journal_dir(tmp_path))]
            if kinds.count(ReleaseRecord) == 3:
                break
            await asyncio.sleep(0.1)
    after = await redis.time()
    records = read_journal(journal_dir(tmp_path))
    assert {type(r) for r in records} == {IssueRecord, ConfirmRecord, RedeemRecord, ReleaseRecord}
    low, high = before[0] * 10**6 + before[1], after[0] * 10**6 + after[1]
    assert all(low <= r.redis_us <= high for r in records), records
    assert journal_hosts([journal_dir(tmp_path)]) == {"h1"}


async def test_a_restore_needs_the_journal_of_every_host_since_its_snapshot(
    real_redis: Redis, tmp_path: Path
) -> None:
    own, other = tmp_path / "a", tmp_path / "b"
    settings = journaled_settings("unused", own, host_id="a")
    await heartbeat(real_redis, "a", own)
    await heartbeat(real_redis, "b", other)
    info = await snapshot.take_snapshot(real_redis, snapshot_dir.snapshots_dir(own))
    assert set(read_header(info.path).hosts) == {"a", "b"}
    dirs = startup.journal_dirs(settings)
    assert startup.missing_hosts(settings, info.path, dirs) == {"b"}
    with pytest.raises(startup.MissingJournalsError):
        await startup.restore_from_disk(real_redis, settings, info.path)
    # b's journal, gathered (its data directory, or its journal directory).
    journal = Journal(journal_dir(other), host="b")
    await journal.append([_issue("u", 1, time.time())])
    await journal.close()
    dirs = startup.journal_dirs(settings, [other])
    assert startup.missing_hosts(settings, info.path, dirs) == set()


async def test_a_live_restore_keeps_others_out_and_a_dead_ones_marker_does_not(
    redis: Redis,
) -> None:
    await redis.set(keys.PROJECTS, "kept")  # (a wrong type, but a key to see a flush by)
    await redis.set(keys.RESTORING, "elsewhere", px=5_000)  # another host's live restore
    with pytest.raises(RestoreRunningError):
        await restore(redis, None, [])
    assert await redis.get(keys.PROJECTS) == b"kept"
    await redis.persist(keys.RESTORING)  # its process died: no one renews it
    await restore(redis, None, [])
    assert not await redis.exists(keys.RESTORING, keys.PROJECTS)
    assert await redis.exists(keys.EPOCH)
    assert not await restore_running(redis)
