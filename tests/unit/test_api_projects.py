"""Projects, API keys, roles and tenant isolation over HTTP."""

from __future__ import annotations

from redis.asyncio import Redis

from tests.apphelpers import ROOT, app_client, auth, make_pool, make_tenant


async def test_project_create_list_and_duplicate(redis: Redis) -> None:
    async with app_client(redis) as c:
        r = await c.post("/v1/projects", json={"id": "shop", "name": "Shop"}, headers=ROOT)
        assert r.status_code == 201
        body = r.json()
        assert body["id"] == "shop" and body["user_token_secret"] and body["webhook_secret"]
        auto = await c.post("/v1/projects", json={"name": "No id"}, headers=ROOT)
        assert auto.status_code == 201 and auto.json()["id"]
        dup = await c.post("/v1/projects", json={"id": "shop", "name": "Again"}, headers=ROOT)
        assert dup.status_code == 409 and dup.json()["error"]["code"] == "project_exists"
        listed = (await c.get("/v1/projects", headers=ROOT)).json()
        assert listed["matched"] == 2 and {p["id"] for p in listed["data"]} == {
            "shop",
            auto.json()["id"],
        }
        assert "user_token_secret" not in listed["data"][0]
        bad = await c.post("/v1/projects", json={"id": "no spaces", "name": "x"}, headers=ROOT)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"


async def test_auth_required_and_invalid_tokens(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        missing = await c.get("/v1/projects")
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
        assert (
            await c.get("/v1/projects", headers={"Authorization": "Basic x"})
        ).status_code == 401
        assert (await c.get("/v1/projects", headers=auth("nope"))).status_code == 401
        forged = t.admin["Authorization"][:-3] + "xyz"
        r = await c.get(f"/v1/projects/{t.id}/pools", headers={"Authorization": forged})
        assert r.status_code == 401


async def test_keys_are_shown_once_hashed_and_revocable(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        listed = (await c.get(f"/v1/projects/{t.id}/keys", headers=t.admin)).json()
        assert {k["role"] for k in listed} == {"admin", "pos"}
        assert all("key" not in k for k in listed)
        raw = await redis.hgetall(f"cp:{{{t.id}}}:apikeys")
        secret = t.admin["Authorization"].split(".")[-1]
        assert all(secret.encode() not in v for v in raw.values())
        # An admin can make keys for its own project, and revoke them.
        k = await c.post(
            f"/v1/projects/{t.id}/keys", json={"role": "pos", "name": "till 2"}, headers=t.admin
        )
        assert k.status_code == 201
        till = auth(k.json()["key"])
        assert (await c.get(f"/v1/projects/{t.id}/pools", headers=till)).status_code == 403
        d = await c.delete(f"/v1/projects/{t.id}/keys/{k.json()['id']}", headers=t.admin)
        assert d.status_code == 204
        gone = await c.get(f"/v1/projects/{t.id}/pools", headers=till)
        assert gone.status_code == 401
        again = await c.delete(f"/v1/projects/{t.id}/keys/{k.json()['id']}", headers=t.admin)
        assert again.status_code == 404 and again.json()["error"]["code"] == "key_not_found"


async def test_roles_are_enforced(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A", "B"])
        base = f"/v1/projects/{t.id}/pools"
        # admin cannot act as root
        assert (
            await c.post("/v1/projects", json={"name": "x"}, headers=t.admin)
        ).status_code == 403
        assert (await c.get("/v1/projects", headers=t.admin)).status_code == 403
        # pos may do none of the pool management nor issuing
        for method, path, body in [
            ("POST", base, {"name": "p"}),
            ("GET", base, None),
            ("GET", f"{base}/{pool['id']}", None),
            ("PATCH", f"{base}/{pool['id']}", {"name": "q"}),
            ("DELETE", f"{base}/{pool['id']}", None),
            ("POST", f"{base}/{pool['id']}/issue", {"count": 1}),
            ("GET", f"{base}/{pool['id']}/codes", None),
            ("GET", f"{base}/{pool['id']}/codes.csv", None),
            ("POST", f"/v1/projects/{t.id}/keys", {"role": "admin", "name": "x"}),
        ]:
            r = await c.request(method, path, json=body, headers=t.pos)
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["error"]["code"] == "forbidden"
        assert (
            await c.post(
                f"{base}/{pool['id']}/codes",
                content="C",
                headers={**t.pos, "Content-Type": "text/plain"},
            )
        ).status_code == 403
        assert (await c.get(f"{base}/{pool['id']}", headers=t.admin)).json()["available"] == 2


async def test_tenants_are_isolated(redis: Redis) -> None:
    async with app_client(redis) as c:
        a = await make_tenant(c, "alpha")
        b = await make_tenant(c, "beta")
        pool_b = await make_pool(c, b, ["B1"])
        for path in [
            f"/v1/projects/{b.id}/pools",
            f"/v1/projects/{b.id}/pools/{pool_b['id']}",
            f"/v1/projects/{b.id}/keys",
            "/v1/projects/does-not-exist/pools",
        ]:
            r = await c.get(path, headers=a.admin)
            assert r.status_code == 404, path
        r = await c.post(
            f"/v1/projects/{b.id}/pools/{pool_b['id']}/issue", json={}, headers=a.admin
        )
        assert r.status_code == 404
        # Using B's pool id under A's project finds nothing either.
        r = await c.post(
            f"/v1/projects/{a.id}/pools/{pool_b['id']}/issue", json={}, headers=a.admin
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "pool_not_found"
        assert (await c.get(f"/v1/projects/{b.id}/pools/{pool_b['id']}", headers=b.admin)).json()[
            "available"
        ] == 1


async def test_unknown_route_and_method_use_the_error_shape(redis: Redis) -> None:
    async with app_client(redis) as c:
        r = await c.get("/v1/nothing-here")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = await c.put("/v1/projects", headers=ROOT)
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
        r = await c.post(
            "/v1/projects",
            content=b"{not json",
            headers={**ROOT, "Content-Type": "application/json"},
        )
        assert r.status_code == 400 and set(r.json()["error"]) == {"code", "message", "details"}


async def test_ops_endpoints(redis: Redis) -> None:
    async with app_client(redis) as c:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        assert (await c.get("/readyz")).json() == {"status": "ready"}
        assert "codepool_issue_script_calls_total" in (await c.get("/metrics")).text
        schema = await c.get("/schema/openapi.json")
        assert (
            schema.status_code == 200
            and "/v1/projects/{project_id}/pools/{pool_id}/issue" in schema.json()["paths"]
        )
        assert (await c.get("/schema")).status_code == 200
