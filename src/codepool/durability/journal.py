"""The hand-out journal: every code handed out is on disk before the client hears of it.

A snapshot (durability.snapshot) is taken every so often; what changed since is only in
Redis. If Redis then loses its data, a snapshot alone would make every code handed out
since available again. So each app process appends one record per hand-out (and per
redeem, release, confirmed hold and expired hold) to a file of its own under
``$CODEPOOL_DATA_DIR/snapshots/journal/`` and fsyncs it before answering; a restore
(durability.restore) replays the records the snapshot does not hold.

Group commit: records appended during one turn of the event loop go out together in one
write + fdatasync at the start of the next, so under load one fsync serves many requests
(as one issue.lua call serves many in the issuer).

The records and their framing: durability.records. A torn or corrupt frame ends the
file for the reader (durability.journal_files; it can only be the last write, which never
got its fsync and so was never acknowledged); after a failed write the writer starts a
new file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path

from codepool.durability.records import Record, encode_frames

log = logging.getLogger(__name__)

SUFFIX = ".cpj"
# An empty file ``host-<id>`` marks a journal directory as that host's (journal_files).
HOST_MARK = "host-"
# A writer starts a new file at the first write this long after it opened the current
# one, so files stop growing and the snapshotter can delete them.
DEFAULT_ROTATE_SECONDS = 60.0


def journal_dir(data_dir: Path) -> Path:
    return data_dir / "snapshots" / "journal"


def file_name(created: float, host: str, pid: int, token: str) -> str:
    """``<created µs>-<host id>-<pid>-<token>.cpj``: unique over every host's journal, so
    the journals of many hosts can be gathered in one directory (without a host id, as
    older files: ``<created µs>-<pid>-<token>.cpj``)."""
    host_part = f"{host}-" if host else ""
    return f"{int(created * 1e6)}-{host_part}{pid}-{token}{SUFFIX}"


def file_host(path: Path) -> str:
    """The host id in a journal file's name ("" for none)."""
    parts = path.name.removesuffix(SUFFIX).split("-")
    return "-".join(parts[1:-2])


def rotation(snapshot_interval: float) -> float:
    """How long a writer keeps appending to one file: about a snapshot interval, so the
    files a new snapshot makes useless stop being written soon after."""
    return max(snapshot_interval, 1.0)


def fsync_dir(directory: Path) -> None:
    """Make a file's creation, rename or removal in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class JournalError(RuntimeError):
    """A journal write failed: the records in it are not durable."""


class Journal:
    """This process's journal file, with group commit. One per event loop.

    Appends made during one turn of the event loop are written and fdatasynced together,
    on the loop itself, at the start of the next turn (``loop.call_soon``); the issuer
    has already coalesced each pool's hand-outs into one record per batch. The loop
    waits while the disk syncs (~100 us here; ``codepool_journal_fsync_seconds_total``
    in /metrics says how long it waits on yours).

    Why not a thread (as before): a writer thread woken by a condition has to get the
    GIL from a busy event loop before and after each write, and a batch's answers wait
    for it; we read the idle CPU below as that wait. Measured in one session, old and
    new alternating (per-process CPU over 6 s runs, 7 with the thread, 9 without):
    idle CPU during issue runs 0.10-0.18 of a core with the thread, 0.08-0.12 without
    (one run at 0.71), during purchase runs 0.14-0.31 against 0.10-0.17; worker CPU per
    request (medians) issue 198 -> 178 us, purchase 242 -> 226 us; purchase/healthz in
    loadtest.bench (two runs each) 0.49-0.56 -> 0.61. Without HTTP
    (loadtest/snapshot_bench.py) it measured worse, journal on/off 0.89, 0.81 -> 0.82,
    0.67 (docs/durability.md). The price: a worker answers nothing while its disk syncs.
    """

    def __init__(
        self, directory: Path, rotate_after: float = DEFAULT_ROTATE_SECONDS, host: str = ""
    ) -> None:
        self.directory = directory
        self.rotate_after = rotate_after
        self.host = host
        self._fd: int | None = None
        self._opened = 0.0
        self._pending = bytearray()
        self._waiters: list[asyncio.Future[None]] = []
        self._flush_due = False
        self._closed = False
        self.writes = 0  # fsyncs done (for tests and /metrics)
        self.records = 0
        self.sync_seconds = 0.0  # time the loop spent in write + fdatasync (for /metrics)

    async def append(self, records: Sequence[Record]) -> None:
        """Return once ``records`` are on disk (fsynced); raise JournalError if not."""
        if not records:
            return
        if self._closed:
            raise JournalError("the journal is closed")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._pending += encode_frames(records)
        self._waiters.append(waiter)
        self.records += len(records)
        if not self._flush_due:
            self._flush_due = True
            loop.call_soon(self._flush)
        # A caller that goes away cancels only its own waiter: its records are pending
        # and are written with the others.
        await waiter

    def _flush(self) -> None:
        """One write + fdatasync for everything appended since the last one."""
        self._flush_due = False
        if not self._waiters:
            return  # close() wrote it already
        data, waiters = bytes(self._pending), self._waiters
        self._pending, self._waiters = bytearray(), []
        error: JournalError | None = None
        started = time.perf_counter()
        try:
            self._write(data)
        except Exception as exc:
            log.exception("journal write failed in %s", self.directory)
            error = JournalError(f"journal write failed: {exc}")
        else:
            self.writes += 1
        self.sync_seconds += time.perf_counter() - started
        for waiter in waiters:
            if waiter.done():
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    def _write(self, data: bytes) -> None:
        now = time.time()
        if self._fd is not None and now - self._opened > self.rotate_after:
            self._close_fd()
        if self._fd is None:
            self._open(now)
        fd = self._fd
        assert fd is not None
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fdatasync(fd)
        except BaseException:
            # The file may now end in a torn frame: readers stop there, so nothing may
            # follow it. The next write goes to a new file.
            self._close_fd()
            raise

    def _open(self, now: float) -> None:
        # Private like the data it holds (user ids, idempotency records).
        self.directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory.mkdir(exist_ok=True, mode=0o700)
        name = file_name(now, self.host, os.getpid(), secrets.token_hex(4))
        self._fd = os.open(
            self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600
        )
        self._opened = now
        if self.host:
            (self.directory / f"{HOST_MARK}{self.host}").touch(mode=0o600)
        # The file's directory entry must be durable too, or a crash loses the whole file.
        fsync_dir(self.directory)

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    async def close(self) -> None:
        """Write what is pending, then refuse appends."""
        self._closed = True
        self._flush()
        self._close_fd()
