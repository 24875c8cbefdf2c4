"""Codes of a pool: upload/refill (streamed, all or nothing), listing, export."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Collection
from typing import Literal

from codepool import errors, keys
from codepool.codeparse import CodeParser
from codepool.models import CodeEntry, Page, Status, UploadResult
from codepool.store.base import Backend, new_id, now, text, window
from codepool.store.records import walk
from codepool.store.stats import stats_keys

Duplicates = Literal["allow", "skip"]

# Bytes gathered from the network before one parse + stage step: large enough that
# per-step overhead vanishes, small enough that an upload's memory stays flat.
PARSE_BYTES = 1 << 20
# Codes per RPUSH / stage_skip call while staging.
STAGE_CODES = 10_000
# Codes moved per commit_upload call when the pool is not empty (each call ~ms).
COMMIT_SLICE = 20_000
# Codes read per seed_seen / read_codes call.
READ_SLICE = 5_000
# Staging keys of an upload that died mid-way expire by themselves.
STAGING_TTL = 6 * 3600
ALL_STATUSES: frozenset[Status] = frozenset({"available", "assigned", "redeemed"})


class CodeStore:
    def __init__(self, backend: Backend) -> None:
        self._b = backend

    # -- upload ---------------------------------------------------------------------

    async def upload(
        self,
        project_id: str,
        pool_id: str,
        body: AsyncIterable[bytes],
        parser: CodeParser,
        duplicates: Duplicates,
    ) -> UploadResult:
        """Stage every code of the body, then commit them all; on any error, none."""
        client = self._b.client
        if not await client.exists(keys.pool(project_id, pool_id)):
            raise errors.PoolNotFound(id=pool_id)
        upload_id = new_id()
        staging = keys.pool_staging(project_id, pool_id, upload_id)
        seen = keys.pool_staging_seen(project_id, pool_id, upload_id)
        lock = keys.pool_upload_lock(project_id, pool_id)
        locked = False
        committed = False
        try:
            if duplicates == "skip":
                # Skip mode compares against the pool's whole content, so two of them
                # on one pool at once could both add the same code.
                locked = bool(await client.set(lock, upload_id, nx=True, ex=STAGING_TTL))
                if not locked:
                    raise errors.UploadInProgress(pool_id=pool_id)
                await self._seed_seen(project_id, pool_id, seen)
            staged = skipped = 0
            buffer = bytearray()
            async for chunk in body:
                buffer += chunk
                if len(buffer) >= PARSE_BYTES:
                    codes = parser.feed(bytes(buffer))
                    buffer.clear()
                    if not parser.has_errors:
                        a, s = await self._stage(
                            project_id, pool_id, staging, seen, codes, duplicates
                        )
                        staged, skipped = staged + a, skipped + s
            codes = parser.feed(bytes(buffer)) + parser.close()  # close() raises InvalidCodes
            a, s = await self._stage(project_id, pool_id, staging, seen, codes, duplicates)
            staged, skipped = staged + a, skipped + s
            committed = True
            total, available = await self.commit(project_id, pool_id, upload_id)
            return UploadResult(added=staged, skipped=skipped, total=total, available=available)
        finally:
            # Best effort: if Redis is gone these keys expire on their own.
            with contextlib.suppress(Exception):
                await client.unlink(*([seen] if committed else [seen, staging]))
            if locked:
                with contextlib.suppress(Exception):
                    await client.delete(lock)

    async def _seed_seen(self, project_id: str, pool_id: str, seen: str) -> None:
        avail = keys.pool_available(project_id, pool_id)
        start = 0
        while True:
            read = await self._b.scripts.run(
                "seed_seen", [avail, seen], [start, READ_SLICE, STAGING_TTL]
            )
            start += read
            if read < READ_SLICE:
                return

    async def _stage(
        self,
        project_id: str,
        pool_id: str,
        staging: str,
        seen: str,
        codes: list[bytes],
        duplicates: Duplicates,
    ) -> tuple[int, int]:
        """Append codes to the upload's staging list: (staged, skipped)."""
        if not codes:
            return 0, 0
        if duplicates == "skip":
            staged = skipped = 0
            for i in range(0, len(codes), STAGE_CODES):
                a, s = await self._b.scripts.run(
                    "stage_skip",
                    [staging, seen, keys.issued(project_id)],
                    [pool_id, STAGING_TTL, *codes[i : i + STAGE_CODES]],
                )
                staged, skipped = staged + a, skipped + s
            return staged, skipped
        # Staging is private to this upload until commit, so plain pipelined RPUSHes
        # (the fastest way into Redis) change no visible state.
        async with self._b.client.pipeline(transaction=False) as pipe:
            for i in range(0, len(codes), STAGE_CODES):
                pipe.rpush(staging, *codes[i : i + STAGE_CODES])
            pipe.expire(staging, STAGING_TTL)
            await pipe.execute()
        return len(codes), 0

    async def commit(self, project_id: str, pool_id: str, upload_id: str) -> tuple[int, int]:
        """Move a staged upload into the pool; safe to call again after a crash."""
        staging = keys.pool_staging(project_id, pool_id, upload_id)
        while True:
            at = now()
            result = await self._b.scripts.run(
                "commit_upload",
                [
                    keys.pool(project_id, pool_id),
                    keys.pool_available(project_id, pool_id),
                    staging,
                    *stats_keys(project_id, pool_id, at),
                ],
                [COMMIT_SLICE, upload_id, at],
            )
            if result[0] == -5:
                raise errors.PoolNotFound(id=pool_id)
            remaining, total, available = result
            if remaining == 0:
                return int(total), int(available)

    async def resume_commits(self, project_id: str) -> int:
        """Finish commits a crash interrupted (marked ``committing:<upload id>``)."""
        resumed = 0
        for pool_id in [text(m) for m in await self._b.client.smembers(keys.pools(project_id))]:
            for field in map(text, await self._b.client.hkeys(keys.pool(project_id, pool_id))):
                if field.startswith("committing:"):
                    await self.commit(project_id, pool_id, field.split(":", 1)[1])
                    resumed += 1
        return resumed

    # -- listing and export ---------------------------------------------------------

    async def list_page(
        self, project_id: str, pool_id: str, status: Status | None, skip: int, count: int
    ) -> Page[CodeEntry]:
        statuses = ALL_STATUSES if status is None else frozenset({status})
        counters = await self._counters(project_id, pool_id)
        matched = sum(counters[s] for s in statuses)
        data = await window(self.entries(project_id, pool_id, statuses), skip, count)
        return Page(data=data, matched=matched, matched_limited=False, skip=skip, limit=count)

    async def _counters(self, project_id: str, pool_id: str) -> dict[Status, int]:
        async with self._b.client.pipeline(transaction=True) as pipe:
            pipe.hmget(keys.pool(project_id, pool_id), "assigned", "redeemed")
            pipe.llen(keys.pool_available(project_id, pool_id))
            (assigned, redeemed), available = await pipe.execute()
        if assigned is None:
            raise errors.PoolNotFound(id=pool_id)
        return {"available": int(available), "assigned": int(assigned), "redeemed": int(redeemed)}

    async def entries(
        self, project_id: str, pool_id: str, statuses: Collection[Status] = ALL_STATUSES
    ) -> AsyncIterator[list[CodeEntry]]:
        """Every instance of the pool with one of ``statuses``, in batches: available
        codes first (in hand-out order), then handed-out ones (in hand-out order)."""
        if "available" in statuses:
            avail = keys.pool_available(project_id, pool_id)
            start = 0
            while True:
                codes = await self._b.client.lrange(avail, start, start + READ_SLICE - 1)
                if codes:
                    yield [CodeEntry(code=text(c), status="available") for c in codes]
                if len(codes) < READ_SLICE:
                    break
                start += READ_SLICE
        if statuses == {"available"}:
            return
        log, issued = keys.pool_log(project_id, pool_id), keys.issued(project_id)
        async for batch in walk(self._b, log, issued, lambda i: i.pool_id == pool_id, READ_SLICE):
            entries = [i.entry(code) for code, i in batch if i.status in statuses]
            if entries:
                yield entries
