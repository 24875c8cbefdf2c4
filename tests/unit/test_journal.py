"""The journal's writes: group commit, cancelled callers, close, failure."""

from __future__ import annotations

import asyncio
import os
import struct
import zlib
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis

from codepool.durability.journal import Journal, JournalError, journal_dir
from codepool.durability.journal_files import prune, read_journal
from codepool.durability.records import Handout, IssueRecord
from tests.apphelpers import app_client, make_pool, make_tenant


def _record(i: int) -> IssueRecord:
    handout = Handout(codes=[f"C{i}"], position=i, at="1.5", user="", reward="", purchase="")
    return IssueRecord(written=float(i), project="p", pool="q", handouts=[handout])


async def test_concurrent_appends_share_fsyncs_and_all_land(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    await asyncio.gather(*(journal.append([_record(i)]) for i in range(200)))
    assert journal.records == 200
    # Group commit: the 200 appends ran in one turn of the loop, so one write took them.
    assert journal.writes == 1
    assert journal.sync_seconds > 0
    await journal.close()
    landed = read_journal(tmp_path / "journal")
    assert sorted(r.handouts[0].position for r in landed if isinstance(r, IssueRecord)) == list(
        range(200)
    )


async def test_a_caller_that_goes_away_still_has_its_records_written(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    gone = asyncio.ensure_future(journal.append([_record(1)]))
    await asyncio.sleep(0)  # appended, waiting for the write
    gone.cancel()
    await journal.append([_record(2)])
    assert gone.cancelled()
    await journal.close()
    landed = read_journal(tmp_path / "journal")
    assert [r.handouts[0].position for r in landed] == [1, 2]  # type: ignore[union-attr]


async def test_close_writes_what_is_pending_then_refuses(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    pending = asyncio.ensure_future(journal.append([_record(1)]))
    await asyncio.sleep(0)  # the append is queued, maybe not yet written
    await journal.close()
    await pending  # answered, and so on disk
    assert len(read_journal(tmp_path / "journal")) == 1
    with pytest.raises(JournalError):
        await journal.append([_record(2)])


async def test_a_failed_write_fails_its_waiters_and_the_next_write_recovers(
    tmp_path: Path,
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    journal = Journal(blocked / "journal")
    with pytest.raises(JournalError):
        await journal.append([_record(1)])
    blocked.unlink()
    await journal.append([_record(2)])
    await journal.close()
    assert [r.handouts[0].position for r in read_journal(blocked / "journal")] == [2]  # type: ignore[union-attr]


async def test_metrics_tell_how_long_the_loop_spent_in_journal_writes(
    redis: Redis, tmp_path: Path
) -> None:
    async with app_client(redis, journal=True, data_dir=str(tmp_path), notify=False) as c:
        tenant = await make_tenant(c)
        pool = await make_pool(c, tenant, ["A1", "A2"])
        r = await c.post(
            f"/v1/projects/acme/pools/{pool['id']}/issue", json={"count": 1}, headers=tenant.admin
        )
        assert r.status_code == 200, r.text
        metrics = dict(
            line.split(" ")
            for line in (await c.get("/metrics")).text.splitlines()
            if line.startswith("codepool_journal")
        )
    assert metrics["codepool_journal_records_total"] == "1"
    assert metrics["codepool_journal_fsyncs_total"] == "1"
    assert float(metrics["codepool_journal_fsync_seconds_total"]) > 0


def test_records_written_before_alerts_were_journaled_still_read(tmp_path: Path) -> None:
    """IssueRecord grew `alerts` and `available`: a file an older version wrote (the
    array without them) reads with none."""
    handout = Handout(codes=["A"], position=0, at="1.5", user="", reward="", purchase="p")
    old = msgspec.msgpack.encode(["i", 2.0, "acme", "pool", [handout]])
    frame = struct.pack(">II", len(old), zlib.crc32(old)) + old
    directory = journal_dir(tmp_path)
    directory.mkdir(parents=True)
    (directory / "old.cpj").write_bytes(frame)
    (record,) = read_journal(directory)
    assert record == IssueRecord(written=2.0, project="acme", pool="pool", handouts=[handout])
    assert (record.alerts, record.available) == ([], -1)


async def test_a_record_just_after_since_is_read_whatever_the_files_coarse_mtime(
    tmp_path: Path,
) -> None:
    """A file's mtime comes from the kernel's coarse clock, a few ms behind time.time():
    a record written just after a snapshot began may sit in a file whose mtime is just
    before it. It must still be read (a restore lost such a release now and then)."""
    journal = Journal(tmp_path / "journal")
    await journal.append([_record(1000)])
    await journal.close()
    (path,) = (tmp_path / "journal").iterdir()
    os.utime(path, (999.996, 999.996))  # 4 ms behind the record's written time
    assert [r.written for r in read_journal(tmp_path / "journal", since=999.999)] == [1000.0]


async def test_records_go_into_preallocated_room_and_the_zero_tail_is_no_corruption(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file is written into zero-filled room (no size change for fdatasync to commit);
    its unwritten rest reads as the file's end, not as a torn frame."""
    directory = tmp_path / "journal"
    journal = Journal(directory, segment_bytes=64 * 1024)
    await journal.append([_record(0)])  # the first file: no spare was ready yet
    assert journal._spare is not None
    await asyncio.wrap_future(journal._spare)  # the spare segment, prepared by a thread
    for i in range(1, 4):
        await journal.append([_record(i)])
    files = sorted(p for p in directory.iterdir() if p.suffix == ".cpj")
    assert [p.stat().st_size for p in files][1:] == [64 * 1024]  # moved into the spare
    with caplog.at_level("WARNING"):
        landed = read_journal(directory)
    assert [r.handouts[0].position for r in landed] == [0, 1, 2, 3]  # type: ignore[union-attr]
    assert "torn" not in caplog.text
    await journal.close()
    assert not list(directory.glob("spare-*"))  # close removes the unused spare


async def test_a_full_segment_moves_to_the_spare_and_nothing_is_lost(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    journal = Journal(directory, segment_bytes=4096)
    for i in range(300):  # ~60 bytes a record: several 4 KB segments
        await journal.append([_record(i)])
        if i % 40 == 0:
            await asyncio.sleep(0.02)  # time for the thread to prepare the next spare
    await journal.close()
    files = [p for p in directory.iterdir() if p.suffix == ".cpj"]
    assert len(files) >= 3
    landed = read_journal(directory)
    assert [r.handouts[0].position for r in landed] == list(range(300))  # type: ignore[union-attr]


async def test_a_spare_deleted_from_under_the_writer_costs_only_the_preallocation(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "journal"
    journal = Journal(directory, segment_bytes=4096, rotate_after=0.0)  # a new file each write
    await journal.append([_record(0)])
    assert journal._spare is not None
    await asyncio.wrap_future(journal._spare)
    for spare in directory.glob("spare-*"):
        spare.unlink()  # as prune does to a spare older than an hour
    await asyncio.sleep(0.01)
    await journal.append([_record(1)])  # no error: a plain file instead
    await journal.close()
    assert [r.handouts[0].position for r in read_journal(directory)] == [0, 1]  # type: ignore[union-attr]


def test_prune_removes_spares_left_by_a_killed_writer(tmp_path: Path) -> None:
    directory = journal_dir(tmp_path)
    directory.mkdir(parents=True)
    old, young = directory / "spare-1-aa.tmp", directory / "spare-2-bb.tmp"
    old.write_bytes(bytes(16))
    young.write_bytes(bytes(16))
    os.utime(old, (1.0, 1.0))
    prune(directory, before=0.0)
    assert not old.exists()
    assert young.exists()
