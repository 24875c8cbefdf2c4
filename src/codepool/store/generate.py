"""POST .../codes/generate: codes drawn by codegen, new to every pool of the project
(the code index says which are not), staged and committed as an upload is (store/codes.py)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from itertools import compress
from typing import Any

import numpy as np

from codepool import errors, keys
from codepool.codegen import Generator, guess_probability, space_float
from codepool.models import Generated, UploadResult
from codepool.store import codeindex, knowncodes
from codepool.store.base import Backend, new_id
from codepool.store.codeindex import UploadIndex
from codepool.store.codes import STAGING_TTL, CodeStore

# Codes drawn per generation step: many codes per index bucket (~15 at 2^15 buckets),
# so each bucket string is read once for all of them; ~30 MB of Python memory.
GENERATE_CHUNK = 500_000
# A generation gives up (pattern_too_small) after this many draws in a row found only
# codes the project has: past 20 draws per code of the space or of the request, the
# space is full in all likelihood (a missing code is found within them but for e^-20).
GIVE_UP_DRAWS = 20
# A generation of at least this many codes reads the CRC-32 of every code of the project
# once (knowncodes) instead of asking Redis per drawn code, when the project holds at
# most KNOWN_RATIO times as many codes (reading costs ~0.2 us per code held, the
# per-code lookup ~2.5 us per code drawn).
KNOWN_MIN = knowncodes.MIN_CODES
KNOWN_RATIO = knowncodes.RATIO
# In a pattern space at least this large, a drawn code whose CRC-32 the project has is
# drawn again rather than looked up (_stage_known).
DROP_SPACE = 1 << 32
# Codes drawn per step of _stage_known: fewer merges of the known CRC-32s; ~60 MB of
# Python at a time.
KNOWN_CHUNK = 1_000_000


class CodeGenerator:
    def __init__(self, backend: Backend, codes: CodeStore) -> None:
        self._b = backend
        self._codes = codes

    async def generate(
        self,
        project_id: str,
        pool_id: str,
        generator: Generator,
        count: int,
        max_guess_probability: float,
        idempotency: tuple[str, str] | None = None,
    ) -> Generated:
        """Draw ``count`` codes new to the project into the pool; all or nothing.

        Drawn codes are looked up in the project's code index (any pool) and the new ones
        staged as an upload stages them; each one found (the project has it, or it was
        drawn twice) is drawn again until ``count`` are staged, then the upload's commit
        makes them available at once. ``idempotency`` = (record digest, request fingerprint) of an
        Idempotency-Key, as for uploads (the record's ``skipped`` slot keeps the live
        count the first answer's guess probability was computed from)."""
        client = self._b.client
        space = generator.pattern.space
        total, redeemed = await client.hmget(keys.pool(project_id, pool_id), "total", "redeemed")
        if total is None:
            raise errors.PoolNotFound(id=pool_id)
        digest, fingerprint = idempotency or ("-", "")
        record = keys.upload_idempotency(project_id, digest)
        if idempotency is not None and await client.exists(record):
            return _generated(await self._codes.replay(record, fingerprint), space)
        # Every live code of the pool counts: an upper bound of its live codes of this
        # pattern (codepool keeps no index by pattern), so the rule errs on the safe side.
        live = int(total) - int(redeemed or 0)
        if live + count > max_guess_probability * space:
            raise errors.PatternTooSmall(
                space=space_float(space),
                live=live,
                requested=count,
                max_guess_probability=max_guess_probability,
                at_most=max(0, math.floor(max_guess_probability * space) - live),
            )
        await self._codes.check_quota(project_id, count)
        index = await UploadIndex.new(self._b.scripts, project_id, pool_id)
        upload_id = f"{new_id()}.{index.number}"
        staging = keys.pool_staging(project_id, pool_id, upload_id)
        locks: list[str] = []
        stored = False
        try:
            for lock in (
                keys.generate_lock(project_id),
                keys.pool_upload_lock(project_id, pool_id),
            ):
                if not await client.set(lock, upload_id, nx=True, ex=STAGING_TTL):
                    raise errors.UploadInProgress(
                        "another generation in this project, or a duplicates=skip upload"
                        " on this pool, is running; retry when it is done",
                        pool_id=pool_id,
                    )
                locks.append(lock)
            known = await self._known(project_id, count)
            if known is None:
                staged = await self._stage_drawn(
                    project_id, pool_id, staging, index, generator, count
                )
            else:
                staged = await self._stage_known(
                    project_id, pool_id, staging, index, generator, count, known
                )
            # Every entry is in the index before any of the codes is available.
            await index.finish()
            answer = await self._codes.commit(
                project_id, pool_id, upload_id, (record, fingerprint, staged, live + staged)
            )
            if isinstance(answer, UploadResult):
                return _generated(answer, space)
            stored = True
            total_after, available = answer
            return _generated(
                UploadResult(
                    added=staged, skipped=live + staged, total=total_after, available=available
                ),
                space,
            )
        finally:
            if not stored:
                with contextlib.suppress(Exception):
                    await client.unlink(staging)
                with contextlib.suppress(Exception):
                    await index.drop()
            for lock in locks:
                with contextlib.suppress(Exception):
                    await client.delete(lock)

    async def _stage_drawn(
        self,
        project_id: str,
        pool_id: str,
        staging: str,
        index: UploadIndex,
        generator: Generator,
        count: int,
    ) -> int:
        """Draw and stage until ``count`` codes new to the project are staged, a chunk
        at a time: each chunk's lookups see the entries of the chunks before it, and
        while Redis looks one chunk up, Python draws and sorts the next (which never
        asks for more than what is missing if every chunk before it stages whole, so
        none overshoots)."""
        space = generator.pattern.space
        budget = max(1000, GIVE_UP_DRAWS * min(space, count))
        staged = idle = 0

        async def prepared(n: int) -> tuple[list[bytes], int, codeindex.Lookups]:
            codes = generator.draw(n)
            unique = list(dict.fromkeys(codes))
            return unique, len(codes), await codeindex.sort_by_bucket(unique)

        ahead: tuple[list[bytes], int, codeindex.Lookups] | None = None
        lookup: asyncio.Future[set[bytes]] | None = None
        try:
            while staged < count:
                if ahead is None:
                    ahead = await prepared(min(GENERATE_CHUNK, count - staged))
                unique, drawn, calls = ahead
                await index.write()  # the chunks before count as present
                lookup = asyncio.ensure_future(
                    codeindex.look_up(self._b.scripts, project_id, "", staging, index.number, calls)
                )
                rest = count - staged - len(unique)
                ahead = await prepared(min(GENERATE_CHUNK, rest)) if rest > 0 else None
                found = await lookup
                lookup = None
                new = [c for c in unique if c not in found] if found else unique
                if new:
                    await self._codes.stage(
                        project_id, pool_id, staging, index, new, "allow", staged
                    )
                idle = 0 if new else idle + drawn
                staged += len(new)
                if idle > budget:
                    raise _too_small(space, count, staged)
            return staged
        finally:
            # Nothing may run after the caller dropped the staging list.
            if lookup is not None:
                lookup.cancel()
                await asyncio.gather(lookup, return_exceptions=True)

    async def _known(self, project_id: str, count: int) -> knowncodes.KnownSet | None:
        """The CRC-32s of the project's codes (knowncodes.read) when reading them is
        cheaper than asking Redis per drawn code; None otherwise."""
        if count < KNOWN_MIN:
            return None
        client = self._b.client
        if await knowncodes.held(client, project_id) > KNOWN_RATIO * count:
            return None
        known = await knowncodes.read(client, project_id)
        return None if known is None else knowncodes.KnownSet(known)

    async def _stage_known(
        self,
        project_id: str,
        pool_id: str,
        staging: str,
        index: UploadIndex,
        generator: Generator,
        count: int,
        known: knowncodes.KnownSet,
    ) -> int:
        """``_stage_drawn`` against the CRC-32s read once. A drawn code whose CRC-32 is
        neither in ``known`` (the project's codes, then the ones staged here) nor
        repeated in its chunk is new. The others, the suspects, are few (the project's
        codes / 2^32 of the draws, 0.23 % at 10M): in a space of at least
        ``DROP_SPACE`` codes they are drawn again without asking Redis (leaving a code
        out is always safe, and leaves out at most that fraction of the space); in a
        smaller space, where the last free codes may be needed, each is looked up
        exactly (codeindex.present: the index's LINDEX + compare, the issued records).
        While Redis appends one chunk to the staging list, Python draws the next."""
        space = generator.pattern.space
        exact = space < DROP_SPACE
        budget = max(1000, GIVE_UP_DRAWS * min(space, count))
        staged = idle = 0
        pushing: asyncio.Task[None] | None = None
        # In a large space nothing reads this generation's entries before its commit:
        # their CRC-32s are kept in staging order (4 B a code) and written at the end.
        later: list[knowncodes.Known] = []
        try:
            while staged < count:
                drawn = generator.draw(min(KNOWN_CHUNK, count - staged))
                h = knowncodes.hashes(drawn, len(drawn))
                suspect = known.suspects(h)
                at = suspect.nonzero()[0].tolist()
                if at and exact:
                    if pushing is not None:
                        await pushing
                        pushing = None
                    await index.write()  # the chunks before count as present
                    await self._look_up(project_id, staging, index, drawn, at, suspect)
                keep = ~suspect
                new = list(compress(drawn, keep.tolist())) if at else drawn
                if new:
                    new_h = h[keep]
                    if pushing is not None:
                        await pushing  # in order: offsets are places in the list
                    pushing = asyncio.create_task(self._codes.push_fixed(staging, new))
                    if exact:
                        index.add_grouped(*knowncodes.entries(new_h, index.number, staged))
                        if index.full:
                            await index.flush()
                    else:
                        later.append(new_h)
                    known.add(new_h)
                idle = 0 if new else idle + len(drawn)
                staged += len(new)
                if idle > budget:
                    raise _too_small(space, count, staged)
            if pushing is not None:
                await pushing
                pushing = None
            known.clear()
            await _write_entries(index, later)
            return staged
        finally:
            # Nothing may run after the caller dropped the staging list.
            if pushing is not None:
                pushing.cancel()
                await asyncio.gather(pushing, return_exceptions=True)

    async def _look_up(
        self,
        project_id: str,
        staging: str,
        index: UploadIndex,
        drawn: list[bytes],
        at: list[int],
        suspect: np.ndarray[Any, np.dtype[np.bool_]],
    ) -> None:
        """Clear ``suspect`` at the suspects that are new after all: not in the project
        (codeindex.present), not staged before, not drawn before in the chunk."""
        found = await codeindex.present(
            self._b.scripts,
            project_id,
            "",
            staging,
            index.number,
            list(dict.fromkeys(drawn[i] for i in at)),
        )
        seen: set[bytes] = set()
        for i in at:
            code = drawn[i]
            suspect[i] = code in found or code in seen
            seen.add(code)


async def _write_entries(index: UploadIndex, parts: list[knowncodes.Known]) -> None:
    """The index entries of codes staged in this order (their CRC-32s: ``parts``)."""
    if not parts:
        return
    h = np.concatenate(parts)
    parts.clear()
    await knowncodes.write_entries(index, h)


def _too_small(space: int, count: int, staged: int) -> errors.CodepoolError:
    return errors.PatternTooSmall(
        "the pattern's space has no room left for new codes; nothing was stored",
        space=space_float(space),
        requested=count,
        found=staged,
    )


def _generated(result: UploadResult, space: int) -> Generated:
    """A generation's answer from its upload-shaped one (``skipped`` = live codes)."""
    return Generated(
        added=result.added,
        total=result.total,
        available=result.available,
        space=space_float(space),
        guess_probability=guess_probability(result.skipped, space),
    )
