"""Journal files on disk: listing them, reading their records back, pruning them."""

from __future__ import annotations

import contextlib
import logging
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import msgspec

from codepool.durability.journal import DEFAULT_ROTATE_SECONDS, SUFFIX, fsync_dir
from codepool.durability.records import FRAME, Record, decoder

log = logging.getLogger(__name__)

# The snapshotter leaves a file alone this long past its rotation time: a writer that
# found it young enough a moment ago may still be writing to it.
ROTATE_GRACE = 30.0


def journal_files(directory: Path) -> list[Path]:
    """Journal files, oldest first (names start with their creation time)."""
    if not directory.is_dir():
        return []
    return sorted(
        (p for p in directory.iterdir() if p.name.endswith(SUFFIX)),
        key=lambda p: (_created(p), p.name),
    )


def _created(path: Path) -> float:
    try:
        return int(path.name.split("-", 1)[0]) / 1e6
    except ValueError:
        return 0.0


def read_file(path: Path) -> Iterator[Record]:
    """The records of one journal file, up to the first torn or corrupt frame."""
    with path.open("rb") as f:
        data = f.read()
    offset = 0
    while offset + FRAME.size <= len(data):
        length, crc = FRAME.unpack_from(data, offset)
        start, end = offset + FRAME.size, offset + FRAME.size + length
        if end > len(data) or zlib.crc32(data[start:end]) != crc:
            log.warning("journal %s: torn or corrupt frame at byte %d; rest ignored", path, offset)
            return
        try:
            yield decoder.decode(data[start:end])
        except msgspec.DecodeError:
            log.warning("journal %s: undecodable record at byte %d; rest ignored", path, offset)
            return
        offset = end


# A file's mtime comes from the kernel's coarse clock (a tick, a few ms behind
# time.time()), so a record written just after `since` can sit in a file whose mtime is
# just before it: the mtime shortcuts below allow this much slack.
MTIME_SLACK = 1.0


def read_journal(directory: Path, since: float = 0.0) -> list[Record]:
    """Every record written at or after ``since`` (Unix time), from all files."""
    records: list[Record] = []
    for path in journal_files(directory):
        with contextlib.suppress(FileNotFoundError):  # pruned meanwhile
            if path.stat().st_mtime < since - MTIME_SLACK:
                continue  # its last write was before `since`: nothing in it is needed
            records.extend(r for r in read_file(path) if r.written >= since)
    return records


def prune(directory: Path, before: float, rotate_after: float = DEFAULT_ROTATE_SECONDS) -> int:
    """Delete journal files whose every record was written before ``before``.

    A file is deleted only once no writer can still append to it (it is older than
    the rotation time plus a grace period), and its last write was before ``before``.
    """
    removed = 0
    now = time.time()
    for path in journal_files(directory):
        if _created(path) > now - rotate_after - ROTATE_GRACE:
            continue
        try:
            if path.stat().st_mtime < before - MTIME_SLACK:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    if removed:
        fsync_dir(directory)
    return removed
