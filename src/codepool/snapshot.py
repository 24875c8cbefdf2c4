"""Snapshots: the whole codepool state in one compact file, taken without stopping Redis.

A snapshot is read slice by slice (lua/snapshot_read.lua) while codes keep being handed
out, so it is "fuzzy": each slice is exact, but slices are read at different moments.
Each slice carries the project's clock (per pool: codes popped so far, end position of
the available list, redeems so far) read in the same atomic step, and the journal
(codepool.journal) records every hand-out, redeem and release with the same counters. A
restore (codepool.restore) replays exactly the journaled changes a slice does not hold,
so snapshot + journal give one exact state.

Available lists are read by position, not index: the list shrinks from the left while
it is read, and reading by index would skip as many codes as were popped meanwhile.

Per project, keys are read in the order a streaming restore wants them: the issued
hash first (so a code seen available later cannot be in it yet, see restore.py), then
per pool its hash, available list and log, then rewards, user lists (a hundred to a
script call: every buyer has one), idempotency records, the pools' per-minute counters
(each day's read with the clock, like a slice), events, and everything else key
by key, typed generically (so keys added later, like the notification outbox, are kept
too). Upload staging keys are left out: an upload that is not committed was never
acknowledged; so are rate-limit counters (a second's worth) and the per-user event
lists (an index of the project's events, which a restore rebuilds from them).

File: ``snapshots/snapshot-<start µs>.cps`` = MAGIC, then frames ``[u32 length][u32
crc32][u8 kind][msgpack]``, then a trailer (crc32 of everything before it + MAGIC_END).
It is written to a temp file, fsynced, renamed, and the directory fsynced; the newest
``snapshot_keep`` are kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
import struct
import time
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Final

import msgspec
from redis.asyncio import Redis

from codepool import keys
from codepool.journal import DEFAULT_ROTATE_SECONDS, fsync_dir, journal_dir, prune
from codepool.scripts import Scripts

log = logging.getLogger(__name__)

FORMAT_VERSION: Final = 1
MAGIC: Final = b"CODEPOOL-SNAP-1\n"
MAGIC_END: Final = b"\nCODEPOOL-END-1\n"
SUFFIX: Final = ".cps"
_FRAME = struct.Struct(">IIB")
_TRAILER = struct.Struct(">I")

# Slice sizes: each read is one script call of about a millisecond (handing a reply
# from Lua back costs ~0.5 us per element), so Redis never stalls issue calls for longer
# than that, however big the state.
AVAIL_SLICE = 2_000
LIST_SLICE = 2_000
HASH_SLICE = 500
STREAM_SLICE = 100
SCAN_COUNT = 1_000
PIPELINE = 500
# Per-user code lists, many to a script call: in a flash sale every buyer has one (of a
# code or two), and a call (plus a PTTL) per list made a snapshot cost two round trips
# per buyer. A call of 100 short lists took Redis 0.5-0.9 ms (2 vCPUs, Redis 6.2), the
# ~1 ms above. It reads at most LIST_SLICE // USER_LISTS_PER_CALL items of each list, so
# its reply stays within one LIST_SLICE; a longer list goes on in read_list's slices.
USER_LISTS_PER_CALL = 100


def _now_ms() -> int:
    return int(time.time() * 1000)


def _expires_ms(ttl: int, now_ms: int) -> int:
    """A key's expiry as Unix ms from its PTTL (Redis 6.2 has no PEXPIRETIME: to a
    millisecond or so); 0 for none (-1) or no such key (-2)."""
    return now_ms + ttl if ttl > 0 else 0


# pool id -> (codes popped, end position of the available list, redeems), see snapshot_read.lua
Clock = dict[str, tuple[int, int, int]]


# -- frames ---------------------------------------------------------------------------
# array_like: field names are not repeated in every frame. Binary values stay bytes.


class Header(msgspec.Struct, tag="H", array_like=True):
    version: int
    started_at: float  # Unix time before the first read
    host: str
    pid: int


class Avail(msgspec.Struct, tag="A", array_like=True):
    """Codes of a pool's available list at positions start, start+1, ... (newline-joined:
    codes hold no whitespace)."""

    key: str
    pool: str
    start: int
    codes: bytes
    count: int
    clock: Clock


class HashSlice(msgspec.Struct, tag="h", array_like=True):
    key: str
    flat: list[bytes]  # field, value, field, value, ...
    clock: Clock | None


class ListSlice(msgspec.Struct, tag="l", array_like=True):
    key: str
    items: list[bytes]
    clock: Clock | None


class SetSlice(msgspec.Struct, tag="s", array_like=True):
    key: str
    members: list[bytes]


class ZSetSlice(msgspec.Struct, tag="z", array_like=True):
    key: str
    flat: list[bytes]  # member, score, ...


class StreamSlice(msgspec.Struct, tag="x", array_like=True):
    key: str
    entries: list[tuple[bytes, list[bytes]]]
    clock: Clock | None


class StringKey(msgspec.Struct, tag="k", array_like=True):
    key: str
    value: bytes
    expires_ms: int  # absolute Unix ms, 0 = no expiry


class Counters(msgspec.Struct, tag="c", array_like=True):
    """A pool's per-minute counters of one day (keys.pool_stats), read with the clock:
    a restore adds the journaled changes the clock does not reflect."""

    key: str
    value: bytes
    expires_ms: int
    clock: Clock


class KeyEnd(msgspec.Struct, tag="e", array_like=True):
    """After a key's slices: its expiry (absolute Unix ms, 0 none), and the clock of its
    last slice (None for keys read without one)."""

    key: str
    expires_ms: int
    clock: Clock | None


class ProjectEnd(msgspec.Struct, tag="P", array_like=True):
    project: str
    clock: Clock


class Footer(msgspec.Struct, tag="F", array_like=True):
    finished_at: float
    frames: int
    keys: int
    codes: int


Frame = (
    Header
    | Avail
    | HashSlice
    | ListSlice
    | SetSlice
    | ZSetSlice
    | StreamSlice
    | StringKey
    | KeyEnd
    | ProjectEnd
    | Footer
    | Counters  # last: the kind byte of the others stays what older files hold
)
_KIND = {cls: i for i, cls in enumerate(Frame.__args__)}
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Frame)


class SnapshotError(RuntimeError):
    """A snapshot file is missing, incomplete or corrupt."""


class SnapshotInfo(msgspec.Struct, frozen=True, kw_only=True):
    path: Path
    started_at: float
    seconds: float
    size: int
    keys: int
    codes: int


# -- key names ------------------------------------------------------------------------


class KeyKind(msgspec.Struct, frozen=True):
    # issued, events, pool, avail, log, user, reward_users, idem, stats, skip, other
    kind: str
    project: str
    id: str = ""


def _pattern(make: Any, n_ids: int, id_re: str = "[^:]+") -> re.Pattern[str]:
    """A regex matching the names keys.py makes with ``make`` (any project, any ids)."""
    name: str = make("\x01", *["\x00"] * n_ids)
    regex, ids = "", 0
    for part in re.split("([\x00\x01])", name):
        if part == "\x01":
            regex += "(?P<project>[^}]+)"
        elif part == "\x00":
            regex += f"(?P<id>{id_re})" if ids == 0 else f"(?:{id_re})"
            ids += 1
        else:
            regex += re.escape(part)
    return re.compile(regex)


# Order matters: a pool id never holds ':', so pool:<id> does not match pool:<id>:log.
_KINDS: list[tuple[str, re.Pattern[str]]] = [
    ("issued", _pattern(keys.issued, 0)),
    ("events", _pattern(keys.events, 0)),
    ("pool", _pattern(keys.pool, 1)),
    ("avail", _pattern(keys.pool_available, 1)),
    ("log", _pattern(keys.pool_log, 1)),
    # An upload in flight was never acknowledged: not worth keeping.
    ("skip", _pattern(keys.pool_staging, 2)),
    ("skip", _pattern(keys.pool_staging_seen, 2)),
    ("skip", _pattern(keys.pool_upload_lock, 1)),
    ("skip", _pattern(keys.generate_lock, 0)),
    # Per-user event lists are an index of the project stream: a restore rebuilds them
    # from it (restore.py), exact whatever the moment each would have been read.
    ("skip", _pattern(keys.user_events, 1, ".+")),
    # Rate-limit counters live a second.
    ("skip", _pattern(keys.rate_limit, 1, ".+")),
    ("reward_users", _pattern(keys.reward_users, 1)),
    ("user", _pattern(keys.user_codes, 1, ".+")),
    ("idem", _pattern(keys.idempotency, 1)),
    ("stats", _pattern(keys.pool_stats, 2)),
]
_PROJECT = _pattern(lambda p: f"{keys.pools(p).rsplit(':', 1)[0]}:", 0)


def classify(key: str) -> KeyKind | None:
    """What a codepool key holds, from its name (keys.py); None for global keys."""
    for kind, pattern in _KINDS:
        match = pattern.fullmatch(key)
        if match is not None:
            return KeyKind(kind, match.group("project"), match.groupdict().get("id") or "")
    match = _PROJECT.match(key)
    return None if match is None else KeyKind("other", match.group("project"))


def _templates(project: str) -> tuple[str, str]:
    return keys.pool(project, "\0"), keys.pool_available(project, "\0")


# -- writing ----------------------------------------------------------------------------


class _FrameWriter:
    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._crc = zlib.crc32(MAGIC)
        self.frames = 0
        file.write(MAGIC)

    def add(self, frame: Frame) -> None:
        payload = _encoder.encode(frame)
        head = _FRAME.pack(len(payload), zlib.crc32(payload), _KIND[type(frame)])
        self._crc = zlib.crc32(payload, zlib.crc32(head, self._crc))
        self._file.write(head)
        self._file.write(payload)
        self.frames += 1

    def finish(self) -> None:
        self._file.write(_TRAILER.pack(self._crc) + MAGIC_END)


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _clock(raw: list[Any]) -> Clock:
    return {
        raw[i].decode(): (int(raw[i + 1]), int(raw[i + 2]), int(raw[i + 3]))
        for i in range(0, len(raw), 4)
    }


class _Reader:
    """Reads one project's keys slice by slice into frames."""

    def __init__(self, client: Redis, scripts: Scripts, out: _FrameWriter) -> None:
        self.client = client
        self.scripts = scripts
        self.out = out
        self.codes = 0

    async def _read(
        self, key: str, project: str, kind: str, *args: Any, more: Sequence[str] = ()
    ) -> tuple[Clock, Any]:
        """One snapshot_read.lua call; ``more``: further keys (kind lists)."""
        pool_t, avail_t = _templates(project)
        clock, data = await self.scripts.run(
            "snapshot_read", [key, keys.pools(project), *more], [kind, pool_t, avail_t, *args]
        )
        return _clock(clock), data

    async def _read_lists(
        self, names: list[str], project: str, count: int
    ) -> tuple[Clock, list[tuple[int, int, list[bytes]]]]:
        """The first ``count`` items, length and PTTL of each list, with one clock."""
        clock, data = await self._read(names[0], project, "lists", count, more=names[1:])
        return clock, [(int(n), int(ttl), items) for n, ttl, items in data]

    async def _expiry(self, key: str) -> int:
        return _expires_ms(int(await self.client.pttl(key)), _now_ms())

    async def read_hash(self, key: str, project: str) -> None:
        cursor, clock = "0", None
        while True:
            clock, (cursor_raw, flat) = await self._read(key, project, "hscan", cursor, HASH_SLICE)
            if flat:
                self.out.add(HashSlice(key=key, flat=flat, clock=clock))
            cursor = cursor_raw.decode()
            if cursor == "0":
                break
        self.out.add(KeyEnd(key=key, expires_ms=await self._expiry(key), clock=clock))

    async def read_small_hash(self, key: str, project: str) -> None:
        clock, flat = await self._read(key, project, "hash", "", "")
        self.out.add(HashSlice(key=key, flat=flat, clock=clock))
        self.out.add(KeyEnd(key=key, expires_ms=await self._expiry(key), clock=clock))

    async def read_list(self, key: str, project: str, start: int = 0) -> None:
        """A list's slices from index ``start`` on, then its KeyEnd (the caller wrote
        the items before ``start``)."""
        clock = None
        while True:
            clock, (length, items) = await self._read(key, project, "list", start, LIST_SLICE)
            if items:
                self.out.add(ListSlice(key=key, items=items, clock=clock))
            start += len(items)
            if start >= int(length) or not items:
                break
        self.out.add(KeyEnd(key=key, expires_ms=await self._expiry(key), clock=clock))

    async def read_small_lists(self, names: list[str], project: str) -> None:
        """Lists that are short as a rule (per-user code lists), many per script call;
        each gives the frames read_list gives it."""
        count = max(1, LIST_SLICE // USER_LISTS_PER_CALL)
        for i in range(0, len(names), USER_LISTS_PER_CALL):
            batch = names[i : i + USER_LISTS_PER_CALL]
            clock, lists = await self._read_lists(batch, project, count)
            now_ms = _now_ms()
            for key, (length, ttl, items) in zip(batch, lists, strict=True):
                if items:
                    self.out.add(ListSlice(key=key, items=items, clock=clock))
                if items and len(items) < length:
                    await self.read_list(key, project, start=len(items))
                    continue
                # Deleted since the scan: length 0, PTTL -2, no slice (as read_list).
                self.out.add(KeyEnd(key=key, expires_ms=_expires_ms(ttl, now_ms), clock=clock))

    async def read_stream(self, key: str, project: str) -> None:
        after, clock = "", None
        while True:
            clock, entries = await self._read(key, project, "xrange", after, STREAM_SLICE)
            if entries:
                self.out.add(
                    StreamSlice(key=key, entries=[(e[0], e[1]) for e in entries], clock=clock)
                )
                after = entries[-1][0].decode()
            if len(entries) < STREAM_SLICE:
                break
        self.out.add(KeyEnd(key=key, expires_ms=await self._expiry(key), clock=clock))

    async def read_available(self, key: str, project: str, pool_id: str) -> None:
        position, clock = 0, None
        while True:
            clock, data = await self._read(key, project, "avail", position, AVAIL_SLICE, pool_id)
            start, codes = int(data[0]), data[1]
            if codes:
                blob = b"\n".join(codes)
                if blob.count(b"\n") != len(codes) - 1:
                    raise SnapshotError(f"a code in {key} holds a newline")
                self.out.add(
                    Avail(
                        key=key,
                        pool=pool_id,
                        start=start,
                        codes=blob,
                        count=len(codes),
                        clock=clock,
                    )
                )
                self.codes += len(codes)
            position = start + len(codes)
            _, end, _ = clock.get(pool_id, (0, 0, 0))
            if len(codes) < AVAIL_SLICE or position >= end:
                break
        self.out.add(KeyEnd(key=key, expires_ms=0, clock=clock))

    async def read_counters(self, key: str, project: str) -> None:
        clock, (value, ttl) = await self._read(key, project, "string", "", "")
        if int(ttl) != -2:  # gone since the scan (expired, or its pool deleted)
            expires = _expires_ms(int(ttl), _now_ms())
            self.out.add(Counters(key=key, value=value, expires_ms=expires, clock=clock))

    async def read_set(self, key: str) -> None:
        async for members in _chunks(self.client.sscan_iter(key, count=SCAN_COUNT)):
            self.out.add(SetSlice(key=key, members=members))
        self.out.add(KeyEnd(key=key, expires_ms=await self._expiry(key), clock=None))

    async def read_zset(self, key: str) -> None:
        cursor = 0
        while True:
            cursor, pairs = await self.client.zscan(key, cursor, count=SCAN_COUNT)
            if pairs:
                flat: list[bytes] = []
                for member, score in pairs:
                    flat += [_bytes(member), repr(float(score)).encode()]
                self.out.add(ZSetSlice(key=key, flat=flat))
            if cursor == 0:
                break
        self.out.add(KeyEnd(key=key, expires_ms=await self._expiry(key), clock=None))

    async def read_strings(self, names: list[str]) -> None:
        for i in range(0, len(names), PIPELINE):
            chunk = names[i : i + PIPELINE]
            async with self.client.pipeline(transaction=False) as pipe:
                for name in chunk:
                    pipe.get(name)
                    pipe.pttl(name)
                raw = await pipe.execute()
            now_ms = _now_ms()
            for name, value, ttl in zip(chunk, raw[::2], raw[1::2], strict=True):
                if value is None or ttl == -2:
                    continue  # expired or deleted since the scan
                expires = _expires_ms(int(ttl), now_ms)
                self.out.add(StringKey(key=name, value=value, expires_ms=expires))

    async def read_generic(self, key: str, project: str | None) -> None:
        kind = _bytes(await self.client.type(key)).decode()
        if kind == "string":
            await self.read_strings([key])
        elif kind == "hash" and project is not None:
            await self.read_hash(key, project)
        elif kind == "list" and project is not None:
            await self.read_list(key, project)
        elif kind == "stream" and project is not None:
            await self.read_stream(key, project)
        elif kind == "set":
            await self.read_set(key)
        elif kind == "zset":
            await self.read_zset(key)
        elif kind != "none":
            log.warning("snapshot: key %s of type %s left out", key, kind)


async def _chunks(
    items: AsyncIterator[bytes], size: int = SCAN_COUNT
) -> AsyncIterator[list[bytes]]:
    chunk: list[bytes] = []
    async for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def scan_keys(client: Redis) -> list[str]:
    """Every codepool key name (SCAN: a thousand at a time, never KEYS)."""
    found: set[str] = set()
    async for name in client.scan_iter(match=f"{keys.PREFIX}:*", count=SCAN_COUNT):
        found.add(name.decode() if isinstance(name, bytes) else name)
    return sorted(found)


async def _project(reader: _Reader, project: str, names: list[str]) -> None:
    by_kind: dict[str, list[tuple[str, KeyKind]]] = {}
    for name in names:
        kind = classify(name)
        assert kind is not None
        by_kind.setdefault(kind.kind, []).append((name, kind))
    # Always an issued section (even empty): the restore applies journaled hand-outs at
    # its end, before it sees any available list.
    await reader.read_hash(keys.issued(project), project)
    for name, kind in by_kind.get("pool", []):
        await reader.read_small_hash(name, project)
        await reader.read_available(keys.pool_available(project, kind.id), project, kind.id)
        log_key = keys.pool_log(project, kind.id)
        if log_key in names:
            await reader.read_list(log_key, project)
    for name, _ in by_kind.get("reward_users", []):
        await reader.read_hash(name, project)
    await reader.read_small_lists([name for name, _ in by_kind.get("user", [])], project)
    await reader.read_strings([name for name, _ in by_kind.get("idem", [])])
    for name, _ in by_kind.get("stats", []):
        await reader.read_counters(name, project)
    if keys.events(project) in names:
        await reader.read_stream(keys.events(project), project)
    done = {"issued", "pool", "avail", "log", "reward_users", "user", "idem", "events", "stats"}
    done.add("skip")
    for kind_name, entries in sorted(by_kind.items()):
        if kind_name not in done:
            for name, _ in entries:
                await reader.read_generic(name, project)
    clock, _ = await reader._read(keys.project(project), project, "hash", "", "")
    reader.out.add(ProjectEnd(project=project, clock=clock))


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


async def take_snapshot(
    client: Redis,
    directory: Path,
    *,
    keep: int = 5,
    journal_rotation: float = DEFAULT_ROTATE_SECONDS,
    scripts: Scripts | None = None,
) -> SnapshotInfo:
    """Write a snapshot of every project into ``directory``; return what was written.

    Call with :func:`directory_lock` held. Deletes older snapshots beyond ``keep`` and
    journal files no restore can need any more (``journal_rotation``: how long the
    writers keep a file, see journal.rotation).
    """
    scripts = scripts or Scripts(client)
    _prepare(directory)
    started = time.time()
    name = f"snapshot-{int(started * 1e6):020d}{SUFFIX}"
    final, temp = directory / name, directory / f".{name}.tmp"
    names = await scan_keys(client)
    by_project: dict[str, list[str]] = {}
    global_names: list[str] = []
    for key in names:
        kind = classify(key)
        if kind is None:
            global_names.append(key)
        else:
            by_project.setdefault(kind.project, []).append(key)
    # 0600: a snapshot holds the projects' token and webhook secrets. Plain blocking
    # writes: they go to the page cache, and the loop serves nothing but this snapshot.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with open(fd, "wb", buffering=1 << 20) as file:  # noqa: ASYNC230
        out = _FrameWriter(file)
        out.add(
            Header(
                version=FORMAT_VERSION,
                started_at=started,
                host=socket.gethostname(),
                pid=os.getpid(),
            )
        )
        reader = _Reader(client, scripts, out)
        for project in sorted(by_project):
            await _project(reader, project, by_project[project])
        # The project registry last, as a restore writes it last.
        if keys.PROJECTS in global_names:
            await reader.read_set(keys.PROJECTS)
        out.add(
            Footer(
                finished_at=time.time(), frames=out.frames + 1, keys=len(names), codes=reader.codes
            )
        )
        out.finish()
        file.flush()
        os.fsync(file.fileno())
    temp.rename(final)
    fsync_dir(directory)
    info = SnapshotInfo(
        path=final,
        started_at=started,
        seconds=time.time() - started,
        size=final.stat().st_size,
        keys=len(names),
        codes=reader.codes,
    )
    _retain(directory, keep, journal_rotation)
    return info


def _prepare(directory: Path) -> None:
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


def _retain(directory: Path, keep: int, journal_rotation: float) -> None:
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


# -- reading --------------------------------------------------------------------------


def verify(path: Path) -> None:
    """Raise SnapshotError unless ``path`` is a complete snapshot with a good checksum."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise SnapshotError(f"{path}: not a codepool snapshot")
            tail_at = size - _TRAILER.size - len(MAGIC_END)
            if tail_at < len(MAGIC):
                raise SnapshotError(f"{path}: truncated")
            crc = zlib.crc32(MAGIC)
            remaining = tail_at - len(MAGIC)
            while remaining:
                block = f.read(min(remaining, 1 << 22))
                if not block:
                    raise SnapshotError(f"{path}: truncated")
                crc = zlib.crc32(block, crc)
                remaining -= len(block)
            trailer = f.read()
    except OSError as exc:
        raise SnapshotError(f"{path}: {exc}") from exc
    if trailer[_TRAILER.size :] != MAGIC_END or _TRAILER.unpack(trailer[: _TRAILER.size])[0] != crc:
        raise SnapshotError(f"{path}: incomplete or corrupt (checksum mismatch)")


def read_frames(path: Path) -> Iterator[Frame]:
    """The frames of a verified snapshot, in order (Header first, Footer last)."""
    with path.open("rb", buffering=1 << 20) as f:
        f.read(len(MAGIC))
        while True:
            head = f.read(_FRAME.size)
            if len(head) < _FRAME.size:
                raise SnapshotError(f"{path}: ends without a footer")
            length, crc, _ = _FRAME.unpack(head)
            payload = f.read(length)
            if len(payload) != length or zlib.crc32(payload) != crc:
                raise SnapshotError(f"{path}: corrupt frame")
            frame = _decoder.decode(payload)
            yield frame
            if isinstance(frame, Footer):
                return


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
