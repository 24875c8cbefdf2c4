"""Codes of a pool: upload/refill (streamed, all or nothing), listing, export.
(Generation, which stages and commits through this store: store/generate.py.)"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Collection
from typing import Any, Literal

from codepool import errors, keys
from codepool.codeparse import CodeParser
from codepool.models import CodeEntry, Page, Status, UploadResult
from codepool.scripts import Arg
from codepool.store import knowncodes
from codepool.store.base import Backend, new_id, now, text, window
from codepool.store.codeindex import UploadIndex
from codepool.store.records import walk
from codepool.store.stats import stats_keys

Duplicates = Literal["allow", "skip"]
# What a skipped duplicate is a duplicate of: the pool's codes (an upload) or every
# code of the project (a generation: generated codes are new to the whole project).
Scope = Literal["pool", "project"]

# Bytes gathered from the network before one parse + stage step: large enough that
# per-step overhead vanishes, small enough that an upload's memory stays flat.
PARSE_BYTES = 1 << 20
# Codes per RPUSH while staging.
STAGE_CODES = 10_000
# Codes moved per commit_upload call when the pool is not empty (each call ~ms).
COMMIT_SLICE = 20_000
# Codes read per LRANGE / read_codes call.
READ_SLICE = 5_000
# Staging keys of an upload that died mid-way expire by themselves.
STAGING_TTL = 6 * 3600
# Codes a duplicates=skip upload gathers before one lookup: many codes per index
# bucket (~15 at 2^15 buckets), so each bucket string is read once for all of them;
# ~30 MB of Python memory (store/generate.py draws as many per step).
SKIP_CHUNK = 500_000
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
        idempotency: str | None = None,
        content_type: str = "",
        size: int | None = None,
    ) -> UploadResult:
        """Stage every code of the body, then commit them all; on any error, none.

        ``idempotency`` names the record of an Idempotency-Key (api/handouts.py's
        digest): the body's fingerprint is computed while it streams, and a retry with
        the same body answers the first answer and stores nothing. ``size``: the body's
        announced length in bytes (Content-Length), if any: a large skip upload then
        reads the project's CRC-32s before its first lookup."""
        client = self._b.client
        if not await client.exists(keys.pool(project_id, pool_id)):
            raise errors.PoolNotFound(id=pool_id)
        # What makes two uploads "the same": format, duplicates mode and every byte.
        hasher = hashlib.sha256(f"{content_type}\x1f{duplicates}\x1f".encode())
        record = keys.upload_idempotency(project_id, idempotency or "-")
        if idempotency is not None and await client.exists(record):
            # A retry: only the fingerprint is needed, not another copy of the codes.
            async for chunk in body:
                hasher.update(chunk)
            return await self.replay(record, hasher.hexdigest())
        index = await UploadIndex.new(self._b.scripts, project_id, pool_id)
        # The index number rides in the upload id, so a commit a crash interrupted
        # (resume_commits) still records where the codes landed.
        upload_id = f"{new_id()}.{index.number}"
        staging = keys.pool_staging(project_id, pool_id, upload_id)
        lock = keys.pool_upload_lock(project_id, pool_id)
        locked = False
        keep = False  # staging list and index entries: stored, or a commit in doubt
        try:
            if duplicates == "skip":
                # Skip mode compares against the pool's whole content, so two of them
                # on one pool at once could both add the same code.
                locked = bool(await client.set(lock, upload_id, nx=True, ex=STAGING_TTL))
                if not locked:
                    raise errors.UploadInProgress(pool_id=pool_id)
            staged, skipped = await self._stage_body(
                project_id, pool_id, staging, index, body, parser, duplicates, hasher, size
            )
            if staged + skipped == 0:
                raise errors.NoCodes()
            # Every entry is in the index before any of the codes is available.
            await index.finish()
            fingerprint = hasher.hexdigest() if idempotency is not None else ""
            try:
                answer = await self.commit(
                    project_id, pool_id, upload_id, (record, fingerprint, staged, skipped)
                )
            except errors.CodepoolError:
                raise  # refused (quota, pool gone, key reused): the script dropped staging
            except Exception:
                # In doubt (Redis went away mid-commit): the commit mark lets the next
                # start finish it (resume_commits), with its staging list and entries.
                keep = True
                raise
            if isinstance(answer, UploadResult):
                return answer  # the Idempotency-Key's first answer; nothing was added
            keep = True
            total, available = answer
            return UploadResult(added=staged, skipped=skipped, total=total, available=available)
        finally:
            if not keep:
                # Best effort: if Redis is gone the staging list expires on its own and
                # the index entries point at an upload that never moved (answer nothing).
                with contextlib.suppress(Exception):
                    await client.unlink(staging)
                with contextlib.suppress(Exception):
                    await index.drop()
            if locked:
                with contextlib.suppress(Exception):
                    await client.delete(lock)

    async def _stage_body(
        self,
        project_id: str,
        pool_id: str,
        staging: str,
        index: UploadIndex,
        body: AsyncIterable[bytes],
        parser: CodeParser,
        duplicates: Duplicates,
        hasher: Any,
        size: int | None = None,
    ) -> tuple[int, int]:
        """Parse the body as it streams and stage (and index) its codes: (staged,
        skipped). Once the parser has seen an error nothing more is staged."""
        tracker = knowncodes.SkipTracker(knowncodes.MIN_CODES, knowncodes.RATIO)
        try:
            staged = skipped = parsed = 0
            buffer = bytearray()
            # A skip upload looks codes up SKIP_CHUNK at a time.
            gather = SKIP_CHUNK if duplicates == "skip" else 0
            pending: list[bytes] = []
            async for chunk in body:
                hasher.update(chunk)
                buffer += chunk
                if len(buffer) >= PARSE_BYTES:
                    pending += parser.feed(bytes(buffer))
                    parsed += len(buffer)
                    buffer.clear()
                    if size and pending:
                        # Codes the whole body holds at the bytes per code seen so far.
                        tracker.expect(size * (staged + skipped + len(pending)) // parsed)
                    if parser.has_errors:
                        pending.clear()
                    elif len(pending) >= gather:
                        a, s = await self.stage(
                            project_id,
                            pool_id,
                            staging,
                            index,
                            pending,
                            duplicates,
                            staged,
                            tracker=tracker,
                        )
                        staged, skipped = staged + a, skipped + s
                        pending = []
            pending += parser.feed(bytes(buffer)) + parser.close()  # close() raises InvalidCodes
            a, s = await self.stage(
                project_id, pool_id, staging, index, pending, duplicates, staged, tracker=tracker
            )
            await tracker.settle()
            await tracker.write_entries(index)
            return staged + a, skipped + s
        finally:
            await tracker.cancel()  # nothing may run after the caller drops staging

    async def stage(
        self,
        project_id: str,
        pool_id: str,
        staging: str,
        index: UploadIndex,
        codes: list[bytes],
        duplicates: Duplicates,
        offset: int,
        scope: Scope = "pool",
        tracker: knowncodes.SkipTracker | None = None,
    ) -> tuple[int, int]:
        """Append codes to the upload's staging list and index them: (staged, skipped).
        ``offset``: how many codes the staging list holds already. With ``skip``, a code
        the pool (``scope="project"``: any pool of the project) already holds, or that
        this upload staged already, is skipped."""
        if not codes:
            return 0, 0
        if duplicates == "skip":
            # Two phases, safe because skip uploads and generations hold the pool's
            # upload lock: which codes are present (read-only, bucket by bucket), then
            # the new ones staged as an allow upload stages them, in their order.
            unique = list(dict.fromkeys(codes))  # within the chunk: first one kept
            await index.write()  # earlier chunks' entries count as present
            # A large upload asks Redis only about the codes whose CRC-32 the project
            # has (knowncodes.SkipTracker), once it has read them.
            tracker = tracker or knowncodes.SkipTracker(1 << 62, 0)  # never reads
            found, h = await tracker.present(
                self._b.scripts,
                project_id,
                pool_id if scope == "pool" else "",
                staging,
                index.number,
                unique,
            )
            new = [c for c in unique if c not in found] if found else unique
            skipped = len(codes) - len(new)
            if not new:
                return 0, skipped
            if h is None:
                await self.stage(project_id, pool_id, staging, index, new, "allow", offset)
                # The entries are written while the next chunk is parsed; its lookup
                # waits for them (index.write above).
                await index.flush()
            else:
                # As a generation stages: the codes pushed while the next chunk is
                # parsed (in order: one push at a time), their entries kept in memory
                # and written at the end (SkipTracker.write_entries).
                h = h if not found else knowncodes.hashes(new, len(new))
                await tracker.settle()
                tracker.push(self.push_fixed(staging, new))
                tracker.staged(h, offset)
            return len(new), skipped
        # Index entries of an upload that has not moved yet answer nothing until commit.
        await self.push(staging, codes)
        index.add(codes, offset)
        if index.full:
            await index.flush()
        return len(codes), 0

    async def push(self, staging: str, codes: list[bytes]) -> None:
        """Append codes to a staging list. Staging is private to its upload until the
        commit, so plain pipelined RPUSHes (the fastest way into Redis) change no visible
        state."""
        async with self._b.client.pipeline(transaction=False) as pipe:
            for i in range(0, len(codes), STAGE_CODES):
                pipe.rpush(staging, *codes[i : i + STAGE_CODES])
            pipe.expire(staging, STAGING_TTL)
            await pipe.execute()

    async def push_fixed(self, staging: str, codes: list[bytes]) -> None:
        """``push`` for codes of one width (a generation's): ``STAGE_CODES`` codes per
        lua/stage_push.lua call, passed as one string (no per-code argument to pack)."""
        for i in range(0, len(codes), STAGE_CODES):
            part = codes[i : i + STAGE_CODES]
            widths = set(map(len, part))
            if len(widths) != 1 or 0 in widths:
                await self.push(staging, part)
                continue
            args: list[Arg] = [b"".join(part), widths.pop(), STAGING_TTL]
            await self._b.scripts.run("stage_push", [staging], args)

    async def check_quota(self, project_id: str, count: int) -> None:
        """Refuse early what commit_upload.lua would refuse after all the drawing."""
        quota = self._b.settings.max_codes_per_project
        stored = int(await self._b.client.get(keys.project_stored(project_id)) or 0)
        if quota > 0 and stored + count > quota:
            raise errors.QuotaExceeded(limit=quota, stored=stored, requested=count)

    async def replay(self, record: str, fingerprint: str) -> UploadResult:
        first = text(await self._b.client.get(record))
        if not first:  # expired between the two reads: the key is free again
            raise errors.IdempotencyKeyReused("the Idempotency-Key expired meanwhile; retry")
        return _first_answer(_status(first.split("|"), fingerprint))

    async def commit(
        self,
        project_id: str,
        pool_id: str,
        upload_id: str,
        idempotent: tuple[str, str, int, int] | None = None,
    ) -> tuple[int, int] | UploadResult:
        """Move a staged upload into the pool; safe to call again after a crash.

        ``idempotent`` = (record key, body fingerprint, added, skipped) of an upload with
        an Idempotency-Key: an UploadResult is then the key's first answer (nothing
        added)."""
        staging = keys.pool_staging(project_id, pool_id, upload_id)
        record, fingerprint, added, skipped = idempotent or (
            keys.upload_idempotency(project_id, "-"),
            "",
            0,
            0,
        )
        while True:
            at = now()
            result = await self._b.scripts.run(
                "commit_upload",
                [
                    keys.pool(project_id, pool_id),
                    keys.pool_available(project_id, pool_id),
                    staging,
                    keys.project_stored(project_id),
                    record,
                    *stats_keys(project_id, pool_id, at),
                    keys.code_index_uploads(project_id),
                ],
                [
                    COMMIT_SLICE,
                    upload_id,
                    self._b.settings.max_codes_per_project,
                    fingerprint,
                    added,
                    skipped,
                    self._b.settings.idempotency_ttl,
                    at,
                    index_number(upload_id),
                ],
            )
            if result[0] in (2, -4, -14):
                return _first_answer(result)
            if result[0] == -5:
                raise errors.PoolNotFound(id=pool_id)
            if result[0] == -13:
                _, limit, stored, requested = map(int, result)
                raise errors.QuotaExceeded(limit=limit, stored=stored, requested=requested)
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
        data: list[CodeEntry] = []
        rest = skip
        if "available" in statuses:
            # The available codes are one Redis list, listed first: a page of them is one
            # LRANGE at its offset instead of a walk from the head in slices (a page deep
            # in a 10M-code pool: from seconds to milliseconds).
            available = counters["available"]
            if rest < available:
                avail = keys.pool_available(project_id, pool_id)
                codes = await self._b.client.lrange(avail, rest, rest + count - 1)
                data = [CodeEntry(code=text(c), status="available") for c in codes]
            rest = max(0, rest - available)
        if len(data) < count and statuses != {"available"}:
            handed_out = self.entries(project_id, pool_id, statuses - {"available"})
            data += await window(handed_out, rest, count - len(data))
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


def index_number(upload_id: str) -> str:
    """The code index number an upload id carries ("<id>.<number>"), "" if none."""
    return upload_id.rpartition(".")[2] if "." in upload_id else ""


def _status(parts: list[str], fingerprint: str) -> list[int]:
    """A stored record read outside Lua, as commit_upload.lua would answer for it."""
    if parts[0] != fingerprint:
        return [-4]
    if parts[1] == "pending":
        return [-14]
    return [2, *map(int, parts[1:5])]


def _first_answer(result: list[int]) -> UploadResult:
    if result[0] == -4:
        raise errors.IdempotencyKeyReused()
    if result[0] == -14:
        raise errors.UploadInProgress(
            "an upload with this Idempotency-Key is still being committed; retry shortly"
        )
    _, added, skipped, total, available = map(int, result)
    return UploadResult(added=added, skipped=skipped, total=total, available=available)
