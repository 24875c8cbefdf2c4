"""Journal files on disk: listing them, reading their records back, pruning them."""

from __future__ import annotations

import contextlib
import logging
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec

from codepool.durability.journal import (
    DEFAULT_ROTATE_SECONDS,
    HOST_MARK,
    SPARE_PREFIX,
    SUFFIX,
    file_host,
    fsync_dir,
)
from codepool.durability.records import FRAME, Record, decoder, redis_time

log = logging.getLogger(__name__)

# The snapshotter leaves a file alone this long past its rotation time: a writer that
# found it young enough a moment ago may still be writing to it.
ROTATE_GRACE = 30.0
STALE_SPARE_SECONDS = 3600.0


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
        if length == 0 and crc == 0:
            return  # the zero-filled room of a preallocated file (journal.SEGMENT_BYTES)
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
# Record times are Redis's clock (records.redis_time), a file's mtime its writing
# host's: reading skips a file by its mtime only this much further back (host clocks
# kept by NTP are far closer to Redis's).
CLOCK_SKEW = 60.0


def read_journal(directory: Path, since: float = 0.0) -> list[Record]:
    """:func:`read_journals` of one directory."""
    return read_journals([directory], since)


def read_journals(directories: Sequence[Path], since: float = 0.0) -> list[Record]:
    """Every record of a change Redis made at or after ``since`` (Redis time, see
    records.redis_time), from every journal file of ``directories``, in the order Redis
    made the changes, whichever host and process journaled them (each file's own order
    where Redis's clock ties). A file found in several directories (journals gathered
    twice) is read once, its longest copy: a record read twice would be applied twice.
    """
    chosen: dict[str, tuple[int, Path]] = {}
    for directory in directories:
        for path in journal_files(directory):
            with contextlib.suppress(FileNotFoundError):  # pruned meanwhile
                size = path.stat().st_size
                if path.name not in chosen or size > chosen[path.name][0]:
                    chosen[path.name] = (size, path)
    files = sorted((path for _, path in chosen.values()), key=lambda p: (_created(p), p.name))
    keyed: list[tuple[float, int, int, Record]] = []
    for n, path in enumerate(files):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < since - MTIME_SLACK - CLOCK_SKEW:
                continue  # its last write was before `since`: nothing in it is needed
            for k, record in enumerate(read_file(path)):
                at = redis_time(record)
                if at >= since:
                    keyed.append((at, n, k, record))
    keyed.sort(key=lambda e: e[:3])
    return [record for _, _, _, record in keyed]


def journal_hosts(directories: Sequence[Path]) -> set[str]:
    """The host ids that name journal files in ``directories`` or mark them as theirs
    (durability.journal writes a ``host-<id>`` file beside its first file)."""
    found: set[str] = set()
    for directory in directories:
        if not directory.is_dir():
            continue
        found |= {p.name.removeprefix(HOST_MARK) for p in directory.glob(f"{HOST_MARK}*")}
        found |= {file_host(p) for p in journal_files(directory)} - {""}
    return found


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
    # Spare segments (journal.SPARE_PREFIX) a writer killed before using them left behind.
    # A live writer's spare is this old only if it has written nothing for as long; if
    # it goes, that writer opens a file without preallocation and prepares another.
    for spare in directory.glob(f"{SPARE_PREFIX}*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            if spare.stat().st_mtime < now - STALE_SPARE_SECONDS:
                spare.unlink()
    if removed:
        fsync_dir(directory)
    return removed
