"""The snapshots directory: its lock, the snapshots in it, which to keep.

A snapshot is written to a temp file, fsynced, renamed, and the directory fsynced
(durability.snapshot); the newest ``snapshot_keep`` are kept, and the journal files no
kept snapshot needs are pruned.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from pathlib import Path

from codepool.durability.journal import fsync_dir, journal_dir
from codepool.durability.journal_files import prune
from codepool.durability.snapshot_format import SUFFIX, SnapshotError, verify

log = logging.getLogger(__name__)


def snapshots_dir(data_dir: Path) -> Path:
    return data_dir / "snapshots"


@contextlib.contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """One snapshot or restore at a time per data directory (serve, CLI)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (directory / ".lock").open("ab") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def prepare_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)  # also when a worker's journal created it first
    for stale in directory.glob(".snapshot-*.tmp"):
        stale.unlink(missing_ok=True)  # a snapshot that died half-way (we hold the lock)


def list_snapshots(directory: Path) -> list[Path]:
    """Complete snapshot files (by name), newest first. Not checked for corruption."""
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.glob(f"snapshot-*{SUFFIX}") if p.is_file()), reverse=True)


def started_at(path: Path) -> float:
    """A snapshot's start time, from its name."""
    return int(path.name[len("snapshot-") : -len(SUFFIX)]) / 1e6


def retain(directory: Path, keep: int, journal_rotation: float) -> None:
    snapshots = list_snapshots(directory)
    for old in snapshots[keep:]:
        old.unlink(missing_ok=True)
    if len(snapshots) > keep:
        fsync_dir(directory)
    # Journal records older than the oldest kept snapshot's start are held by every kept
    # snapshot; the others are kept, so any kept snapshot (say, when newer ones turn out
    # corrupt) restores exactly with the journal since its start.
    kept = snapshots[:keep]
    if kept:
        prune(journal_dir(directory.parent), started_at(kept[-1]), journal_rotation)


def newest_valid(directory: Path) -> Path | None:
    """The newest snapshot that verifies; corrupt ones are logged and skipped."""
    for path in list_snapshots(directory):
        try:
            verify(path)
        except SnapshotError as exc:
            log.error("skipping snapshot: %s", exc)
            continue
        return path
    return None
