"""Snapshots: the whole codepool state in one compact file, taken without stopping Redis.

A snapshot is read slice by slice (lua/snapshot_read.lua) while codes keep being handed
out, so it is "fuzzy": each slice is exact, but slices are read at different moments.
Each slice carries the project's clock (per pool: codes popped so far, end position of
the available list, redeems so far) read in the same atomic step, and the journal
(durability.journal) records every hand-out, redeem and release with the same counters. A
restore (durability.restore) replays exactly the journaled changes a slice does not hold,
so snapshot + journal give one exact state.

Available lists are read by position, not index: the list shrinks from the left while
it is read, and reading by index would skip as many codes as were popped meanwhile.

Per project, keys are read in the order a streaming restore wants them: the issued
hash first (so a code seen available later cannot be in it yet, see durability.apply_codes), then
per pool its hash, available list and log, then rewards, user lists (a hundred to a
script call: every buyer has one), idempotency records, the pools' per-minute counters
(each day's read with the clock, like a slice), events, and everything else key
by key, typed generically (so keys added later, like the notification outbox, are kept
too). Upload staging keys are left out: an upload that is not committed was never

File format: durability.snapshot_format; the directory and what is kept:
durability.snapshot_dir.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from codepool import keys
from codepool.durability.hosts import redis_now, registered_hosts
from codepool.durability.journal import DEFAULT_ROTATE_SECONDS, fsync_dir
from codepool.durability.keyspace import SCAN_COUNT, KeyKind, all_keys, classify
from codepool.durability.snapshot_dir import prepare_dir, retain
from codepool.durability.snapshot_format import (
    FORMAT_VERSION,
    SUFFIX,
    Avail,
    Clock,
    Counters,
    Footer,
    FrameWriter,
    HashSlice,
    Header,
    KeyEnd,
    ListSlice,
    ProjectEnd,
    SetSlice,
    SnapshotError,
    SnapshotInfo,
    StreamSlice,
    StringKey,
    ZSetSlice,
)
from codepool.scripts import Scripts

log = logging.getLogger(__name__)

# Slice sizes: each read is one script call of about a millisecond (handing a reply
# from Lua back costs ~0.5 us per element), so Redis never stalls issue calls for longer
# than that, however big the state.
AVAIL_SLICE = 2_000
LIST_SLICE = 2_000
HASH_SLICE = 500
STREAM_SLICE = 100
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


def _templates(project: str) -> tuple[str, str]:
    return keys.pool(project, "\0"), keys.pool_available(project, "\0")


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _clock(raw: list[Any]) -> Clock:
    return {
        raw[i].decode(): (int(raw[i + 1]), int(raw[i + 2]), int(raw[i + 3]))
        for i in range(0, len(raw), 4)
    }


class _Reader:
    """Reads one project's keys slice by slice into frames."""

    def __init__(self, client: Redis, scripts: Scripts, out: FrameWriter) -> None:
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
    prepare_dir(directory)
    started = time.time()
    name = f"snapshot-{int(started * 1e6):020d}{SUFFIX}"
    final, temp = directory / name, directory / f".{name}.tmp"
    redis_started = await redis_now(client)
    hosts = await registered_hosts(client)
    names = await all_keys(client)
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
        out = FrameWriter(file)
        out.add(
            Header(
                version=FORMAT_VERSION,
                started_at=started,
                host=socket.gethostname(),
                pid=os.getpid(),
                redis_started_at=redis_started,
                hosts=hosts,
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
    retain(directory, keep, journal_rotation)
    return info
