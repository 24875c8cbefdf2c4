"""Large generations test drawn codes against the project's CRC-32s read once
(store/knowncodes.py, docs/generate.md "Speed"): exact all the same, with CRC-32
collisions, an issued code whose index entry left with another pool, and upload numbers
forgotten while the CRC-32s were read."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from redis.asyncio import Redis

from codepool import codegen, keys
from codepool.scripts import Scripts
from codepool.settings import load_settings
from codepool.store import codeindex, knowncodes
from codepool.store import generate as generate_store
from codepool.store.base import Backend
from codepool.store.codeindex import UploadIndex
from codepool.store.codes import STAGING_TTL, CodeStore
from tests.apphelpers import Client, Tenant, app_client, make_pool, make_tenant
from tests.scripthelpers import looked_up

# Two pairs of codes of the pattern below with equal CRC-32s (so the same index bucket
# and fingerprint): found by trying sha256-derived codes.
X, Y = "C5C760DFCE", "C86012532E"
P, Q = "C967AE5F96", "C1055857AE"
PATTERN = {"pattern": "C#########", "charset": "0123456789ABCDEF", "max_guess_probability": 1}


@pytest.fixture(autouse=True)
def known_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every generation and skip upload here, however small, takes the knowncodes path."""
    monkeypatch.setattr(generate_store, "KNOWN_MIN", 0)
    monkeypatch.setattr(generate_store, "KNOWN_RATIO", 10**9)
    monkeypatch.setattr(knowncodes, "MIN_CODES", 0)
    monkeypatch.setattr(knowncodes, "RATIO", 10**9)


def scripted_draws(monkeypatch: pytest.MonkeyPatch, *chunks: list[str]) -> list[int]:
    """Generator.draw answers ``chunks`` first (each padded with real draws, or cut, to
    the count asked), then real draws; returns the counts asked."""
    asked: list[int] = []
    script = [[c.encode() for c in chunk] for chunk in chunks]
    real = codegen.Generator.draw

    def draw(self: codegen.Generator, count: int) -> list[bytes]:
        asked.append(count)
        head = script.pop(0)[:count] if script else []
        return head + real(self, count - len(head))

    monkeypatch.setattr(codegen.Generator, "draw", draw)
    return asked


async def _generate(c: Client, t: Tenant, pool_id: str, count: int) -> Any:
    r = await c.post(
        f"/v1/projects/{t.id}/pools/{pool_id}/codes/generate",
        json={"count": count, **PATTERN},
        headers=t.admin,
    )
    assert r.status_code == 200, r.text
    return r.json()


async def _available(redis: Redis, t: Tenant, pool_id: str) -> list[str]:
    codes: list[bytes] = await redis.lrange(keys.pool_available(t.id, pool_id), 0, -1)  # type: ignore[assignment]
    return [c.decode() for c in codes]


async def _post(c: Client, t: Tenant, path: str, body: dict[str, Any]) -> Any:
    r = await c.post(f"/v1/projects/{t.id}/{path}", json=body, headers=t.admin)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_pairs_collide() -> None:
    assert zlib.crc32(X.encode()) == zlib.crc32(Y.encode())
    assert zlib.crc32(P.encode()) == zlib.crc32(Q.encode())


async def test_in_a_large_space_suspects_are_drawn_again(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16^9 = 2^36 codes: X is the project's, Y shares its CRC-32, P is drawn twice and
    Q shares its CRC-32: all suspects, none asks Redis, all are drawn again."""
    async with app_client(redis) as c:
        t = await make_tenant(c)
        await make_pool(c, t, [X], name="uploaded")
        pool = await make_pool(c, t, name="generated")
        monkeypatch.setattr(generate_store, "KNOWN_CHUNK", 6)
        asked = scripted_draws(monkeypatch, [X, Y, P, P, Q, "C000000001"])
        calls = looked_up(monkeypatch)
        out = await _generate(c, t, pool["id"], 6)
        assert (out["added"], out["available"]) == (6, 6)
        got = await _available(redis, t, pool["id"])
        assert len(set(got)) == 6 and not {X, Y, P, Q} & set(got)
        assert got[0] == "C000000001"
        assert asked == [6, 5] and calls == []
        # Their index entries, written at the end, answer for them.
        for code in got:
            r = await c.post(
                f"/v1/projects/{t.id}/codes/validate", json={"code": code}, headers=t.pos
            )
            v = r.json()
            assert (v["status"], v["reason"], v["pool_id"]) == (
                "available",
                "not_issued",
                pool["id"],
            )


async def test_collisions_are_looked_up_exactly(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a small space (every free code may be needed): X is the project's; Y shares
    its CRC-32 (a suspect, new after the exact lookup); P twice in one chunk (one kept),
    Q sharing P's CRC-32 in the same chunk (both new); P again in the next chunk (staged
    already: found). Only suspects reach Redis."""
    monkeypatch.setattr(generate_store, "DROP_SPACE", 1 << 64)
    async with app_client(redis) as c:
        t = await make_tenant(c)
        await make_pool(c, t, [X], name="uploaded")
        pool = await make_pool(c, t, name="generated")
        monkeypatch.setattr(generate_store, "KNOWN_CHUNK", 6)
        scripted_draws(monkeypatch, [X, Y, P, P, Q, "C000000001"], [P, "C000000002"])
        calls = looked_up(monkeypatch)
        out = await _generate(c, t, pool["id"], 6)
        assert (out["added"], out["available"]) == (6, 6)
        got = await _available(redis, t, pool["id"])
        assert sorted(got) == sorted([Y, P, Q, "C000000001", "C000000002", got[-1]])
        assert len(set(got)) == 6 and X not in got
        assert calls[:2] == [sorted([X, Y, P, Q]), [P]]


async def test_an_issued_code_without_an_entry_is_never_generated(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/generate.md: X handed out from pool B, its dead entry re-pointed by the
    release of Y (same CRC-32) into pool A, then A deleted: X has an issued record and
    no entry of its CRC-32 left. The issued records read with the buckets find it."""
    async with app_client(redis) as c:
        t = await make_tenant(c)
        b = await make_pool(c, t, [X], name="b")
        a = await make_pool(c, t, [Y], name="a")
        for pool in (b, a):
            await _post(c, t, f"pools/{pool['id']}/issue", {"count": 1})
        await _post(c, t, "codes/release", {"code": Y})
        r = await c.delete(f"/v1/projects/{t.id}/pools/{a['id']}", headers=t.admin)
        assert r.status_code == 204, r.text
        h = zlib.crc32(X.encode())
        bucket = await redis.get(keys.code_index(t.id, h & codeindex.MASK))
        assert all(fp != h >> 8 for fp, _, _ in codeindex.entries(bucket))
        assert h in (await knowncodes.read(redis, t.id) or [])

        pool = await make_pool(c, t, name="generated")
        scripted_draws(monkeypatch, [X, X, X])
        out = await _generate(c, t, pool["id"], 3)
        assert out["added"] == 3
        assert X not in await _available(redis, t, pool["id"])


async def test_the_read_holds_every_code_of_the_project(redis: Redis) -> None:
    """Available, handed out, redeemed, in two pools: each code's CRC-32 once per
    instance or record."""
    async with app_client(redis) as c:
        t = await make_tenant(c)
        one = await make_pool(c, t, ["A1", "A2", "A3"], name="one")
        await make_pool(c, t, ["A3", "B1"], name="two")
        code = (await _post(c, t, f"pools/{one['id']}/issue", {"count": 1}))["codes"][0]["code"]
        r = await c.post(f"/v1/projects/{t.id}/codes/redeem", json={"code": code}, headers=t.pos)
        assert r.status_code == 200, r.text
        known = await knowncodes.read(redis, t.id)
        assert known is not None
        # A1's entry stays (dead) and its record is read too.
        want = ["A1", "A1", "A2", "A3", "A3", "B1"]
        assert known.tolist() == sorted(zlib.crc32(w.encode()) for w in want)


async def test_a_read_that_saw_an_upload_number_go_is_done_again(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry only leaves a bucket with its upload number (lua/index_drop.lua): a
    number gone during the read (a failed upload, a deleted pool) means it is done
    again; if it happens every time, the generation asks Redis per code instead."""
    async with app_client(redis) as c:
        t = await make_tenant(c)
        up = await make_pool(c, t, [X], name="uploaded")
        scripts = Scripts(redis)
        doomed = [(await UploadIndex.new(scripts, t.id, up["id"])).number for _ in range(3)]
        reads = 0
        buckets = knowncodes._buckets

        async def disturbed(client: Redis, project: str) -> AsyncIterator[Any]:
            nonlocal reads
            reads += 1
            if doomed:  # what lua/index_drop.lua does last: forget a number
                await redis.hdel(keys.code_index_uploads(t.id), doomed.pop())
            async for part in buckets(client, project):
                yield part

        monkeypatch.setattr(knowncodes, "_buckets", disturbed)
        assert await knowncodes.read(redis, t.id) is None
        assert reads == knowncodes.ATTEMPTS

        # Disturbed once: the second read is whole.
        monkeypatch.setattr(knowncodes, "ATTEMPTS", 3)
        reads = 0
        known = await knowncodes.read(redis, t.id)
        assert reads == 2 and known is not None
        assert known.tolist() == [zlib.crc32(X.encode())]

        # Every read disturbed: the generation falls back and stays exact.
        doomed += [(await UploadIndex.new(scripts, t.id, up["id"])).number for _ in range(3)]
        pool = await make_pool(c, t, name="generated")
        scripted_draws(monkeypatch, [X, Y])
        reads = 0
        out = await _generate(c, t, pool["id"], 2)
        assert reads == 3 and out["added"] == 2
        got = await _available(redis, t, pool["id"])
        assert X not in got and Y in got


async def test_a_skip_upload_skips_exactly_the_codes_of_its_pool(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool has X available and P handed out; another pool has Q. Uploading Y (X's
    CRC-32), X, Q (P's CRC-32, not in this pool), P with duplicates=skip: only X and P
    are skipped, and only the suspects (X, Y, P, Q) were looked up in Redis."""
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [P, X], name="target")
        await _post(c, t, f"pools/{pool['id']}/issue", {"count": 1})  # P
        await make_pool(c, t, [Q], name="other")
        calls = looked_up(monkeypatch)
        r = await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/codes?duplicates=skip",
            content="\n".join([Y, X, Q, P, "C000000009"]),
            headers={**t.admin, "Content-Type": "text/plain"},
        )
        assert r.status_code == 200, r.text
        assert (r.json()["added"], r.json()["skipped"]) == (3, 2)
        assert await _available(redis, t, pool["id"]) == [X, Y, Q, "C000000009"]
        assert calls == [sorted([X, Y, P, Q])]


def test_entries_in_numpy_equal_the_per_code_ones() -> None:
    """knowncodes.entries (generation) lays entries out as UploadIndex.add does."""
    codes = [f"E{i:06d}".encode() for i in range(5000)]
    index = UploadIndex(None, "p", 77)  # type: ignore[arg-type]
    index.add(codes, 1234)
    grouped = UploadIndex(None, "p", 77)  # type: ignore[arg-type]
    h = knowncodes.hashes(codes, len(codes))
    grouped.add_grouped(*knowncodes.entries(h, 77, 1234))
    assert grouped._pending == index._pending
    assert grouped.touched == index.touched
    assert h.dtype == np.uint32


def test_a_known_set_finds_every_crc_it_was_given() -> None:
    """The two sorted arrays (the small one merged into the large one now and then)
    answer as one set; repeats within the needles are suspects too."""
    rng = np.random.default_rng(7)
    first = rng.integers(0, 1 << 32, 1000, dtype=np.uint64).astype(np.uint32)
    known = knowncodes.KnownSet(np.sort(first))
    held = set(first.tolist())
    for _ in range(12):
        chunk = rng.integers(0, 1 << 32, 300, dtype=np.uint64).astype(np.uint32)
        needles = np.concatenate([chunk, rng.choice(np.array(sorted(held), np.uint32), 50)])
        needles = np.concatenate([needles, needles[:3]])
        got = known.suspects(needles).tolist()
        repeated = {v for v in needles.tolist() if needles.tolist().count(v) > 1}
        assert got == [v in held or v in repeated for v in needles.tolist()]
        known.add(chunk)
        held |= set(chunk.tolist())
    assert len(known) == 1000 + 12 * 300


async def test_stage_push_appends_fixed_width_codes_in_order(redis: Redis) -> None:
    """lua/stage_push.lua cuts one string into codes of one width (more than unpack
    takes at once); codes of mixed widths go the plain RPUSH way, in order too."""
    store = CodeStore(Backend(redis, load_settings({})))
    codes = [f"S{i:05d}".encode() for i in range(4500)]
    await store.push_fixed("{p}:stage", codes)
    await store.push_fixed("{p}:stage", [b"AB", b"ABC", b"A"])
    await store.push_fixed("{p}:stage", [])
    got = await redis.lrange("{p}:stage", 0, -1)
    assert got == [*codes, b"AB", b"ABC", b"A"]
    assert 0 < await redis.ttl("{p}:stage") <= STAGING_TTL


async def test_uploads_beside_the_read(redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upload still staging when the CRC-32s are read has its entries in the buckets:
    its codes are suspects, never generated, even if it commits only after the read. An
    upload made wholly after the read is not checked against (docs/generate.md "One at
    a time", as for an allow upload running beside a generation): both copies are real
    instances, each answered and handed out once."""
    async with app_client(redis) as c:
        t = await make_tenant(c)
        other = await make_pool(c, t, ["C000000000"], name="other")
        store = CodeStore(Backend(redis, load_settings({})))

        async def stage(code: str) -> str:
            index = await UploadIndex.new(store._b.scripts, t.id, other["id"])
            upload = f"u{index.number}.{index.number}"
            staging = keys.pool_staging(t.id, other["id"], upload)
            await store.stage(t.id, other["id"], staging, index, [code.encode()], "allow", 0)
            await index.finish()
            return upload

        early = await stage(X)  # staged before the read, committed after it
        read = knowncodes.read

        async def read_then_upload(client: Redis, project: str) -> Any:
            known = await read(client, project)
            await store.commit(t.id, other["id"], early)
            await store.commit(t.id, other["id"], await stage(P))
            return known

        monkeypatch.setattr(knowncodes, "read", read_then_upload)
        pool = await make_pool(c, t, name="generated")
        scripted_draws(monkeypatch, [X, P, "C000000001"])
        out = await _generate(c, t, pool["id"], 3)
        assert out["added"] == 3
        got = await _available(redis, t, pool["id"])
        assert X not in got and got[:2] == [P, "C000000001"]
        assert await _available(redis, t, other["id"]) == ["C000000000", X, P]
        handed: list[str] = []
        for p in (other, pool):
            r = await _post(c, t, f"pools/{p['id']}/issue", {"count": 3})
            handed += [code["code"] for code in r["codes"]]
        assert sorted(handed).count(P) == 2 and handed.count(X) == 1
