"""GET /v1/whoami and GET /v1/projects/{p}: how a project key (an agent's, the console's)
learns its role, its project and that project's name."""

from __future__ import annotations

from redis.asyncio import Redis

from tests.apphelpers import ROOT, app_client, auth, make_tenant, user_token


async def test_whoami_names_the_role_and_project_of_a_key(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        assert (await c.get("/v1/whoami", headers=ROOT)).json() == {
            "role": "root",
            "project_id": None,
        }
        assert (await c.get("/v1/whoami", headers=t.admin)).json() == {
            "role": "admin",
            "project_id": "acme",
        }
        assert (await c.get("/v1/whoami", headers=t.pos)).json() == {
            "role": "pos",
            "project_id": "acme",
        }
        for headers in ({}, auth("nope"), auth("cpk_acme.nope.nope"), user_token(t, "ann")):
            r = await c.get("/v1/whoami", headers=headers)
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "unauthorized"


async def test_a_project_key_reads_its_own_project_s_name_and_no_secret(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        other = await make_tenant(c, "other")
        for headers in (ROOT, t.admin, t.pos):
            r = await c.get("/v1/projects/acme", headers=headers)
            assert r.status_code == 200, r.text
            body = r.json()
            assert set(body) == {"id", "name", "created_at"}
            assert (body["id"], body["name"]) == ("acme", "Acme")
        r = await c.get("/v1/projects/acme", headers=other.admin)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "project_not_found"
        assert (await c.get("/v1/projects/nope", headers=ROOT)).status_code == 404
        assert (await c.get("/v1/projects/acme", headers=user_token(t, "ann"))).status_code == 403
