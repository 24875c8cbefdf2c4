"""Pools: create, read (with exact counters), list, change, delete."""

from __future__ import annotations

import msgspec

from codepool import errors, keys
from codepool.models import Notify, Page, Pool, PoolIn, PoolPatch, PoolSummary
from codepool.store import codeindex
from codepool.store.base import Backend, new_id, now, opt_float, text
from codepool.store.stats import KEEP_DAYS, day_of, minute_of, stats_keys

_notify_decoder = msgspec.json.Decoder(Notify)
# Deleting a pool drops its issued records this many codes per script call.
PURGE_STEP = 2000


def _thresholds(values: list[int]) -> str:
    # Highest first, no repeats: the order alerts fire in as stock falls.
    return ",".join(str(t) for t in sorted(set(values), reverse=True))


def _soon(values: list[int]) -> str:
    # Empty-soon alerts, shortest first, no repeats: the order they fire in as the
    # forecast nears (lua/includes/common.lua, check_soon).
    return ",".join(str(t) for t in sorted(set(values)))


class PoolStore:
    def __init__(self, backend: Backend) -> None:
        self._b = backend

    async def create(self, project_id: str, data: PoolIn) -> Pool:
        pool_id = new_id()
        result = await self._b.scripts.run(
            "create_pool",
            [keys.pool_names(project_id), keys.pools(project_id), keys.pool(project_id, pool_id)],
            [
                pool_id,
                data.name,
                now(),
                "" if data.expires_at is None else repr(data.expires_at),
                _thresholds(data.low_stock_thresholds),
                msgspec.json.encode(data.notify),
                _soon(data.empty_soon_alerts),
            ],
        )
        if result == -1:
            raise errors.PoolNameTaken(name=data.name)
        return await self.get(project_id, pool_id)

    async def get(self, project_id: str, pool_id: str) -> Pool:
        # One MULTI so the counters and the list length are read at the same instant:
        # available + assigned + redeemed == total holds in every answer.
        async with self._b.client.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.pool(project_id, pool_id))
            pipe.llen(keys.pool_available(project_id, pool_id))
            pipe.smembers(keys.pool_rewards(project_id, pool_id))
            raw, available, used_by = await pipe.execute()
        if not raw:
            raise errors.PoolNotFound(id=pool_id)
        f = {text(k): v for k, v in raw.items()}
        thresholds = text(f.get("thresholds"))
        soon = text(f.get("soon"))
        return Pool(
            id=text(f["id"]),
            name=text(f["name"]),
            project_id=project_id,
            total=int(f["total"]),
            available=int(available),
            assigned=int(f["assigned"]),
            redeemed=int(f["redeemed"]),
            used_by=sorted(text(r) for r in used_by),
            low_stock_thresholds=[int(t) for t in thresholds.split(",")] if thresholds else [],
            empty_soon_alerts=[int(t) for t in soon.split(",")] if soon else [],
            notify=_notify_decoder.decode(f["notify"]),
            expires_at=opt_float(f.get("expires_at")),
            created_at=float(f["created_at"]),
        )

    async def ensure(self, project_id: str, pool_id: str) -> None:
        if not await self._b.client.exists(keys.pool(project_id, pool_id)):
            raise errors.PoolNotFound(id=pool_id)

    async def list_page(self, project_id: str, skip: int, count: int) -> Page[PoolSummary]:
        ids = sorted(text(m) for m in await self._b.client.smembers(keys.pools(project_id)))
        page = ids[skip : skip + count]
        async with self._b.client.pipeline(transaction=True) as pipe:
            for pool_id in page:
                pipe.hmget(keys.pool(project_id, pool_id), "name", "total")
                pipe.llen(keys.pool_available(project_id, pool_id))
            rows = await pipe.execute()
        data = [
            PoolSummary(id=pool_id, name=text(meta[0]), total=int(meta[1]), available=int(avail))
            for pool_id, meta, avail in zip(page, rows[::2], rows[1::2], strict=True)
            if meta[0] is not None
        ]
        return Page(data=data, matched=len(ids), matched_limited=False, skip=skip, limit=count)

    async def patch(self, project_id: str, pool_id: str, data: PoolPatch) -> Pool:
        thresholds = ""
        if not isinstance(data.low_stock_thresholds, msgspec.UnsetType):
            thresholds = _thresholds(data.low_stock_thresholds) or "-"
        soon = ""
        if not isinstance(data.empty_soon_alerts, msgspec.UnsetType):
            soon = _soon(data.empty_soon_alerts) or "-"
        at = now()
        expires = ""
        if not isinstance(data.expires_at, msgspec.UnsetType):
            expires = "-" if data.expires_at is None else repr(data.expires_at)
        result = await self._b.scripts.run(
            "update_pool",
            [
                keys.pool_names(project_id),
                keys.pool(project_id, pool_id),
                keys.pool_available(project_id, pool_id),
                *stats_keys(project_id, pool_id, at),
            ],
            [
                pool_id,
                "" if isinstance(data.name, msgspec.UnsetType) else data.name,
                thresholds,
                b""
                if isinstance(data.notify, msgspec.UnsetType)
                else msgspec.json.encode(data.notify),
                expires,
                soon,
                at,
            ],
        )
        if result == -5:
            raise errors.PoolNotFound(id=pool_id)
        if result == -1:
            raise errors.PoolNameTaken(name=data.name)
        return await self.get(project_id, pool_id)

    async def delete(self, project_id: str, pool_id: str) -> None:
        purge = keys.pool_purge(project_id, pool_id)
        result = await self._b.scripts.run(
            "delete_pool",
            [
                keys.pool_names(project_id),
                keys.pools(project_id),
                keys.pool(project_id, pool_id),
                keys.pool_available(project_id, pool_id),
                keys.pool_log(project_id, pool_id),
                keys.pool_rewards(project_id, pool_id),
                purge,
                keys.project_stored(project_id),
            ],
            [pool_id],
        )
        if result == -5:
            raise errors.PoolNotFound(id=pool_id)
        if result == -1:
            used_by = await self._b.client.smembers(keys.pool_rewards(project_id, pool_id))
            raise errors.PoolInUse(used_by=sorted(text(r) for r in used_by))
        # Its per-minute counters: the pool is gone, so nothing counts into them again.
        today = day_of(minute_of(now())[0])
        await self._b.client.unlink(
            *(keys.pool_stats(project_id, pool_id, d) for d in range(today - KEEP_DAYS, today + 1))
        )
        await self.purge_issued(project_id, pool_id)
        # Its code index entries already answer nothing (no pool); their memory goes too.
        await codeindex.purge_pool(self._b.client, self._b.scripts, project_id, pool_id)

    async def purge_issued(self, project_id: str, pool_id: str) -> None:
        """Drop a deleted pool's issued records, a small step at a time."""
        purge = keys.pool_purge(project_id, pool_id)
        remaining = 1
        while remaining:
            remaining = await self._b.scripts.run(
                "purge_issued", [purge, keys.issued(project_id)], [pool_id, PURGE_STEP]
            )
