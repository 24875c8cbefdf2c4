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

Preallocated segments: a file is written into room zero-filled and fsynced beforehand (a
spare segment a thread prepares while the current one fills), so an fdatasync has no new
file size to commit, only the data: one disk write instead of two (the ext4 journal
commit of the size). Readers take a zero frame header as the file's end. A writer whose
segment is full moves to the spare; without one ready it goes on extending its file.

The records and their framing: durability.records. A torn or corrupt frame ends the
file for the reader (durability.journal_files; it can only be the last write, which never
got its fsync and so was never acknowledged); after a failed write the writer starts a
new file.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
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
# Size of a preallocated journal file (about 6 s of a 2-worker flash sale's records each).
SEGMENT_BYTES = 8 * 1024 * 1024
# A spare segment being prepared or waiting: ``spare-<pid>-<token>.tmp`` (not a journal
# file for readers); renamed to a journal file's name when its writer moves to it.
SPARE_PREFIX = "spare-"
_ZEROS = bytes(1024 * 1024)


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
        self,
        directory: Path,
        rotate_after: float = DEFAULT_ROTATE_SECONDS,
        host: str = "",
        segment_bytes: int = SEGMENT_BYTES,
    ) -> None:
        self.directory = directory
        self.rotate_after = rotate_after
        self.host = host
        self.segment_bytes = segment_bytes  # 0: no preallocation
        self._fd: int | None = None
        self._opened = 0.0
        self._offset = 0  # where the next write goes in the current file
        self._room = 0  # bytes preallocated in the current file (0: none)
        self._spare: concurrent.futures.Future[Path] | None = None
        self._preparer: concurrent.futures.ThreadPoolExecutor | None = None
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
        if self._fd is not None and (
            now - self._opened > self.rotate_after
            or (self._offset + len(data) > self._room and self._spare_ready())
        ):
            self._close_fd()
        if self._fd is None:
            self._open(now)
        fd = self._fd
        assert fd is not None
        try:
            view = memoryview(data)
            while view:
                written = os.pwrite(fd, view, self._offset)
                self._offset += written
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
        path = self.directory / file_name(now, self.host, os.getpid(), secrets.token_hex(4))
        self._fd, self._room = self._take_spare(path), self.segment_bytes
        if self._fd is None:
            self._fd, self._room = (
                os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600),
                0,
            )
        self._opened, self._offset = now, 0
        if self.host:
            (self.directory / f"{HOST_MARK}{self.host}").touch(mode=0o600)
        # The file's directory entry must be durable too, or a crash loses the whole file.
        fsync_dir(self.directory)
        self._prepare_spare()

    def _spare_ready(self) -> bool:
        return self._spare is not None and self._spare.done() and not self._spare.exception()

    def _take_spare(self, path: Path) -> int | None:
        """The spare segment, renamed to ``path`` and opened; None if none is ready."""
        if not self._spare_ready():
            return None
        assert self._spare is not None
        spare, self._spare = self._spare.result(), None
        try:
            spare.rename(path)
        except FileNotFoundError:
            return None  # deleted from under us (journal_files.prune of an old spare)
        return os.open(path, os.O_WRONLY | os.O_CLOEXEC)

    def _prepare_spare(self) -> None:
        """Start zero-filling the next segment in a thread, unless one is on its way."""
        if self.segment_bytes <= 0 or self._closed:
            return
        if self._spare is not None and not (self._spare.done() and self._spare.exception()):
            return
        if self._preparer is None:
            self._preparer = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="journal-spare"
            )
        name = f"{SPARE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}.tmp"
        self._spare = self._preparer.submit(_zero_filled, self.directory / name, self.segment_bytes)

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
        if self._preparer is not None:
            self._preparer.shutdown(wait=True)  # a spare half-written is then complete
        if self._spare is not None and self._spare_ready():
            self._spare.result().unlink(missing_ok=True)
        self._spare = None


def _zero_filled(path: Path, size: int) -> Path:
    """A file of ``size`` zero bytes, on disk (fsynced) with its size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        left = size
        while left > 0:
            left -= os.write(fd, memoryview(_ZEROS)[: min(left, len(_ZEROS))])
        os.fsync(fd)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    return path
