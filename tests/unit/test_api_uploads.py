"""Uploads under issue 16: no empty uploads, the per-project quota (all or nothing,
exact across concurrent uploads and pool deletes)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from codepool import keys
from codepool.durability import snapshot
from codepool.durability.restore import restore
from tests.apphelpers import ROOT, Client, Tenant, app_client, make_pool, make_tenant

TEXT = "text/plain"
ROOT_JSON = {**ROOT, "Content-Type": "application/json"}


async def _upload(c: Client, t: Tenant, pool_id: str, body: str, **headers: str) -> tuple[int, Any]:
    r = await c.post(
        f"/v1/projects/{t.id}/pools/{pool_id}/codes",
        content=body,
        headers={**t.admin, "Content-Type": TEXT, **headers},
    )
    return r.status_code, r.json()


async def test_an_upload_without_codes_is_refused(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t)
        for body in ("", "\n \n,,\n"):
            status, out = await _upload(c, t, pool["id"], body)
            assert status == 422, out
            assert out["error"]["code"] == "no_codes"
        r = await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/codes", json={"codes": []}, headers=t.admin
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "no_codes"


async def test_the_project_quota_refuses_a_whole_upload(redis: Redis) -> None:
    async with app_client(redis, max_codes_per_project=10) as c:
        t = await make_tenant(c)
        p1 = await make_pool(c, t, name="p1")
        p2 = await make_pool(c, t, name="p2")
        assert (await _upload(c, t, p1["id"], "\n".join(f"A{i}" for i in range(6))))[0] == 200
        # Every pool counts: 6 + 5 > 10, so none of the 5 is stored.
        status, out = await _upload(c, t, p2["id"], "\n".join(f"B{i}" for i in range(5)))
        assert status == 409, out
        assert out["error"]["code"] == "quota_exceeded"
        assert out["error"]["details"] == {"limit": 10, "stored": 6, "requested": 5}
        got = (await c.get(f"/v1/projects/{t.id}/pools/{p2['id']}", headers=t.admin)).json()
        assert got["total"] == 0
        assert await redis.keys("*:stage:*") == []
        # Exactly up to the quota is fine; issued codes still count (they are stored).
        await c.post(
            f"/v1/projects/{t.id}/pools/{p1['id']}/issue", json={"count": 2}, headers=t.admin
        )
        assert (await _upload(c, t, p2["id"], "B1\nB2\nB3\nB4"))[0] == 200
        assert (await _upload(c, t, p2["id"], "C1"))[0] == 409
        # Deleting a pool gives its codes back to the quota.
        r = await c.delete(f"/v1/projects/{t.id}/pools/{p1['id']}", headers=t.admin)
        assert r.status_code == 204, r.text
        assert int(await redis.get(keys.project_stored(t.id)) or 0) == 4
        assert (await _upload(c, t, p2["id"], "\n".join(f"D{i}" for i in range(6))))[0] == 200
        assert (await _upload(c, t, p2["id"], "E1"))[0] == 409


async def test_concurrent_uploads_cannot_both_slip_under_the_quota(redis: Redis) -> None:
    async with app_client(redis, max_codes_per_project=100) as c:
        t = await make_tenant(c)
        pools = [await make_pool(c, t, name=f"p{i}") for i in range(4)]
        results = await asyncio.gather(
            *(_upload(c, t, p["id"], "\n".join(f"{p['id']}-{i}" for i in range(40))) for p in pools)
        )
        assert sorted(status for status, _ in results) == [200, 200, 409, 409]
        assert int(await redis.get(keys.project_stored(t.id)) or 0) == 80


async def test_a_retried_upload_with_its_idempotency_key_adds_nothing(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["OLD-1"])
        body = "\n".join(f"N{i}" for i in range(1000))
        first = await _upload(c, t, pool["id"], body, **{"Idempotency-Key": "refill-1"})
        assert first == (200, {"added": 1000, "skipped": 0, "total": 1001, "available": 1001})
        # The retry (say the first answer was lost) answers the same and stores nothing.
        again = await _upload(c, t, pool["id"], body, **{"Idempotency-Key": "refill-1"})
        assert again == first
        got = (await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)).json()
        assert got["total"] == 1001
        assert await redis.keys("*:stage:*") == []
        # Another body under the same key is refused; a new key is a new upload.
        status, out = await _upload(c, t, pool["id"], "X1", **{"Idempotency-Key": "refill-1"})
        assert status == 422, out
        assert out["error"]["code"] == "idempotency_key_reused"
        status, out = await _upload(c, t, pool["id"], body, **{"Idempotency-Key": "refill-2"})
        assert (status, out["total"]) == (200, 2001)


async def test_concurrent_uploads_with_one_idempotency_key_store_once(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t)
        body = "\n".join(f"N{i}" for i in range(500))
        results = await asyncio.gather(
            *(_upload(c, t, pool["id"], body, **{"Idempotency-Key": "k"}) for _ in range(4))
        )
        assert {status for status, _ in results} <= {200, 409}
        answers = [out for status, out in results if status == 200]
        assert answers and all(a == answers[0] for a in answers)
        got = (await c.get(f"/v1/projects/{t.id}/pools/{pool['id']}", headers=t.admin)).json()
        assert got["total"] == 500


# -- JSON bodies: one message, and deep nesting is a 400 ------------------------------

DEEP = [b"[" * 1000 + b"]" * 1000, b'{"a":' * 5000 + b"1" + b"}" * 5000]


def _json_routes(c: Client) -> list[tuple[str, str]]:
    """(method, path) of every route that takes a body, path ids filled in."""
    found = []
    for route in c.app.routes:
        for method in sorted(set(getattr(route, "methods", ())) & {"POST", "PUT", "PATCH"}):
            path = route.path.replace("{project_id:str}", "acme")
            while "{" in path:
                start = path.index("{")
                path = path[:start] + "x" + path[path.index("}", start) + 1 :]
            found.append((method, path))
    return found


async def test_invalid_json_gets_one_message_everywhere(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A"])
        routes = _json_routes(c)
        assert ("POST", "/v1/projects") in routes and len(routes) > 8
        base = f"/v1/projects/{t.id}/pools/{pool['id']}"
        for url in ("/v1/projects", f"{base}/issue", f"{base}/codes"):
            r = await c.post(url, content=b"{", headers={**t.admin, **ROOT_JSON})
            assert r.status_code == 400, (url, r.text)
            assert r.json()["error"]["message"] == "the body is not valid JSON", (url, r.text)
        for method, path in routes:
            for body in DEEP:
                r = await c.request(method, path, content=body, headers=ROOT_JSON)
                assert 400 <= r.status_code < 500, (method, path, r.text)
                assert set(r.json()) == {"error"}
        # The hand-out routes and uploads of a real pool (ids that exist) too.
        for url in (f"{base}/issue", f"{base}/codes", "/v1/projects"):
            for body in DEEP:
                r = await c.post(url, content=body, headers={**t.admin, **ROOT_JSON})
                assert r.status_code == 400, (url, r.text)


@pytest.mark.real
async def test_restore_recounts_the_quota_from_the_restored_pools(
    real_redis: Redis, tmp_path: Path
) -> None:
    """The counter is snapshotted like any key, but a fuzzy snapshot may read it mid-commit:
    a restore sets it to what the restored pools hold."""
    async with app_client(real_redis, max_codes_per_project=10) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A", "B", "C"])
        await c.post(
            f"/v1/projects/{t.id}/pools/{pool['id']}/issue", json={"count": 1}, headers=t.admin
        )
    # As if the snapshot read the counter while another upload's first step had counted.
    await real_redis.incrby(keys.project_stored(t.id), 5)
    info = await snapshot.take_snapshot(real_redis, tmp_path)
    await restore(real_redis, info.path, [])
    assert int(await real_redis.get(keys.project_stored(t.id)) or 0) == 3
