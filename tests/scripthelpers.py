"""Helpers for tests that run the Lua scripts directly: a pool made and filled the way
the store makes and fills one (create_pool.lua, then commit_upload.lua)."""

from __future__ import annotations

from codepool import keys
from codepool.store.base import Backend

P, POOL = "proj", "pool1"


async def create_pool(
    b: Backend,
    *,
    name: str = "Pool",
    thresholds: str = "",
    expires_at: str = "",
    notify: str = "{}",
) -> None:
    created = await b.scripts.run(
        "create_pool",
        [keys.pool_names(P), keys.pools(P), keys.pool(P, POOL)],
        [POOL, name, 1.0, expires_at, thresholds, notify],
    )
    assert created == 1


async def fill(b: Backend, codes: list[str], upload_id: str = "u") -> list[int]:
    """Stage ``codes`` and commit them into the pool (3 per commit call, so the
    commit's slicing runs too); returns the last commit's answer."""
    staging = keys.pool_staging(P, POOL, upload_id)
    await b.client.rpush(staging, *codes)
    commit_keys = [
        keys.pool(P, POOL),
        keys.pool_available(P, POOL),
        staging,
        keys.project_stored(P),
    ]
    result: list[int] = await b.scripts.run("commit_upload", commit_keys, [3, upload_id, 0])
    while result[0] > 0:
        result = await b.scripts.run("commit_upload", commit_keys, [3, upload_id, 0])
    return result
