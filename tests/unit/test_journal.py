"""The journal's writer thread: group commit, close, failure."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from codepool.journal import Handout, IssueRecord, Journal, JournalError, read_journal


def _record(i: int) -> IssueRecord:
    handout = Handout(codes=[f"C{i}"], position=i, at="1.5", user="", reward="", purchase="")
    return IssueRecord(written=float(i), project="p", pool="q", handouts=[handout])


async def test_concurrent_appends_share_fsyncs_and_all_land(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    await asyncio.gather(*(journal.append([_record(i)]) for i in range(200)))
    assert journal.records == 200
    # Group commit: appends made while a write runs go out together.
    assert 1 <= journal.writes < 200
    await journal.close()
    landed = read_journal(tmp_path / "journal")
    assert sorted(r.handouts[0].position for r in landed if isinstance(r, IssueRecord)) == list(
        range(200)
    )


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
