"""duplicates=skip uploads and generation: lookups grouped by bucket (index_lookup.lua,
codeindex.present), then the new codes staged in their order (docs/index.md)."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from codepool import keys
from codepool.codeparse import parser_for
from codepool.settings import load_settings
from codepool.store import codeindex, knowncodes
from codepool.store import codes as code_store
from codepool.store.base import Backend, text
from codepool.store.codeindex import UploadIndex
from codepool.store.codes import CodeStore
from codepool.store.issuing import IssueRequest, issue_batch
from tests.scripthelpers import POOL, P, create_pool, fill


@pytest.fixture(autouse=True, params=["lookup", "known"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Skip uploads run both ways: every code looked up, and only the codes whose
    CRC-32 the project has after reading them once (knowncodes.SkipTracker)."""
    if request.param == "known":
        monkeypatch.setattr(knowncodes, "MIN_CODES", 0)
        monkeypatch.setattr(knowncodes, "RATIO", 10**9)
    return str(request.param)


@pytest.fixture
def backend(redis: Redis) -> Backend:
    return Backend(redis, load_settings({}))


def one_bucket(n: int, prefix: str = "K") -> list[str]:
    """n distinct codes that all fall in one index bucket (the bucket of prefix0)."""
    target = zlib.crc32(f"{prefix}0".encode()) & codeindex.MASK
    out: list[str] = []
    i = 0
    while len(out) < n:
        code = f"{prefix}{i}"
        if zlib.crc32(code.encode()) & codeindex.MASK == target:
            out.append(code)
        i += 1
    return out


async def body(pieces: list[str]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece.encode()


async def pool2(b: Backend) -> None:
    await b.scripts.run(
        "create_pool",
        [keys.pool_names(P), keys.pools(P), keys.pool(P, "pool2")],
        ["pool2", "Two", 1.0, "", "", "{}", ""],
    )


async def test_many_codes_of_one_bucket_are_looked_up_in_one_call(backend: Backend) -> None:
    """40 codes in one bucket, 20 of them in the pool (5 handed out), plus codes of
    other buckets: exactly the 20 are present, whatever their status."""
    await create_pool(backend)
    same = one_bucket(40)
    await fill(backend, same[:20])
    await issue_batch(backend, P, POOL, [IssueRequest(count=5)])
    others = [f"O{i}" for i in range(30)]
    index = await UploadIndex.new(backend.scripts, P, POOL)
    staging = keys.pool_staging(P, POOL, "s")
    asked = [c.encode() for c in [*reversed(same), *others]]
    found = await codeindex.present(backend.scripts, P, POOL, staging, index.number, asked)
    assert found == {c.encode() for c in same[:20]}
    # Another pool's scope: none of them is there; the project's: all 20.
    await pool2(backend)
    other = await UploadIndex.new(backend.scripts, P, "pool2")
    assert not await codeindex.present(backend.scripts, P, "pool2", staging, other.number, asked)
    assert await codeindex.present(backend.scripts, P, "", staging, other.number, asked) == {
        c.encode() for c in same[:20]
    }


async def test_a_skip_upload_keeps_its_order_across_chunks(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of 3 codes: a code staged by an earlier chunk, one twice in a chunk and
    one in the pool are skipped; the rest land in the pool in the uploaded order, and
    the index answers for them after the commit."""
    monkeypatch.setattr(code_store, "SKIP_CHUNK", 3)
    monkeypatch.setattr(code_store, "PARSE_BYTES", 1)
    await create_pool(backend)
    k = one_bucket(8)
    await fill(backend, [k[0], "A"])
    lines = [k[3], k[1], k[3], "B", k[0], k[2], k[1], "A", k[4], "B", k[5], k[2], k[6]]
    result = await CodeStore(backend).upload(
        P, POOL, body([f"{c}\n" for c in lines]), parser_for("text/plain"), "skip"
    )
    assert (result.added, result.skipped, result.total) == (7, 6, 9)
    pool = await backend.client.lrange(keys.pool_available(P, POOL), 0, -1)
    assert [text(c) for c in pool] == [k[0], "A", k[3], k[1], "B", k[2], k[4], k[5], k[6]]
    index = await UploadIndex.new(backend.scripts, P, POOL)
    staging = keys.pool_staging(P, POOL, "later")
    asked = [c.encode() for c in [*k, "A", "B", "C"]]
    found = await codeindex.present(backend.scripts, P, POOL, staging, index.number, asked)
    assert found == {c.encode() for c in [*k[:7], "A", "B"]}


async def test_generation_skips_codes_of_every_pool_of_the_project(backend: Backend) -> None:
    """Scope "project": a code available in or handed out from another pool is
    skipped; scope "pool" stages them (they are not in this pool)."""
    await create_pool(backend)
    k = one_bucket(4)
    await fill(backend, [k[0], k[1]])
    await issue_batch(backend, P, POOL, [IssueRequest(count=1)])  # k[0] handed out
    await pool2(backend)
    store = CodeStore(backend)
    chunk = [c.encode() for c in [k[0], k[2], k[1], k[2], k[3]]]
    index = await UploadIndex.new(backend.scripts, P, "pool2")
    staging = keys.pool_staging(P, "pool2", "g")
    assert await store.stage(P, "pool2", staging, index, chunk, "skip", 0, "project") == (2, 3)
    assert await backend.client.lrange(staging, 0, -1) == [k[2].encode(), k[3].encode()]
    # A second chunk: the first one's codes count too.
    assert await store.stage(P, "pool2", staging, index, chunk, "skip", 2, "project") == (0, 5)
    index2 = await UploadIndex.new(backend.scripts, P, "pool2")
    staging2 = keys.pool_staging(P, "pool2", "u")
    assert await store.stage(P, "pool2", staging2, index2, chunk, "skip", 0) == (4, 1)
    assert await backend.client.lrange(staging2, 0, -1) == [
        c.encode() for c in [k[0], k[2], k[1], k[3]]
    ]
