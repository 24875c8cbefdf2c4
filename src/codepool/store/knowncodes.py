"""The CRC-32 of every code a project holds, read once: a large generation tests its
drawn codes against this sorted array in Python instead of asking Redis per code.

The code index (store/codeindex.py) holds one entry per code instance: its bucket (the
low 15 bits of the CRC-32) is the key's name and its fingerprint (bits 8..31) the
entry's first 3 bytes, so together they are the whole CRC-32. Handed-out codes have an
issued record, whose field name is the code. ``read`` collects both: the CRC-32 of
every issued record's code (HSCAN) and of every index entry (the 2^15 buckets read by
``MGET``s, ~10 B per entry), 4 B per code in one sorted numpy array (40 MB at 10M
codes). A drawn code whose CRC-32 is not in it is new to the project; one whose CRC-32
is (a fingerprint collision, ~1 per 430 existing codes per million drawn) is checked
exactly by the index's own lookup (codeindex.present: LINDEX + compare, the issued
record) like every code of a small generation.

Why a read spread over many calls is exact (docs/generate.md, "Speed"): while it runs,
the only codes that enter the project come from uploads (which a generation never
checks against; see "One at a time"). A code the project holds throughout has, at each
moment, an issued record or an index entry of its CRC-32 (an available instance always
has its entry). If its record was there during the whole HSCAN, HSCAN returned it.
Otherwise it was available at some moment of the HSCAN, so an entry of its CRC-32 was
in its bucket then; that bucket is read after the HSCAN, and an entry only ever leaves a
bucket through lua/index_drop.lua (releases re-point dead entries in place, keeping the
fingerprint; compaction keeps every entry), which forgets the entry's upload number in
the same call. Upload numbers are never reused. So if every upload number that existed
during the read still exists after it, no entry left a bucket, and every code held
throughout is in the array; otherwise (a pool deleted, an upload failed meanwhile) the
read is done again, and after ``ATTEMPTS`` the generation falls back to asking Redis.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray
from redis.asyncio import Redis

from codepool import keys
from codepool.store import codeindex
from codepool.store.codeindex import BUCKETS, MASK, WIDTH, UploadIndex, bucket_prefix

Known = NDArray[np.uint32]

# Buckets per MGET (~3 MB of reply at 10M codes in the project).
BUCKETS_PER_READ = 1024
# Issued records per HSCAN call.
ISSUED_PER_SCAN = 5000
# Reads tried before the caller falls back to per-code lookups.
ATTEMPTS = 2
# A generation of (or a duplicates=skip upload expected to bring: SkipTracker) at least
# this many codes reads the project's CRC-32s when the project holds at most RATIO times
# as many codes, issued records included: reading costs ~0.1-0.2 us per code held, the
# per-code lookup ~2.5 us per code drawn or uploaded.
MIN_CODES = 50_000
RATIO = 8
# A skip upload of unannounced size is taken to bring GROWTH times what it has
# brought so far (SkipTracker._estimate).
GROWTH = 4
# Buckets whose entries are computed and written at once at the end of an upload that
# kept them in memory (1/8 of them: ~1/8 of its entries in Python at a time).
ENTRY_GROUP = 4096


async def read(client: Redis, project: str) -> Known | None:
    """The sorted CRC-32s of every code the project holds (with repeats), or None when
    upload numbers were forgotten during each of ``ATTEMPTS`` reads (see the module)."""
    uploads = keys.code_index_uploads(project)
    for _ in range(ATTEMPTS):
        seq, before = await _numbers(client, uploads)
        parts = [await _issued(client, project)]
        parts += [part async for part in _buckets(client, project)]
        end, after = await _numbers(client, uploads)
        if (before | set(range(seq + 1, end + 1))) <= after:
            known: Known = np.sort(np.concatenate(parts))
            return known
    return None


async def _numbers(client: Redis, uploads: str) -> tuple[int, set[int]]:
    """The uploads hash's sequence, then its upload numbers (in this order: a number
    made between the two reads is above the sequence read)."""
    seq = int(await client.hget(uploads, "seq") or 0)
    names: list[bytes] = await client.hkeys(uploads)  # type: ignore[assignment]
    return seq, {int(n) for n in names if n != b"seq"}


def hashes(codes: Iterable[bytes], count: int) -> Known:
    """The CRC-32 of each code (zlib's, as the index computes it), ~0.05 us a code."""
    return np.fromiter(map(zlib.crc32, codes), np.uint32, count)


async def _issued(client: Redis, project: str) -> Known:
    issued = keys.issued(project)
    parts: list[Known] = [np.empty(0, np.uint32)]
    cursor: Any = 0
    while True:
        cursor, records = await client.hscan(issued, cursor, count=ISSUED_PER_SCAN)
        if records:
            codes: list[bytes] = list(records)  # type: ignore[arg-type]
            parts.append(hashes(codes, len(codes)))
        if int(cursor) == 0:
            return np.concatenate(parts)


async def _buckets(client: Redis, project: str) -> Any:
    """The CRC-32 of each entry, ``BUCKETS_PER_READ`` buckets at a time: the bucket
    number is the low 15 bits, the fingerprint bits 8..31 (the two overlap)."""
    prefix = bucket_prefix(project)
    for start in range(0, BUCKETS, BUCKETS_PER_READ):
        numbers = range(start, min(start + BUCKETS_PER_READ, BUCKETS))
        # One MGET (the keys share the project's hash tag): a pipeline of GETs costs
        # the client ~10 us a key.
        strings: list[bytes | None] = await client.mget([f"{prefix}{b}" for b in numbers])  # type: ignore[assignment]
        counts = np.array([len(s) // WIDTH if s else 0 for s in strings], np.int64)
        raw = np.frombuffer(b"".join(s for s in strings if s), np.uint8).reshape(-1, WIDTH)
        low = np.repeat(np.arange(start, start + len(numbers), dtype=np.uint32) & 0xFF, counts)
        fp = raw[:, 0].astype(np.uint32) << 24 | raw[:, 1].astype(np.uint32) << 16
        yield fp | raw[:, 2].astype(np.uint32) << 8 | low


def suspects(known: Known | list[Known], h: Known) -> NDArray[np.bool_]:
    """Which of ``h`` may be taken: their CRC-32 is in the sorted ``known`` (or in any
    of a list of sorted arrays) or repeats within ``h``. The needles are sorted first,
    which makes np.searchsorted ~10 times faster on a large array."""
    order = np.argsort(h)
    sorted_h = h[order]
    hit = np.zeros(len(h), np.bool_)
    for part in known if isinstance(known, list) else [known]:
        if len(part):
            at = np.searchsorted(part, sorted_h)
            at[at == len(part)] = 0
            hit |= part[at] == sorted_h
    repeat = sorted_h[1:] == sorted_h[:-1]
    hit[1:] |= repeat
    hit[:-1] |= repeat
    out = np.empty(len(h), np.bool_)
    out[order] = hit
    return out


def merged(known: Known, h: Known) -> Known:
    """``known`` with ``h`` added, sorted (two sorted runs: the stable sort merges)."""
    both: Known = np.sort(np.concatenate([known, np.sort(h)]), kind="stable")
    return both


class KnownSet:
    """The project's CRC-32s and those of the codes staged since: a large sorted array
    and a small one that takes each chunk's and is merged into the large one only once
    it holds half as many (each CRC-32 is copied a few times in all, instead of the
    whole array once per chunk: ~6 s of merging at 10M codes on busy cores)."""

    def __init__(self, known: Known) -> None:
        self._big = known
        self._small: Known = np.empty(0, np.uint32)

    def __len__(self) -> int:
        return len(self._big) + len(self._small)

    def suspects(self, h: Known) -> NDArray[np.bool_]:
        return suspects([self._big, self._small], h)

    def clear(self) -> None:
        """Free the arrays (a generation's entries are written after)."""
        self._big = self._small = np.empty(0, np.uint32)

    def add(self, h: Known) -> None:
        self._small = merged(self._small, h)
        if 2 * len(self._small) >= len(self._big):
            self._big, self._small = merged(self._big, self._small), np.empty(0, np.uint32)


def entries(h: Known, number: int, offsets: int | NDArray[np.int64]) -> tuple[bytes, list[int]]:
    """The index entries (codeindex's layout) of codes with CRC-32s ``h`` at the upload
    ``number``'s ``offsets`` (or offsets from ``offsets`` on), grouped by bucket (in
    the given order within one): (the entries, how many per bucket). What
    UploadIndex.add computes per code, in numpy (~0.05 us a code instead of ~0.3)."""
    n = len(h)
    if isinstance(offsets, int):
        offsets = np.arange(offsets, offsets + n, dtype=np.int64)
    out = np.empty((n, WIDTH), np.uint8)
    out[:, 0] = h >> 24
    out[:, 1] = h >> 16
    out[:, 2] = h >> 8
    out[:, 3:6] = np.frombuffer(number.to_bytes(3), np.uint8)
    out[:, 6:] = offsets.astype(">u4").view(np.uint8).reshape(n, 4)
    bucket = (h & (BUCKETS - 1)).astype(np.uint16)
    order = np.argsort(bucket, kind="stable")
    counts: list[int] = np.bincount(bucket, minlength=BUCKETS).tolist()
    return out[order].tobytes(), counts


class SkipTracker:
    """A ``duplicates=skip`` upload's side of the same idea (store/codes.py): once the
    upload is expected to bring (``expect``, else ``GROWTH`` times what it has brought)
    ``min_codes`` codes and at least 1/``ratio`` as many as the project holds, the
    project's CRC-32s are read once; from then on only the codes whose CRC-32 the
    project (or this upload) has are looked up, exactly (an upload must never skip a
    code that is new). Before that, or if the read was disturbed, every code is looked
    up (codeindex.present).

    From the read on, the upload works as a generation does: each chunk's staging
    (``push``) runs while the next chunk is parsed, and the index entries of the codes
    staged are kept in memory (CRC-32 and offset, 8 B a code) and written once at the
    end (``write_entries``), each bucket at its exact size, instead of an APPEND per
    bucket per chunk. A suspect is present when codeindex.present finds it (the pool,
    the issued records, the entries written before the read) or when it equals one of
    this upload's codes kept in memory with its CRC-32 (read back from the staging
    list by its offset: ``_own``)."""

    def __init__(self, min_codes: int, ratio: int) -> None:
        self._min, self._ratio = min_codes, ratio
        self._seen = 0
        self._expected = 0
        self._tried = False
        self.known: KnownSet | None = None
        # This upload's codes staged since the read: per chunk, their CRC-32s sorted
        # and the offsets in the same order.
        self._own: list[tuple[Known, NDArray[np.uint32]]] = []
        self._pushing: asyncio.Task[None] | None = None

    def expect(self, codes: int) -> None:
        """How many codes the whole upload is expected to bring (its Content-Length
        over the bytes per code parsed so far): a large upload reads the project's
        CRC-32s before its first lookup instead of after ``ratio``-th of the project."""
        self._expected = max(self._expected, codes)

    def _estimate(self) -> int:
        """The upload's size as far as it can be told: the announced one, else
        ``GROWTH`` times what it has brought so far. Without a size, reading is worth
        it once the per-code lookups done would have paid for it (ski rental): they
        cost ~2.5-3.5 us a code (more as the project grows: longer bucket strings),
        the read 0.05-0.15 us a code held, so reading when ``GROWTH`` x seen reaches
        1/``ratio`` of the project costs a small upload into a large project at most
        about what its lookups cost, and saves a large one most of them."""
        return max(self._expected, GROWTH * self._seen)

    async def present(
        self,
        scripts: Any,
        project: str,
        pool_id: str,
        staging: str,
        number: int,
        codes: list[bytes],
    ) -> tuple[set[bytes], Known | None]:
        """Those of ``codes`` (distinct) present already (codeindex.present's answer),
        and the CRC-32s of all of ``codes`` when the known ones are in use."""
        self._seen += len(codes)
        if self.known is None and not self._tried and self._estimate() >= self._min:
            client = scripts.client
            if await held(client, project) <= self._ratio * self._estimate():
                self._tried = True
                known = await read(client, project)
                self.known = None if known is None else KnownSet(known)
        if self.known is None:
            return await codeindex.present(scripts, project, pool_id, staging, number, codes), None
        h = hashes(codes, len(codes))
        at = self.known.suspects(h).nonzero()[0].tolist()
        if not at:
            return set(), h
        asked = [codes[i] for i in at]
        found = await codeindex.present(scripts, project, pool_id, staging, number, asked)
        found |= await self._mine(scripts.client, staging, asked, h[at])
        return found, h

    async def _mine(self, client: Redis, staging: str, codes: list[bytes], h: Known) -> set[bytes]:
        """Those of ``codes`` (CRC-32s ``h``) equal to a code this upload staged since
        the read: the staged codes of the same CRC-32 are read back (LINDEX)."""
        wanted: list[tuple[bytes, int]] = []
        for part, offsets in self._own:
            lo = np.searchsorted(part, h, "left")
            hi = np.searchsorted(part, h, "right")
            for i in np.flatnonzero(hi > lo).tolist():
                wanted += [(codes[i], int(o)) for o in offsets[lo[i] : hi[i]]]
        if not wanted:
            return set()
        await self.settle()  # every staged code is in the list
        async with client.pipeline(transaction=False) as pipe:
            for _, offset in wanted:
                pipe.lindex(staging, offset)
            staged: list[bytes | None] = await pipe.execute()
        return {code for (code, _), got in zip(wanted, staged, strict=True) if got == code}

    def staged(self, h: Known, offset: int) -> None:
        """The CRC-32s of the codes just staged from ``offset`` on: later chunks see
        them, and their entries are written by ``write_entries``."""
        if self.known is not None:
            self.known.add(h)
            order = np.argsort(h, kind="stable")
            self._own.append((h[order], (order + offset).astype(np.uint32)))

    def push(self, staged: Any) -> None:
        """Run ``staged`` (the staging of a chunk's codes: a coroutine) while the next
        chunk is parsed; the caller ``settle``s the one before first (list order)."""
        self._pushing = asyncio.ensure_future(staged)

    async def settle(self) -> None:
        """Wait for the staging running, if any."""
        pushing, self._pushing = self._pushing, None
        if pushing is not None:
            await pushing

    async def cancel(self) -> None:
        """Stop the staging running, if any (the upload failed)."""
        pushing, self._pushing = self._pushing, None
        if pushing is not None:
            pushing.cancel()
            await asyncio.gather(pushing, return_exceptions=True)

    async def write_entries(self, index: UploadIndex) -> None:
        """The index entries of the codes kept in memory, ``ENTRY_GROUP`` buckets at a
        time, each bucket written once at its exact size (UploadIndex.finish)."""
        if not self._own:
            return
        self.known = None  # not needed any more: free it before the entries are made
        h = np.concatenate([part for part, _ in self._own])
        offsets = np.concatenate([o for _, o in self._own])
        self._own.clear()
        await write_entries(index, h, offsets)


async def held(client: Redis, project: str) -> int:
    """How many codes the project holds, issued records included: what a read of its
    CRC-32s costs in proportion to (a generation or a skip upload weighs it)."""
    stored = int(await client.get(keys.project_stored(project)) or 0)
    return stored + int(await client.hlen(keys.issued(project)))


async def write_entries(
    index: UploadIndex, h: Known, offsets: NDArray[np.int64] | None = None
) -> None:
    """The index entries of codes with CRC-32s ``h`` at ``offsets`` of the upload
    (None: at 0, 1, 2, ... in ``h``'s order), ``ENTRY_GROUP`` buckets at a time, each
    bucket written once at its exact size (UploadIndex.finish)."""
    bucket = h & MASK
    for low in range(0, BUCKETS, ENTRY_GROUP):
        at = np.flatnonzero((bucket >= low) & (bucket < low + ENTRY_GROUP))
        if offsets is None:
            index.add_grouped(*entries(h[at], index.number, at))
        else:
            # Within a bucket the entries go in offset order, as an upload adds them.
            at = at[np.argsort(offsets[at], kind="stable")]
            index.add_grouped(*entries(h[at], index.number, offsets[at].astype(np.int64)))
        await index.finish(range(low, min(low + ENTRY_GROUP, BUCKETS)))
