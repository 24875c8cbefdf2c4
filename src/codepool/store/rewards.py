"""Rewards: what users buy or claim, each drawing its codes from one pool."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from codepool import errors, keys
from codepool.models import Page, Reward, RewardIn, RewardPatch
from codepool.store.base import Backend, new_id, now, text

# A purchase needs the reward's pool before it can join that pool's batch. The pool id
# is cached this long per process; issue.lua checks it, so a stale entry costs a retry,
# never a wrong hand-out.
ROUTE_TTL = 5.0
MOVED = -8


class RewardStore:
    def __init__(self, backend: Backend) -> None:
        self._b = backend
        self._routes: dict[tuple[str, str], tuple[str, float]] = {}

    async def create(self, project_id: str, data: RewardIn) -> Reward:
        reward_id = data.id or new_id()
        result = await self._b.scripts.run(
            "create_reward",
            [
                keys.rewards(project_id),
                keys.reward(project_id, reward_id),
                keys.pool(project_id, data.pool_id),
                keys.pool_rewards(project_id, data.pool_id),
            ],
            [
                reward_id,
                data.pool_id,
                data.name,
                int(data.hide_code),
                "" if data.per_user_limit is None else data.per_user_limit,
                msgspec.json.encode(data.metadata),
                now(),
            ],
        )
        if result == -5:
            raise errors.PoolNotFound(id=data.pool_id)
        if result == -2:
            raise errors.RewardExists(id=reward_id)
        return await self.get(project_id, reward_id)

    async def get(self, project_id: str, reward_id: str) -> Reward:
        rewards = await self._load(project_id, [reward_id])
        if not rewards:
            raise errors.RewardNotFound(id=reward_id)
        return rewards[0]

    async def _load(self, project_id: str, reward_ids: list[str]) -> list[Reward]:
        async with self._b.client.pipeline(transaction=False) as pipe:
            for reward_id in reward_ids:
                pipe.hgetall(keys.reward(project_id, reward_id))
            raws: list[dict[bytes, bytes]] = await pipe.execute()
        found = [{text(k): text(v) for k, v in raw.items()} for raw in raws if raw]
        async with self._b.client.pipeline(transaction=False) as pipe:
            for f in found:
                pipe.llen(keys.pool_available(project_id, f["pool_id"]))
            available = await pipe.execute()
        return [
            Reward(
                id=f["id"],
                name=f["name"],
                pool_id=f["pool_id"],
                hide_code=f["hide_code"] == "1",
                per_user_limit=int(f["per_user_limit"]) if f["per_user_limit"] else None,
                metadata=msgspec.json.decode(f["metadata"]),
                created_at=float(f["created_at"]),
                available=int(avail),
            )
            for f, avail in zip(found, available, strict=True)
        ]

    async def list_page(
        self, project_id: str, skip: int, count: int, *, visible_to_users: bool = False
    ) -> Page[Reward]:
        ids = sorted(text(m) for m in await self._b.client.smembers(keys.rewards(project_id)))
        if not visible_to_users:
            page = await self._load(project_id, ids[skip : skip + count])
            return Page(data=page, matched=len(ids), matched_limited=False, skip=skip, limit=count)
        # Users see what they could buy now: stock left and pool not expired.
        rewards = await self._load(project_id, ids)
        pool_ids = sorted({r.pool_id for r in rewards})
        async with self._b.client.pipeline(transaction=False) as pipe:
            for pool_id in pool_ids:
                pipe.hget(keys.pool(project_id, pool_id), "expires_at")
            expiry = dict(zip(pool_ids, await pipe.execute(), strict=True))
        t = time.time()
        visible = [
            r
            for r in rewards
            if r.available > 0
            and not (text(expiry[r.pool_id]) and float(text(expiry[r.pool_id])) <= t)
        ]
        return Page(
            data=visible[skip : skip + count],
            matched=len(visible),
            matched_limited=False,
            skip=skip,
            limit=count,
        )

    async def patch(self, project_id: str, reward_id: str, data: RewardPatch) -> Reward:
        fields: list[Any] = []
        if not isinstance(data.name, msgspec.UnsetType):
            fields += ["name", data.name]
        if not isinstance(data.hide_code, msgspec.UnsetType):
            fields += ["hide_code", int(data.hide_code)]
        if not isinstance(data.per_user_limit, msgspec.UnsetType):
            fields += ["per_user_limit", "" if data.per_user_limit is None else data.per_user_limit]
        if not isinstance(data.metadata, msgspec.UnsetType):
            fields += ["metadata", msgspec.json.encode(data.metadata)]
        while True:
            # The scripts take the pool id read here and refuse (MOVED) if it changed since.
            current = await self.pool_of(project_id, reward_id, fresh=True)
            new_pool = current if isinstance(data.pool_id, msgspec.UnsetType) else data.pool_id
            result = await self._b.scripts.run(
                "update_reward",
                [
                    keys.reward(project_id, reward_id),
                    keys.pool_rewards(project_id, current),
                    keys.pool(project_id, new_pool),
                    keys.pool_rewards(project_id, new_pool),
                ],
                [reward_id, current, new_pool, *fields],
            )
            if result != MOVED:
                break
        if result == -5:
            raise errors.PoolNotFound(id=new_pool)
        if result == -6:
            raise errors.RewardNotFound(id=reward_id)
        self._routes.pop((project_id, reward_id), None)
        return await self.get(project_id, reward_id)

    async def delete(self, project_id: str, reward_id: str) -> None:
        while True:
            current = await self.pool_of(project_id, reward_id, fresh=True)
            result = await self._b.scripts.run(
                "delete_reward",
                [
                    keys.rewards(project_id),
                    keys.reward(project_id, reward_id),
                    keys.pool_rewards(project_id, current),
                    keys.reward_users(project_id, reward_id),
                ],
                [reward_id, current],
            )
            if result != MOVED:
                break
        self._routes.pop((project_id, reward_id), None)
        if result == -6:
            raise errors.RewardNotFound(id=reward_id)

    async def pool_of(self, project_id: str, reward_id: str, *, fresh: bool = False) -> str:
        """The pool a reward draws from (cached briefly; see ROUTE_TTL)."""
        key = (project_id, reward_id)
        cached = self._routes.get(key)
        t = time.monotonic()
        if cached is not None and not fresh and cached[1] > t:
            return cached[0]
        pool_id = await self._b.client.hget(keys.reward(project_id, reward_id), "pool_id")
        if pool_id is None:
            self._routes.pop(key, None)
            raise errors.RewardNotFound(id=reward_id)
        route = text(pool_id)
        if len(self._routes) > 100_000:  # bound the cache; rebuilding it is cheap
            self._routes.clear()
        self._routes[key] = (route, t + ROUTE_TTL)
        return route
