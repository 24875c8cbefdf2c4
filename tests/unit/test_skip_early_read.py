"""A large duplicates=skip upload reads the project's CRC-32s early (knowncodes.SkipTracker):
before its first lookup when its size is announced (Content-Length), else once it has
brought 1/(GROWTH x RATIO) of the project, not 1/RATIO; exact all the same."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from codepool import errors, keys
from codepool.codeparse import parser_for
from codepool.settings import load_settings
from codepool.store import codeindex, knowncodes
from codepool.store import codes as code_store
from codepool.store.base import Backend, text
from codepool.store.codeindex import UploadIndex
from codepool.store.codes import CodeStore
from codepool.store.issuing import IssueRequest, issue_batch
from tests.apphelpers import app_client, make_pool, make_tenant
from tests.scripthelpers import POOL, P, create_pool, fill, looked_up

HELD = [f"H{i:03d}" for i in range(200)]


@pytest.fixture
def backend(redis: Redis) -> Backend:
    return Backend(redis, load_settings({}))


async def _ask(b: Backend, tracker: knowncodes.SkipTracker, codes: list[str]) -> set[str]:
    staging = keys.pool_staging(P, POOL, "s")
    found, _ = await tracker.present(b.scripts, P, POOL, staging, 999, [c.encode() for c in codes])
    return {text(c) for c in found}


async def test_an_announced_size_reads_before_the_first_lookup(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The project holds 200 codes: 5 codes of an upload announced at 30 (>= 200/8)
    ask Redis only about the suspects (the held ones); unannounced (4 x 5 < 200/8),
    all 5."""
    await create_pool(backend)
    await fill(backend, HELD)
    calls = looked_up(monkeypatch)
    codes = ["N1", HELD[3], "N2", HELD[50], "N3"]
    told = knowncodes.SkipTracker(10, 8)
    told.expect(30)
    assert await _ask(backend, told, codes) == {HELD[3], HELD[50]}
    assert told.known is not None and calls == [sorted([HELD[3], HELD[50]])]
    calls.clear()
    untold = knowncodes.SkipTracker(10, 8)
    assert await _ask(backend, untold, codes) == {HELD[3], HELD[50]}
    assert untold.known is None and calls == [sorted(codes)]


async def test_an_unannounced_upload_reads_sooner(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """7 codes into a project of 200: 4 x 7 is >= 200/8 (7 is not), so the CRC-32s are read;
    later chunks ask only about suspects, this upload's earlier codes among them."""
    await create_pool(backend)
    await fill(backend, HELD)
    calls = looked_up(monkeypatch)
    tracker = knowncodes.SkipTracker(10, 8)
    first = [*(f"N{i}" for i in range(6)), HELD[0]]
    assert await _ask(backend, tracker, first) == {HELD[0]}
    assert tracker.known is not None and calls == [[HELD[0]]]
    # The new ones staged (as CodeStore.stage does), their entries kept in memory.
    new = [c.encode() for c in first[:6]]
    await backend.client.rpush(keys.pool_staging(P, POOL, "s"), *new)
    tracker.staged(knowncodes.hashes(new, len(new)), 0)
    calls.clear()
    # N0 is found by reading it back from the staging list, not in Redis's index.
    assert await _ask(backend, tracker, ["N0", "M1", HELD[99]]) == {"N0", HELD[99]}
    assert calls == [sorted(["N0", HELD[99]])]


async def body(text_: str, piece: int = 7) -> AsyncIterator[bytes]:
    for i in range(0, len(text_), piece):
        yield text_[i : i + piece].encode()


async def test_a_sized_skip_upload_is_exact(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With its size given, the upload reads the CRC-32s at its first chunk and still
    skips exactly the pool's codes (available or handed out) and its own repeats, and
    adds a code held by another pool of the project."""
    monkeypatch.setattr(code_store, "SKIP_CHUNK", 4)
    monkeypatch.setattr(code_store, "PARSE_BYTES", 8)
    monkeypatch.setattr(knowncodes, "MIN_CODES", 10)
    await create_pool(backend)
    await fill(backend, HELD)
    await issue_batch(backend, P, POOL, [IssueRequest(count=2)])  # H000, H001 out: 198 left
    reads: list[int] = []
    read = knowncodes.read

    async def counted(client: Redis, project: str) -> Any:
        reads.append(1)
        return await read(client, project)

    monkeypatch.setattr(knowncodes, "read", counted)
    calls = looked_up(monkeypatch)
    lines = ["A1", HELD[0], "A2", "A1", HELD[5], "A3", "A2", HELD[1], "A4"] + [
        f"B{i}" for i in range(40)
    ]
    payload = "".join(f"{c}\n" for c in lines)
    result = await CodeStore(backend).upload(
        P, POOL, body(payload), parser_for("text/plain"), "skip", size=len(payload)
    )
    assert (result.added, result.skipped) == (44, 5)
    assert reads == [1]
    # Every lookup asked about suspects only, never a whole chunk of new codes.
    assert all(set(call) <= {*HELD, "A1", "A2"} for call in calls)
    pool = await backend.client.lrange(keys.pool_available(P, POOL), 0, -1)
    added = ["A1", "A2", "A3", "A4", *(f"B{i}" for i in range(40))]
    assert [text(c) for c in pool][198:] == added
    # The entries kept in memory were written at the end: the index answers for them.
    later = await UploadIndex.new(backend.scripts, P, POOL)
    staging = keys.pool_staging(P, POOL, "later")
    asked = [c.encode() for c in [*added, "Z1"]]
    found = await codeindex.present(backend.scripts, P, POOL, staging, later.number, asked)
    assert found == {c.encode() for c in added}


async def test_a_failed_sized_skip_upload_leaves_nothing(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad line at the end: nothing is added, no staging list or entry is left."""
    monkeypatch.setattr(code_store, "SKIP_CHUNK", 4)
    monkeypatch.setattr(code_store, "PARSE_BYTES", 8)
    monkeypatch.setattr(knowncodes, "MIN_CODES", 10)
    await create_pool(backend)
    await fill(backend, HELD)
    payload = "".join(f"B{i}\n" for i in range(40)) + "bad code with spaces\n"
    with pytest.raises(errors.InvalidCodes):
        await CodeStore(backend).upload(
            P, POOL, body(payload), parser_for("text/plain"), "skip", size=len(payload)
        )
    assert await backend.client.llen(keys.pool_available(P, POOL)) == 200
    assert not [k async for k in backend.client.scan_iter(match="*staging*")]
    later = await UploadIndex.new(backend.scripts, P, POOL)
    staging = keys.pool_staging(P, POOL, "later")
    asked = [f"B{i}".encode() for i in range(40)]
    assert not await codeindex.present(backend.scripts, P, POOL, staging, later.number, asked)


async def test_the_api_passes_the_content_length(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST .../codes?duplicates=skip with a Content-Length: the tracker is told the
    body's size in codes (estimated from the bytes per code parsed so far)."""
    monkeypatch.setattr(code_store, "PARSE_BYTES", 64)
    told: list[int] = []
    expect = knowncodes.SkipTracker.expect

    def spy(self: knowncodes.SkipTracker, codes: int) -> None:
        told.append(codes)
        expect(self, codes)

    monkeypatch.setattr(knowncodes.SkipTracker, "expect", spy)
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["C0"], name="target")
        r = await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/codes?duplicates=skip",
            content="".join(f"C{i:04d}\n" for i in range(100)),
            headers={**t.admin, "Content-Type": "text/plain"},
        )
        assert r.status_code == 200, r.text
        assert (r.json()["added"], r.json()["skipped"]) == (100, 0)
        assert told and told[0] == 100


async def test_an_own_crc_collision_is_not_skipped(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """X and Y (equal CRC-32s) in different chunks of one sized upload: Y is a suspect
    (X's CRC-32 is kept in memory) but is not X, so it is added; X again is skipped."""
    x, y = "C5C760DFCE", "C86012532E"  # tests/unit/test_known_codes.py's pair
    monkeypatch.setattr(code_store, "SKIP_CHUNK", 4)
    monkeypatch.setattr(code_store, "PARSE_BYTES", 8)
    monkeypatch.setattr(knowncodes, "MIN_CODES", 10)
    await create_pool(backend)
    await fill(backend, HELD)
    calls = looked_up(monkeypatch)
    lines = [x, "A1", "A2", "A3", "A4", y, "A5", "A6", "A7", x, *(f"B{i}" for i in range(30))]
    payload = "".join(f"{c}\n" for c in lines)
    result = await CodeStore(backend).upload(
        P, POOL, body(payload, 11), parser_for("text/plain"), "skip", size=len(payload)
    )
    assert (result.added, result.skipped) == (39, 1)
    pool = await backend.client.lrange(keys.pool_available(P, POOL), 0, -1)
    assert [text(c) for c in pool][200:210] == [
        x,
        "A1",
        "A2",
        "A3",
        "A4",
        y,
        "A5",
        "A6",
        "A7",
        "B0",
    ]
    assert any(y in call for call in calls) and any(x in call for call in calls)
