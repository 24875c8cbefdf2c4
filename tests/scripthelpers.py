"""Helpers for tests that run the Lua scripts directly: a pool made and filled the way
the store makes and fills one (create_pool.lua, then commit_upload.lua)."""

from __future__ import annotations

from typing import Any

import pytest

from codepool import keys
from codepool.scripts import Scripts
from codepool.store import codeindex
from codepool.store.base import Backend
from codepool.store.codeindex import UploadIndex
from codepool.store.stats import stats_keys

P, POOL = "proj", "pool1"


async def create_pool(
    b: Backend,
    *,
    name: str = "Pool",
    thresholds: str = "",
    expires_at: str = "",
    notify: str = "{}",
    soon: str = "",
) -> None:
    created = await b.scripts.run(
        "create_pool",
        [keys.pool_names(P), keys.pools(P), keys.pool(P, POOL)],
        [POOL, name, 1.0, expires_at, thresholds, notify, soon],
    )
    assert created == 1


async def fill(
    b: Backend, codes: list[str], upload_id: str = "u", *, at: float = 1.0, per_call: int = 3
) -> list[int]:
    """Stage ``codes``, index them (codepool.store.codeindex) and commit them into the
    pool (``per_call`` per commit call, so the commit's slicing runs too) at time ``at``;
    returns the last commit's answer."""
    index = await UploadIndex.new(b.scripts, P, POOL)
    staging = keys.pool_staging(P, POOL, upload_id)
    await b.client.rpush(staging, *codes)
    index.add([c.encode() for c in codes], 0)
    await index.finish()
    commit_keys = [
        keys.pool(P, POOL),
        keys.pool_available(P, POOL),
        staging,
        keys.project_stored(P),
        keys.upload_idempotency(P, "-"),
        *stats_keys(P, POOL, at),
        keys.code_index_uploads(P),
    ]
    args: list[str | int | float] = [per_call, upload_id, 0, "", 0, 0, 60, at, index.number]
    result: list[int] = await b.scripts.run("commit_upload", commit_keys, args)
    while result[0] > 0:
        result = await b.scripts.run("commit_upload", commit_keys, args)
    return result


def looked_up(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The codes each exact lookup (codeindex.present) was asked about."""
    calls: list[list[str]] = []
    present = codeindex.present

    async def spy(scripts: Scripts, project: str, pool: str, *rest: Any) -> set[bytes]:
        calls.append(sorted(c.decode() for c in rest[-1]))
        return await present(scripts, project, pool, *rest)

    monkeypatch.setattr(codeindex, "present", spy)
    return calls
