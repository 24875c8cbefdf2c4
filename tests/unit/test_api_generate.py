"""POST .../codes/generate: pattern, uniqueness against the project, pattern_too_small,
all or nothing, idempotency, and generated codes through a snapshot and restore."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from codepool import codegen, keys
from codepool.durability import snapshot
from codepool.durability.restore import restore
from codepool.store import generate as generate_store
from tests.apphelpers import Client, Tenant, app_client, make_pool, make_tenant


@pytest.fixture(autouse=True, params=["lookup", "known"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs both ways: drawn codes looked up in Redis per code, and tested
    against the project's CRC-32s read once (knowncodes, large generations)."""
    if request.param == "known":
        monkeypatch.setattr(generate_store, "KNOWN_MIN", 0)
        monkeypatch.setattr(generate_store, "KNOWN_RATIO", 10**9)
    return str(request.param)


async def _generate(
    c: Client, t: Tenant, pool_id: str, headers: dict[str, str] | None = None, **body: Any
) -> tuple[int, Any]:
    r = await c.post(
        f"/v1/projects/{t.id}/pools/{pool_id}/codes/generate",
        json=body,
        headers={**t.admin, **(headers or {})},
    )
    return r.status_code, r.json()


async def _pool_codes(redis: Redis, t: Tenant, pool_id: str) -> list[str]:
    codes = await redis.lrange(keys.pool_available(t.id, pool_id), 0, -1)
    return [c.decode() if isinstance(c, bytes) else c for c in codes]


async def _nothing_staged(redis: Redis) -> None:
    for pattern in ("*:stage:*", "*:stageseen:*", "*uploadlock", "*generatelock"):
        assert await redis.keys(pattern) == [], pattern


async def test_generated_codes_match_the_pattern_and_are_new(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t)
        status, out = await _generate(
            c, t, pool["id"], count=3000, pattern="SALE-####-####", check_character=True
        )
        assert status == 200, out
        space = 32**8
        assert out == {
            "added": 3000,
            "total": 3000,
            "available": 3000,
            "space": float(space),
            "guess_probability": 3000 / space,
        }
        got = await _pool_codes(redis, t, pool["id"])
        pattern = codegen.parse("SALE-####-####", check_character=True)
        assert len(got) == len(set(got)) == 3000
        assert all(pattern.matches(code) for code in got)
        await _nothing_staged(redis)
        # The codes are the pool's like uploaded ones: handed out, validated.
        r = await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={"count": 2}, headers=t.admin
        )
        assert r.status_code == 200, r.text
        issued = r.json()["codes"][0]["code"]
        assert issued in got
        r = await c.post(
            f"/v1/projects/{t.id}/codes/validate", json={"code": issued}, headers=t.pos
        )
        assert r.json()["valid"] is True


async def test_codes_of_any_pool_and_status_are_never_generated_again(redis: Redis) -> None:
    """A space of 8 codes (X + 3 of A/B): 3 taken elsewhere in the project (one of them
    handed out, so no longer in any available list), 1 in the pool itself. Generating 4
    must find exactly the 4 free ones (collisions must happen); a 5th finds none."""
    space = [f"X{''.join(p)}" for p in __import__("itertools").product("AB", repeat=3)]
    async with app_client(redis) as c:
        t = await make_tenant(c)
        other = await make_pool(c, t, ["XAAA", "XAAB", "XABA"], name="other")
        r = await c.post(
            f"/v1/projects/{t.id}/pools/{other['id']}/issue", json={"count": 1}, headers=t.admin
        )
        assert r.json()["codes"][0]["code"] == "XAAA"
        pool = await make_pool(c, t, ["XBBB"], name="target")
        status, out = await _generate(
            c, t, pool["id"], count=4, pattern="X###", charset="AB", max_guess_probability=1
        )
        assert status == 200, out
        assert (out["added"], out["total"], out["available"]) == (4, 5, 5)
        assert out["guess_probability"] == 5 / 8
        got = await _pool_codes(redis, t, pool["id"])
        assert sorted(got) == sorted(set(space) - {"XAAA", "XAAB", "XABA"})
        # The space is full: the guess rule would allow a 6th live code, but none is new.
        status, out = await _generate(
            c, t, pool["id"], count=1, pattern="X###", charset="AB", max_guess_probability=1
        )
        assert status == 422, out
        assert out["error"]["code"] == "pattern_too_small"
        assert len(await _pool_codes(redis, t, pool["id"])) == 5
        await _nothing_staged(redis)


async def test_pattern_too_small_stores_nothing(redis: Redis) -> None:
    """digits ^ 4 = 10,000 codes; at 0.001 a pool may hold 10 live codes of it."""
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t)
        status, out = await _generate(c, t, pool["id"], count=11, pattern="####", charset="digits")
        assert status == 422, out
        assert out["error"]["code"] == "pattern_too_small"
        assert out["error"]["details"] == {
            "space": 10000.0,
            "live": 0,
            "requested": 11,
            "max_guess_probability": 0.001,
            "at_most": 10,
        }
        assert await _pool_codes(redis, t, pool["id"]) == []
        assert await redis.get(keys.project_stored(t.id)) is None
        await _nothing_staged(redis)
        status, out = await _generate(c, t, pool["id"], count=10, pattern="####", charset="digits")
        assert status == 200, out
        assert out["guess_probability"] == 0.001
        # Redeemed codes are no longer live; the others count.
        base = f"/v1/projects/{t.id}"
        r = await c.post(f"{base}/pools/{pool['id']}/issue", json={"count": 1}, headers=t.admin)
        code = r.json()["codes"][0]["code"]
        status, out = await _generate(c, t, pool["id"], count=1, pattern="####", charset="digits")
        assert (status, out["error"]["details"]["live"]) == (422, 10)
        r = await c.post(f"{base}/codes/redeem", json={"code": code}, headers=t.pos)
        assert r.status_code == 200, r.text
        status, out = await _generate(c, t, pool["id"], count=1, pattern="####", charset="digits")
        assert status == 200, out


async def test_bad_patterns_and_charsets_are_refused(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t)
        bad_patterns: list[dict[str, Any]] = [
            {"pattern": "SALE"},
            {"pattern": "##", "charset": "AAB"},
            {"pattern": "##", "charset": "ABC", "check_character": True},
            {"pattern": "A B##"},
        ]
        for body in bad_patterns:
            status, out = await _generate(c, t, pool["id"], count=1, **body)
            assert status == 422, out
            assert out["error"]["code"] == "invalid_pattern", out
        bad_bodies: list[dict[str, Any]] = [
            {"count": 0, "pattern": "##"},
            {"count": 10_000_001, "pattern": "##"},
            {"count": 1, "pattern": "##", "max_guess_probability": 0},
            {"count": 1, "pattern": "##", "max_guess_probability": 1.5},
            {"count": 1, "pattern": "##", "nope": 1},
        ]
        for body in bad_bodies:
            status, out = await _generate(c, t, pool["id"], **body)
            assert status == 400, (body, out)
        status, out = await _generate(c, t, "nosuchpool", count=1, pattern="##")
        assert (status, out["error"]["code"]) == (404, "pool_not_found")


async def test_a_generation_is_all_or_nothing(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the quota: refused before drawing. Failing half-way (after some chunks were
    staged): nothing in the pool, nothing counted, no staging key or lock left."""
    async with app_client(redis, max_codes_per_project=100) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A1", "A2"])
        status, out = await _generate(c, t, pool["id"], count=99, pattern="######")
        assert (status, out["error"]["code"]) == (409, "quota_exceeded")
        monkeypatch.setattr(generate_store, "GENERATE_CHUNK", 10)
        monkeypatch.setattr(generate_store, "KNOWN_CHUNK", 10)
        draws = 0
        real_draw = codegen.Generator.draw

        def failing_draw(self: codegen.Generator, count: int) -> list[bytes]:
            nonlocal draws
            draws += 1
            if draws == 4:
                raise RuntimeError("the lights went out")
            return real_draw(self, count)

        monkeypatch.setattr(codegen.Generator, "draw", failing_draw)
        status, out = await _generate(c, t, pool["id"], count=50, pattern="######")
        assert status == 500, out
        assert draws == 4
        assert await _pool_codes(redis, t, pool["id"]) == ["A1", "A2"]
        assert int(await redis.get(keys.project_stored(t.id)) or 0) == 2
        await _nothing_staged(redis)
        monkeypatch.setattr(codegen.Generator, "draw", real_draw)
        status, out = await _generate(c, t, pool["id"], count=50, pattern="######")
        assert (status, out["added"], out["total"]) == (200, 50, 52)


async def test_an_idempotency_key_makes_a_retry_add_nothing(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t)
        key = {"Idempotency-Key": "gen-1"}
        first = await _generate(c, t, pool["id"], key, count=20, pattern="G-######")
        assert first[0] == 200, first
        again = await _generate(c, t, pool["id"], key, count=20, pattern="G-######")
        assert again == first
        assert len(await _pool_codes(redis, t, pool["id"])) == 20
        status, out = await _generate(c, t, pool["id"], key, count=21, pattern="G-######")
        assert (status, out["error"]["code"]) == (422, "idempotency_key_reused")


async def test_a_generation_rearms_low_stock_alerts_like_an_upload(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A", "B", "C"], low_stock_thresholds=[2])
        base = f"/v1/projects/{t.id}/pools/{pool['id']}"
        await c.post(f"{base}/issue", json={"count": 2}, headers=t.admin)
        assert (await redis.hget(keys.pool(t.id, pool["id"]), "armed")) in (None, b"")
        status, _ = await _generate(c, t, pool["id"], count=5, pattern="R-######")
        assert status == 200
        assert await redis.hget(keys.pool(t.id, pool["id"]), "armed") == b"2"


@pytest.mark.real
async def test_generated_codes_survive_a_snapshot_and_restore(
    real_redis: Redis, tmp_path: Path
) -> None:
    async with app_client(real_redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["UP-1"])
        status, _ = await _generate(c, t, pool["id"], count=500, pattern="S-########")
        assert status == 200
        before = await _pool_codes(real_redis, t, pool["id"])
    info = await snapshot.take_snapshot(real_redis, tmp_path)
    await restore(real_redis, info.path, [])
    assert await _pool_codes(real_redis, t, pool["id"]) == before
    assert len(before) == 501
    assert int(await real_redis.get(keys.project_stored(t.id)) or 0) == 501
