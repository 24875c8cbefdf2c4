"""The agent tools against a real `codepool serve` (2 workers, embedded Redis), with the
MCP SDK's own client: over streamable HTTP at /mcp, and over stdio through
`python -m codepool mcp` pointed at the same service."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from mcp import ClientSession

from codepool.embedded_recovery import redis_servers_in
from tests.mcphelpers import POS_TOOLS, TOOLS, call, http_session, stdio_session, tool_names
from tests.servers import ServeProcess, start_serve, wait_gone

pytestmark = pytest.mark.e2e


class Shop:
    def __init__(self, server: ServeProcess, keys: dict[str, str], pool_id: str) -> None:
        self.server = server
        self.url = server.url
        self.root_key = server.root_key
        self.keys = keys
        self.pool_id = pool_id

    def headers(self, role: str) -> dict[str, str]:
        key = self.root_key if role == "root" else self.keys[role]
        return {"Authorization": f"Bearer {key}"}

    async def get(self, path: str, **params: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.url, trust_env=False) as c:
            r = await c.get(path, params=params, headers=self.headers("admin"))
            assert r.status_code == 200, r.text
            return r.json()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    data = tmp_path_factory.mktemp("mcp") / "data"
    with (
        start_serve(data, workers=2, env={"CODEPOOL_RATE_LIMIT_MCP": "0"}) as server,
        httpx.Client(base_url=server.url, trust_env=False, timeout=30.0) as c,
    ):
        root = {"Authorization": f"Bearer {server.root_key}"}
        assert c.post("/v1/projects", json={"id": "acme", "name": "Acme"}, headers=root)
        keys = {}
        for role in ("admin", "pos"):
            k = c.post("/v1/projects/acme/keys", json={"role": role, "name": role}, headers=root)
            keys[role] = k.json()["key"]
        admin = {"Authorization": f"Bearer {keys['admin']}"}
        pool = c.post("/v1/projects/acme/pools", json={"name": "spring"}, headers=admin).json()
        codes = "\n".join(f"SPRING-{i:03d}" for i in range(50))
        up = c.post(
            f"/v1/projects/acme/pools/{pool['id']}/codes",
            content=codes,
            headers={**admin, "Content-Type": "text/plain"},
        )
        assert up.status_code == 200, up.text
        issued = c.post(
            f"/v1/projects/acme/pools/{pool['id']}/issue",
            json={"count": 3, "user_id": "ann"},
            headers=admin,
        ).json()
        pos = {"Authorization": f"Bearer {keys['pos']}"}
        code = issued["codes"][0]["code"]
        assert c.post("/v1/projects/acme/codes/redeem", json={"code": code}, headers=pos)
        c.post("/v1/projects", json={"id": "other", "name": "Other"}, headers=root)
        k = c.post("/v1/projects/other/keys", json={"role": "admin", "name": "a"}, headers=root)
        keys["other"] = k.json()["key"]
        yield Shop(server, keys, pool["id"])


async def _same_as_http(s: ClientSession, shop: Shop) -> None:
    """The admin-visible tools answer what GET/POST of the HTTP API answer."""
    base = f"/v1/projects/acme/pools/{shop.pool_id}"
    assert (await call(s, "list_projects"))["data"] == [{"id": "acme", "name": "Acme"}]
    pools = await call(s, "list_voucher_pools", project_id="acme")
    assert pools["data"] == (await shop.get("/v1/projects/acme/pools"))["data"]
    pool = (await call(s, "get_voucher_pool", project_id="acme", pool_id=shop.pool_id))["data"]
    http = await shop.get(base)
    assert {k: pool[k] for k in ("total", "available", "assigned", "redeemed")} == {
        "total": 50,
        "available": 47,
        "assigned": 2,
        "redeemed": 1,
    }
    assert {k: http[k] for k in ("total", "available", "assigned", "redeemed", "used_by")} == {
        k: pool[k] for k in ("total", "available", "assigned", "redeemed", "used_by")
    }
    assert pool["company_id"] == "acme"
    page = await call(
        s, "list_voucher_codes", project_id="acme", pool_id=shop.pool_id, skip=10, count=15
    )
    http = await shop.get(f"{base}/codes", skip=10, count=15)
    assert page["data"] == http["data"]
    assert (page["matched"], page["skip"], page["limit"]) == (50, 10, 15)
    assigned = await call(
        s, "list_voucher_codes", project_id="acme", pool_id=shop.pool_id, status="assigned"
    )
    assert [e["status"] for e in assigned["data"]] == ["assigned", "assigned"]
    too_many = await call(
        s, "list_voucher_codes", project_id="acme", pool_id=shop.pool_id, count=1001
    )
    assert too_many["success"] is False
    assert "count" in too_many["error"]
    valid = await call(
        s, "validate_voucher_code", project_id="acme", code=assigned["data"][0]["code"]
    )
    assert valid["data"]["valid"] is True
    assert valid["data"]["user_id"] == "ann"
    stats = await call(s, "get_pool_stats", project_id="acme", pool_id=shop.pool_id)
    assert stats["data"]["available"] == 47
    events = await call(s, "list_events", project_id="acme")
    assert events["data"] == (await shop.get("/v1/projects/acme/events"))["data"]
    assert (await call(s, "list_rewards", project_id="acme"))["data"] == []
    unknown = await call(s, "get_voucher_pool", project_id="acme", pool_id="nope")
    assert unknown["success"] is False
    assert unknown["error"].startswith("pool_not_found:")


async def test_tools_over_streamable_http(shop: Shop) -> None:
    async with http_session(shop.url, shop.headers("admin")) as s:
        assert await tool_names(s) == TOOLS
        await _same_as_http(s, shop)
    async with http_session(shop.url, shop.headers("root")) as s:
        projects = await call(s, "list_projects")
        assert projects["data"] == [
            {"id": "acme", "name": "Acme"},
            {"id": "other", "name": "Other"},
        ]
    async with http_session(shop.url, shop.headers("pos")) as s:
        assert await tool_names(s) == POS_TOOLS
        answer = await call(s, "validate_voucher_code", project_id="acme", code="SPRING-049")
        assert answer["data"]["reason"] == "not_issued"
    async with http_session(shop.url, shop.headers("other")) as s:
        answer = await call(s, "get_voucher_pool", project_id="acme", pool_id=shop.pool_id)
        assert answer["error"].startswith("project_not_found:")
    async with httpx.AsyncClient(base_url=shop.url, trust_env=False) as c:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        accept = {"Accept": "application/json, text/event-stream"}
        for headers in ({}, {"Authorization": "Bearer not-a-key"}):
            r = await c.post("/mcp", json=body, headers={**accept, **headers})
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "unauthorized"


async def test_tools_over_stdio(shop: Shop) -> None:
    async with stdio_session(shop.url, shop.keys["admin"]) as s:
        assert await tool_names(s) == TOOLS
        await _same_as_http(s, shop)
    async with stdio_session(shop.url, shop.keys["pos"]) as s:
        assert await tool_names(s) == POS_TOOLS
        assert (await call(s, "list_projects"))["data"] == [{"id": "acme", "name": "Acme"}]
    async with stdio_session(shop.url, "cpk_acme.nope.nope") as s:
        answer = await call(s, "list_voucher_pools", project_id="acme")
        assert answer["success"] is False
        assert answer["error"].startswith("unauthorized:")


async def test_redis_down_is_success_false(shop: Shop) -> None:
    """Last in this module: it kills the server's Redis."""
    redis_pids = redis_servers_in(shop.server.data_dir / "redis")
    assert redis_pids
    for pid in redis_pids:
        os.kill(pid, signal.SIGKILL)
    assert not wait_gone(redis_pids, timeout=10.0)
    async with (
        http_session(shop.url, shop.headers("admin")) as s,
        stdio_session(shop.url, shop.keys["admin"]) as stdio,
    ):
        for session in (s, stdio):
            for tool, args in (
                ("list_voucher_pools", {}),
                ("get_voucher_pool", {"pool_id": shop.pool_id}),
                ("list_voucher_codes", {"pool_id": shop.pool_id, "count": 1000}),
            ):
                answer = await call(session, tool, project_id="acme", **args)
                assert answer["success"] is False, (tool, answer)
                assert answer["error"].startswith("redis_unavailable:"), (tool, answer)
    assert shop.server.process.poll() is None  # the service is still up
