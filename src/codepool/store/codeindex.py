"""The code index: every code instance of a project, found with O(1) Redis work.

Validate, redeem, release and confirm read a code's issued record first; a code
without a live one (never handed out, released back, mistyped, guessed) is looked up
here instead of scanning the pools, and ``duplicates=skip`` uploads ask it whether a
code is in the pool already. docs/index.md has the design, the memory arithmetic and
the measurements.

Layout (keys.code_index, lua/includes/common.lua has the reading side): 2^15 bucket
strings per project; a code's bucket is the low 15 bits of its CRC-32. One entry per
code instance put into a pool, ``WIDTH`` bytes: fingerprint (bits 8..31 of the CRC,
3 B), upload number (3 B), offset in the upload (4 B), big-endian. An upload number
maps (keys.code_index_uploads) to its pool and to where its offsets landed in the
pool's available list: commit_upload.lua records a segment per slice it moves. A hit
is compared with the code at that position (LINDEX), so the index is exact.

Written in bulk: an upload's entries are computed here per chunk (one CRC-32 per code,
grouped per bucket in plain bytearrays), buffered up to ``FLUSH_CODES`` codes and
written with one APPEND per bucket (lua/index_append.lua, ``BUCKETS_PER_CALL`` buckets
per call so no call holds Redis long) by a task, while the upload goes on. APPEND
over-allocates (it doubles a string's room), so the last write of an upload rewrites
each bucket it touched at its size (GET + SET); a failed upload takes its entries out
again (lua/index_drop.lua). A duplicates=skip upload or a generation stages this way
too, after asking ``present`` which codes of a large chunk are in the index already
(codes sorted by bucket: each bucket string read once per call, lua/index_lookup.lua).
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from codepool import errors, keys
from codepool.scripts import Arg, Scripts
from codepool.store.base import text

BUCKETS = 1 << 15
MASK = BUCKETS - 1
WIDTH = 10
# Entries buffered before they are written: ~30 per bucket per APPEND at 1M codes, and
# ~10 MB of worker memory at most.
FLUSH_CODES = 1_000_000
# Buckets per index_append / index_drop call: about half a millisecond
# of Redis each.
BUCKETS_PER_CALL = 128
# Codes read per LRANGE when a pool's codes are indexed from its available list.
BUILD_SLICE = 50_000
# Codes per index_lookup.lua call (whole buckets: a group of buckets is cut once it
# holds this many): a few milliseconds of Redis each.
LOOKUP_CODES = 2_000
# index_lookup.lua calls in flight at once (read-only: Redis runs them one by one,
# the client saves the round trips).
LOOKUP_IN_FLIGHT = 4

crc32 = zlib.crc32


def bucket_key(project: str, code: bytes | str) -> tuple[str, int]:
    """The code's bucket key and its CRC-32 (what the lookup scripts take)."""
    h = crc32(code.encode() if isinstance(code, str) else code)
    return keys.code_index(project, h & MASK), h


def bucket_template(project: str) -> str:
    return keys.code_index(project, "\0")


def bucket_prefix(project: str) -> str:
    """keys.code_index's name up to the bucket number (which ends it)."""
    return keys.code_index(project, "")


class UploadIndex:
    """The index entries of one upload (or one pool's rebuild), written in bulk.

    ``add`` buffers entries per bucket; ``flush`` hands a full buffer to a task that
    writes it while the upload goes on parsing and staging (two buffers at most);
    ``finish`` writes the rest and rewrites every touched bucket at its size; ``drop``
    takes everything out again."""

    def __init__(self, scripts: Scripts, project: str, number: int) -> None:
        self._scripts = scripts
        self._project = project
        self.number = number
        self._high = number << 32
        self._pending: list[bytearray] = [bytearray() for _ in range(BUCKETS)]
        self._buffered = 0
        self._writing: asyncio.Task[None] | None = None
        self.touched = bytearray(BUCKETS)
        self._finished = bytearray(BUCKETS)

    @classmethod
    async def new(cls, scripts: Scripts, project: str, pool_id: str) -> UploadIndex:
        """A new upload number for ``pool_id``: nothing of it is in the pool yet."""
        names = [keys.code_index_uploads(project), keys.pool(project, pool_id)]
        number = await scripts.run("index_upload", names, [pool_id])
        if int(number) < 0:
            raise errors.PoolNotFound(id=pool_id)
        return cls(scripts, project, int(number))

    def add(self, codes: Sequence[bytes], first_offset: int) -> None:
        """Entries for ``codes``, the upload's codes from ``first_offset`` on. Per code:
        one CRC-32, one int, 10 bytes appended to its bucket's buffer (~0.3 us)."""
        pending, touched, high = self._pending, self.touched, self._high
        for offset, code in enumerate(codes, first_offset):
            h = crc32(code)
            b = h & MASK
            pending[b] += ((h >> 8) << 56 | high | offset).to_bytes(WIDTH)
            touched[b] = 1
        self._buffered += len(codes)

    def add_grouped(self, blob: bytes, counts: Sequence[int]) -> None:
        """Entries computed elsewhere (knowncodes.entries): ``blob`` holds ``counts[b]``
        entries of bucket b, bucket after bucket."""
        pending, touched, view, at = self._pending, self.touched, memoryview(blob), 0
        for b, n in enumerate(counts):
            if n:
                end = at + n * WIDTH
                pending[b] += view[at:end]
                touched[b] = 1
                at = end
        self._buffered += len(blob) // WIDTH

    async def write(self) -> None:
        """Write every buffered entry now and wait for it (a lookup that follows must
        see this upload's own entries)."""
        await self.flush()
        await self._settle()

    @property
    def full(self) -> bool:
        return self._buffered >= FLUSH_CODES

    async def flush(self) -> None:
        """Start writing the buffered entries (one APPEND per bucket) in a task, once
        the previous write is done."""
        await self._settle()
        if not self._buffered:
            return
        args: list[Arg] = []
        for b, piece in enumerate(self._pending):
            if piece:
                args += [b, bytes(piece)]
                piece.clear()
        self._buffered = 0
        self._writing = asyncio.create_task(self._each_slice("index_append", args, 2, ["append"]))

    async def finish(self, buckets: range = range(BUCKETS)) -> None:
        """Write what is buffered and rewrite every bucket this upload touched at its
        exact size: when it returns, every entry is in Redis. With ``buckets``: only
        those (a generation writes its entries a group of buckets at a time, once); a
        bucket finished this way is not rewritten again by a later call."""
        await self._settle()
        args: list[Arg] = []
        for b in buckets:
            if self.touched[b] and not self._finished[b]:
                args += [b, bytes(self._pending[b])]
                self._pending[b] = bytearray()
                if len(buckets) < BUCKETS:
                    self._finished[b] = 1
        self._buffered = sum(map(len, self._pending)) // WIDTH
        await self._each_slice("index_append", args, 2, ["final"])

    async def drop(self) -> None:
        """Take this upload's entries out of the buckets it touched, and its number."""
        with contextlib.suppress(Exception):
            await self._settle()
        self._pending = [bytearray() for _ in range(BUCKETS)]
        self._buffered = 0
        # At least one call: it also forgets the upload number.
        touched: list[Arg] = [b for b in range(BUCKETS) if self.touched[b]]
        await self._each_slice("index_drop", touched or [-1], 1, [str(self.number)])

    async def _settle(self) -> None:
        writing, self._writing = self._writing, None
        if writing is not None:
            await writing

    async def _each_slice(
        self, script: str, args: list[Arg], stride: int, head: Sequence[Arg] = ()
    ) -> None:
        names = [keys.code_index_uploads(self._project)]
        prefix = bucket_prefix(self._project)
        step = BUCKETS_PER_CALL * stride
        for i in range(0, len(args), step):
            await self._scripts.run(script, names, [prefix, *head, *args[i : i + step]])


async def identity(scripts: Scripts, project: str, pool_id: str) -> int:
    """The pool's identity upload number (positions named directly), made if missing."""
    return int(
        await scripts.run(
            "index_upload",
            [keys.code_index_uploads(project), keys.pool(project, pool_id)],
            [pool_id, "identity"],
        )
    )


async def build_pool(client: Redis, scripts: Scripts, project: str, pool_id: str) -> int:
    """Index the codes of a pool that has no index yet (no ``ix`` field: a restored
    pool, or one from before the index), from its available list; returns how many.
    Only while nothing else writes (a restore, the start before serving)."""
    pool = keys.pool(project, pool_id)
    popped = int(text(await client.hget(pool, "popped")) or "0")
    if await client.hexists(pool, "ix"):
        return 0
    index = UploadIndex(scripts, project, await identity(scripts, project, pool_id))
    avail = keys.pool_available(project, pool_id)
    start = 0
    while True:
        codes: list[bytes] = await client.lrange(avail, start, start + BUILD_SLICE - 1)  # type: ignore[assignment]
        index.add(codes, popped + start)
        if index.full:
            await index.flush()
        start += len(codes)
        if len(codes) < BUILD_SLICE:
            break
    await index.finish()
    return start


async def ensure_all(client: Redis, projects: Sequence[str] = ()) -> int:
    """Index every pool not in the index yet, of every registered project and of
    ``projects``: after a restore (snapshots leave the index out) and at the first
    start of a version with the index. Runs before anything is served."""
    scripts = Scripts(client)
    done = 0
    registered = {text(p) for p in await client.smembers(keys.PROJECTS)}
    for project in sorted(registered | set(projects)):
        for pool_id in sorted(text(p) for p in await client.smembers(keys.pools(project))):
            done += await build_pool(client, scripts, project, pool_id)
    return done


def pool_of(upload: Any) -> str:
    """The pool id an uploads-hash value names (after its segments)."""
    raw = bytes(upload)
    n = int.from_bytes(raw[:4])
    return raw[8 + 8 * n :].decode()


def position(upload: Any, offset: int) -> int | None:
    """Where an uploads-hash value says ``offset`` landed (None: not in its pool yet),
    as lua/includes/common.lua's cx_position reads it."""
    raw = bytes(upload)
    n, moved = int.from_bytes(raw[:4]), int.from_bytes(raw[4:8])
    if offset >= moved:
        return None
    at = None
    for i in range(n):
        start = int.from_bytes(raw[8 + 8 * i : 12 + 8 * i])
        if start <= offset:
            at = int.from_bytes(raw[12 + 8 * i : 16 + 8 * i]) + offset - start
    return at


async def purge_pool(client: Redis, scripts: Scripts, project: str, pool_id: str) -> int:
    """Take a deleted pool's entries out of every bucket (its uploads and its identity
    upload), ``BUCKETS_PER_CALL`` buckets a call; returns how many went."""
    uploads = await client.hgetall(keys.code_index_uploads(project))
    numbers = [text(u) for u, v in uploads.items() if u != b"seq" and pool_of(v) == pool_id]
    if not numbers:
        return 0
    names, prefix, removed = [keys.code_index_uploads(project)], bucket_prefix(project), 0
    for start in range(0, BUCKETS, BUCKETS_PER_CALL):
        buckets = range(start, min(start + BUCKETS_PER_CALL, BUCKETS))
        removed += await scripts.run("index_drop", names, [prefix, ",".join(numbers), *buckets])
    return removed


# Codes sorted per step of ``sort_by_bucket``: between steps the event loop runs, so
# the lookups of another chunk go on in Redis meanwhile (~15 ms of Python a step).
SORT_STEP = 25_000

Lookups = list[tuple[list[bytes], bytes]]


async def sort_by_bucket(codes: Sequence[bytes]) -> Lookups:
    """The lookups of ``codes`` (distinct), one (codes, packed string) per
    index_lookup.lua call: sorted by bucket, so that each bucket string is read once
    for all the codes of ``codes`` that fall in it (a large chunk: many per bucket).
    Per code one CRC-32 and a few bytes objects, ~0.6 us in all; yields to the event
    loop every ``SORT_STEP`` codes."""
    pieces: list[bytes] = []
    for i in range(0, len(codes), SORT_STEP):
        part = codes[i : i + SORT_STEP]
        pieces += [
            ((h & MASK) << 40 | (h >> 8) << 16 | len(code)).to_bytes(7) + code
            for h, code in zip(map(crc32, part), part, strict=True)
        ]
        await asyncio.sleep(0)
    pieces.sort()
    calls: Lookups = []
    for i in range(0, len(pieces), LOOKUP_CODES):
        cut = pieces[i : i + LOOKUP_CODES]
        calls.append(([p[7:] for p in cut], b"".join(cut)))
    return calls


async def look_up(
    scripts: Scripts, project: str, pool_id: str, staging: str, number: int, calls: Lookups
) -> set[bytes]:
    """Run the lookups ``sort_by_bucket`` made: the present codes (see ``present``).
    Per call the index (index_lookup.lua) and the issued records (one HMGET) are read
    side by side."""
    names = [staging, keys.code_index_uploads(project)]
    head: list[Arg] = [
        pool_id,
        number,
        bucket_prefix(project),
        keys.pool(project, "\0"),
        keys.pool_available(project, "\0"),
    ]
    issued = keys.issued(project)
    client = scripts.client
    found: set[bytes] = set()
    mine = pool_id.encode()
    for start in range(0, len(calls), LOOKUP_IN_FLIGHT):
        batch = calls[start : start + LOOKUP_IN_FLIGHT]
        replies = await asyncio.gather(
            *(scripts.run("index_lookup", names, [*head, blob]) for _, blob in batch),
            *(client.hmget(issued, codes) for codes, _ in batch),
        )
        for reply in replies[: len(batch)]:
            found.update(reply)
        for (codes, _), records in zip(batch, replies[len(batch) :], strict=True):
            for code, record in zip(codes, records, strict=True):
                if record is not None and (not mine or _issued_from(record, mine)):
                    found.add(code)
    return found


def _issued_from(record: bytes, pool_id: bytes) -> bool:
    """Whether an issued record (lua/includes/common.lua's layout: instances split by
    RS, fields by US, the pool id first) has an instance of ``pool_id``."""
    return any(inst.split(b"\x1f", 1)[0] == pool_id for inst in record.split(b"\x1e"))


async def present(
    scripts: Scripts,
    project: str,
    pool_id: str,
    staging: str,
    number: int,
    codes: Sequence[bytes],
) -> set[bytes]:
    """Those of ``codes`` (distinct) present already: in the pool ``pool_id`` ('': in
    any pool of the project), handed out from it, or staged by upload ``number`` (its
    entries must be written: ``UploadIndex.write``)."""
    calls = await sort_by_bucket(codes)
    return await look_up(scripts, project, pool_id, staging, number, calls)


def lookup_args(project: str, code: str) -> tuple[str, str, int]:
    """(bucket key, uploads hash, CRC-32): what validate/redeem/release/confirm take."""
    key, h = bucket_key(project, code)
    return key, keys.code_index_uploads(project), h


def entries(raw: Any) -> list[tuple[int, int, int]]:
    """(fingerprint, upload, offset) of each entry of a bucket string (for tests)."""
    data = bytes(raw or b"")
    return [
        (
            int.from_bytes(data[i : i + 3]),
            int.from_bytes(data[i + 3 : i + 6]),
            int.from_bytes(data[i + 6 : i + WIDTH]),
        )
        for i in range(0, len(data), WIDTH)
    ]
