"""The agent tools at /mcp, in-process, with the MCP SDK's own client: the tool list and
its schemas, every answer against the HTTP API's, paging, roles, tenants, rate limits,
a bad key and a lost Redis. (tests/e2e/test_mcp.py does the same over a real socket
and over stdio.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from codepool.app import create_app
from codepool.cli import main
from codepool.mcp.door import error_text
from codepool.mcp.shapes import code_out, event_out, pool_out
from tests.apphelpers import (
    ROOT,
    ROOT_KEY,
    Client,
    Tenant,
    app_client,
    auth,
    make_pool,
    make_reward,
    make_tenant,
    serve_app,
    settings_for_tests,
    user_token,
)
from tests.mcphelpers import POS_TOOLS, TOOLS, call, http_session, tool_names
from tests.servers import free_port

URL = "http://testserver"


async def _shop(c: Client) -> tuple[Tenant, dict[str, Any], dict[str, Any]]:
    """acme with a pool of 30 codes, a reward on it, two codes handed out, one redeemed."""
    t = await make_tenant(c)
    pool = await make_pool(c, t, [f"CODE-{i:02d}" for i in range(30)], low_stock_thresholds=[5])
    reward = await make_reward(c, t, pool["id"])
    issued = await c.post(
        f"/v1/projects/acme/pools/{pool['id']}/issue",
        json={"count": 2, "user_id": "ann"},
        headers=t.admin,
    )
    assert issued.status_code == 200, issued.text
    code = issued.json()["codes"][0]["code"]
    redeemed = await c.post("/v1/projects/acme/codes/redeem", json={"code": code}, headers=t.pos)
    assert redeemed.status_code == 200, redeemed.text
    bought = await c.post(
        f"/v1/projects/acme/rewards/{reward['id']}/purchase",
        headers=user_token(t, "bob"),
    )
    assert bought.status_code == 201, bought.text
    return t, pool, reward


def _page_fields(page: dict[str, Any]) -> dict[str, Any]:
    return {k: page[k] for k in ("matched", "matched_limited", "skip", "limit")}


async def test_the_tools_are_listed_read_only_with_their_output_schemas(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        for headers in (ROOT, t.admin):
            async with http_session(URL, headers, c.app) as s:
                listed = (await s.list_tools()).tools
                assert {tool.name for tool in listed} == TOOLS
                for tool in listed:
                    assert tool.annotations is not None
                    assert tool.annotations.read_only_hint is True
                    assert tool.annotations.destructive_hint is False
                    assert tool.description
                    schema = tool.output_schema or {}
                    assert set(schema["required"]) >= {"success", "data", "error"}, tool.name
        async with http_session(URL, t.pos, c.app) as s:
            assert await tool_names(s) == POS_TOOLS
        async with http_session(URL, t.admin, c.app) as s:
            codes = next(x for x in (await s.list_tools()).tools if x.name == "list_voucher_codes")
            arguments = codes.input_schema["properties"]
            assert arguments["skip"]["default"] == 0
            assert arguments["count"]["default"] == 20
            assert set(codes.input_schema["required"]) == {"project_id", "pool_id"}
            page = (codes.output_schema or {})["properties"]
            assert {"matched", "matched_limited", "skip", "limit"} <= set(page)


async def test_every_tool_answers_what_the_http_api_answers(redis: Redis) -> None:
    async with app_client(redis) as c:
        t, pool, reward = await _shop(c)
        base = f"/v1/projects/acme/pools/{pool['id']}"
        async with http_session(URL, t.admin, c.app) as s:
            projects = await call(s, "list_projects")
            assert projects["success"] is True and projects["error"] is None
            assert projects["data"] == [{"id": "acme", "name": "Acme"}]

            pools = await call(s, "list_voucher_pools", project_id="acme")
            http = (await c.get("/v1/projects/acme/pools", headers=t.admin)).json()
            assert pools["data"] == http["data"]
            assert _page_fields(pools) == _page_fields(http)

            got = await call(s, "get_voucher_pool", project_id="acme", pool_id=pool["id"])
            http = (await c.get(base, headers=t.admin)).json()
            assert got["success"] is True
            assert got["data"]["company_id"] == "acme"
            for field in ("id", "name", "total", "available", "assigned", "redeemed"):
                assert got["data"][field] == http[field], field
            assert got["data"]["used_by"] == [reward["id"]] == http["used_by"]
            assert got["data"]["low_stock_thresholds"] == [5]
            assert got["data"]["expires_at"] is None
            assert (got["data"]["total"], got["data"]["assigned"], got["data"]["redeemed"]) == (
                30,
                2,
                1,
            )

            for query in ({}, {"status": "assigned"}, {"skip": 1, "count": 3}):
                codes = await call(
                    s, "list_voucher_codes", project_id="acme", pool_id=pool["id"], **query
                )
                params = {k: str(v) for k, v in query.items()}
                http = (await c.get(f"{base}/codes", params=params, headers=t.admin)).json()
                assert codes["data"] == http["data"], query
                assert _page_fields(codes) == _page_fields(http), query
            assert {e["status"] for e in codes["data"]} <= {"available", "assigned", "redeemed"}

            stats = await call(s, "get_pool_stats", project_id="acme", pool_id=pool["id"])
            http_stats = await c.get(f"{base}/stats", headers=t.admin)
            if http_stats.status_code == 200:  # the service keeps per-minute counters
                # Rate and forecast move with the clock between the two calls: the rest
                # must match exactly.
                want = http_stats.json()
                assert set(stats["data"]) == set(want)
                assert stats["data"]["pool_id"] == want["pool_id"]
                assert stats["data"]["available"] == want["available"] == 27
                assert len(stats["data"]["series"]) == len(want["series"])
            else:  # not yet: the pool's counts, no rate
                assert stats["data"] == {
                    "pool_id": pool["id"],
                    "available": 27,
                    "rate_per_minute": None,
                    "empty_at": None,
                    "series": [],
                }

            issued = (await c.get(f"{base}/codes?status=assigned", headers=t.admin)).json()
            for entry in issued["data"]:
                valid = await call(
                    s, "validate_voucher_code", project_id="acme", code=entry["code"]
                )
                http = (
                    await c.post(
                        "/v1/projects/acme/codes/validate",
                        json={"code": entry["code"]},
                        headers=t.admin,
                    )
                ).json()
                assert valid["data"]["valid"] is True
                for field, value in valid["data"].items():
                    assert value == http.get(field), field
            unknown = await call(s, "validate_voucher_code", project_id="acme", code="NOPE")
            assert unknown["success"] is True
            assert unknown["data"]["valid"] is False
            assert unknown["data"]["reason"] == "unknown_code"

            rewards = await call(s, "list_rewards", project_id="acme")
            http = (await c.get("/v1/projects/acme/rewards", headers=t.admin)).json()
            assert rewards["data"] == http["data"], rewards
            assert rewards["data"][0]["available"] == 27

            for query in ({}, {"type": "VOUCHER_USED"}, {"user_id": "bob"}):
                events = await call(s, "list_events", project_id="acme", **query)
                http = (
                    await c.get("/v1/projects/acme/events", params=query, headers=t.admin)
                ).json()
                assert events["data"] == http["data"], query
                assert _page_fields(events) == _page_fields(http), query
            assert [e["type"] for e in events["data"]] == ["REDEEMED_VOUCHER"]

        async with http_session(URL, ROOT, c.app) as s:
            await make_tenant(c, "other")
            projects = await call(s, "list_projects")
            assert projects["data"] == [
                {"id": "acme", "name": "Acme"},
                {"id": "other", "name": "Other"},
            ]
            assert projects["matched"] == 2


async def test_paging_and_count_out_of_range(redis: Redis) -> None:
    async with app_client(redis) as c:
        t, pool, _ = await _shop(c)
        async with http_session(URL, t.admin, c.app) as s:
            args = {"project_id": "acme", "pool_id": pool["id"]}
            seen: list[str] = []
            for skip in range(0, 30, 7):
                page = await call(s, "list_voucher_codes", **args, skip=skip, count=7)
                assert (page["skip"], page["limit"], page["matched"]) == (skip, 7, 30)
                seen += [entry["code"] for entry in page["data"]]
            assert len(seen) == 30
            assert sorted(set(seen)) == [f"CODE-{i:02d}" for i in range(30)]
            everything = await call(s, "list_voucher_codes", **args, count=1000)
            assert len(everything["data"]) == 30
            past = await call(s, "list_voucher_codes", **args, skip=500)
            assert past["data"] == []
            assert past["matched"] == 30
            for bad in ({"count": 1001}, {"count": 0}, {"skip": -1}):
                answer = await call(s, "list_voucher_codes", **args, **bad)
                assert answer == {
                    "success": False,
                    "data": None,
                    "error": answer["error"],
                }, bad
                assert answer["error"].startswith("invalid_request:"), answer
            for minutes in (0, 10081):
                stats = await call(
                    s, "get_pool_stats", project_id="acme", pool_id=pool["id"], minutes=minutes
                )
                assert stats["error"] == "invalid_request: minutes must be 1..10080"
            too_many = await call(s, "list_voucher_pools", project_id="acme", count=5000)
            assert too_many["success"] is False
            assert "1..1000" in too_many["error"]


async def test_roles_and_tenants_are_the_http_api_s(redis: Redis) -> None:
    async with app_client(redis) as c:
        t, pool, _ = await _shop(c)
        other = await make_tenant(c, "other")
        async with http_session(URL, other.admin, c.app) as s:
            # Another project's ids answer as unknown, never as forbidden.
            for tool, args in (
                ("list_voucher_pools", {}),
                ("get_voucher_pool", {"pool_id": pool["id"]}),
                ("list_voucher_codes", {"pool_id": pool["id"]}),
                ("get_pool_stats", {"pool_id": pool["id"]}),
                ("validate_voucher_code", {"code": "CODE-00"}),
                ("list_rewards", {}),
                ("list_events", {}),
            ):
                answer = await call(s, tool, project_id="acme", **args)
                assert answer["success"] is False, tool
                assert answer["error"].startswith("project_not_found:"), (tool, answer)
            assert (await call(s, "list_projects"))["data"] == [{"id": "other", "name": "Other"}]
        async with http_session(URL, t.admin, c.app) as s:
            missing = await call(s, "get_voucher_pool", project_id="acme", pool_id="nope")
            assert missing["error"].startswith("pool_not_found:")
            odd = await call(s, "get_voucher_pool", project_id="acme", pool_id="../../projects")
            assert odd["error"].startswith("pool_not_found:")
            codes = await call(s, "list_voucher_codes", project_id="acme", pool_id="nope")
            assert codes["error"].startswith("pool_not_found:")
        async with http_session(URL, t.pos, c.app) as s:
            assert (await call(s, "list_projects"))["data"] == [{"id": "acme", "name": "Acme"}]
            valid = await call(s, "validate_voucher_code", project_id="acme", code="CODE-00")
            assert valid["success"] is True
            # Not listed for a pos key, and refused like the HTTP route if called anyway.
            codes = await call(s, "list_voucher_codes", project_id="acme", pool_id=pool["id"])
            assert codes["success"] is False
            assert codes["error"].startswith("forbidden:")


async def test_a_missing_or_bad_key_is_a_401_from_the_endpoint(redis: Redis) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        accept = {"Accept": "application/json, text/event-stream"}
        revoked = await c.post(
            "/v1/projects/acme/keys", json={"role": "admin", "name": "x"}, headers=ROOT
        )
        gone = auth(revoked.json()["key"])
        deleted = await c.delete(f"/v1/projects/acme/keys/{revoked.json()['id']}", headers=ROOT)
        assert deleted.status_code == 204
        for headers in (
            {},
            auth("nope"),
            {"Authorization": f"Basic {ROOT_KEY}"},
            auth("cpk_acme.xx.yy"),
            gone,
            user_token(t, "ann"),  # a user token is for its project's user routes only
        ):
            for path in ("/mcp", "/mcp/"):
                r = await c.post(path, json=body, headers={**accept, **headers})
                assert r.status_code == 401, (headers, r.text)
                assert r.json()["error"]["code"] == "unauthorized"
                assert r.headers["www-authenticate"].startswith("Bearer")
        ok = await c.post("/mcp", json=body, headers={**accept, **t.admin})
        assert ok.status_code == 200
        # No server-to-client stream to hold open (stateless), no session to delete.
        for method in ("GET", "DELETE", "PUT"):
            r = await c.request(method, "/mcp", headers={**accept, **t.admin})
            assert r.status_code == 405, method
            assert r.json()["error"]["code"] == "method_not_allowed"
            assert r.headers["allow"] == "POST"
        # Only /mcp itself is the endpoint.
        assert (await c.post("/mcpx", json=body, headers=t.admin)).status_code in {404, 405}


async def test_tool_calls_are_rate_limited_per_key(redis: Redis) -> None:
    async with app_client(redis, rate_limit_mcp=3) as c:
        t = await make_tenant(c)
        second = await c.post(
            "/v1/projects/acme/keys", json={"role": "admin", "name": "b"}, headers=ROOT
        )
        async with (
            http_session(URL, t.admin, c.app) as s,
            http_session(URL, auth(second.json()["key"]), c.app) as s2,
            http_session(URL, ROOT, c.app) as root,
        ):
            # 8 calls in well under a second span at most two 1-second windows: >= 2 refused.
            answers = [await call(s, "list_rewards", project_id="acme") for _ in range(8)]
            refused = [a for a in answers if not a["success"]]
            assert len(refused) >= 2
            assert all(a["error"].startswith("rate_limited:") for a in refused)
            assert "retry_after=" in refused[0]["error"]
            # Another key of the same project has its own count; root none.
            assert (await call(s2, "list_rewards", project_id="acme"))["success"] is True
            for _ in range(8):
                assert (await call(root, "list_rewards", project_id="acme"))["success"] is True
            # The agent limit is the key's tool calls only: its HTTP requests (admin: no
            # HTTP limit by default) go on.
            assert (await c.get("/v1/projects/acme/rewards", headers=t.admin)).status_code == 200


async def test_redis_down_is_success_false_not_a_crash() -> None:
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    app = create_app(settings_for_tests(notify=False), client=dead)
    async with serve_app(app):
        # A well-formed API key (its check needs Redis) and the root key (it does not).
        for headers in (ROOT, auth("cpk_acme.k1.secret")):
            async with http_session(URL, headers, app) as s:
                assert await tool_names(s) == TOOLS
                for tool, args in (
                    ("list_projects", {}),
                    ("list_voucher_pools", {"project_id": "acme"}),
                    ("list_voucher_codes", {"project_id": "acme", "pool_id": "p"}),
                ):
                    answer = await call(s, tool, **args)
                    assert answer["success"] is False, (tool, answer)
                    assert answer["error"].startswith("redis_unavailable:"), (tool, answer)
    await dead.aclose()


async def test_concurrent_calls_on_one_session(redis: Redis) -> None:
    async with app_client(redis) as c:
        t, pool, _ = await _shop(c)
        async with http_session(URL, t.admin, c.app) as s:
            answers = await asyncio.gather(
                *(
                    call(s, "list_voucher_codes", project_id="acme", pool_id=pool["id"], skip=i)
                    for i in range(10)
                )
            )
        http = await c.get(f"/v1/projects/acme/pools/{pool['id']}/codes?count=10", headers=t.admin)
        assert [a["data"][0] for a in answers] == http.json()["data"]


async def test_a_bug_in_a_tool_is_success_false_not_a_crash(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(raw: Any) -> Any:
        raise KeyError("code")

    monkeypatch.setattr("codepool.mcp.tools.code_out", broken)
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, ["A"])
        async with http_session(URL, t.admin, c.app) as s:
            answer = await call(s, "list_voucher_codes", project_id="acme", pool_id=pool["id"])
            assert answer == {
                "success": False,
                "data": None,
                "error": "internal_error: the tool failed; the service log has the details",
            }
            # The session goes on.
            assert (await call(s, "list_voucher_pools", project_id="acme"))["success"] is True


def test_codepool_mcp_without_a_key_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CODEPOOL_API_KEY", raising=False)
    assert main(["mcp"]) == 2
    assert "CODEPOOL_API_KEY" in capsys.readouterr().err


# -- the conversions, without a server ----------------------------------------------


def test_error_text_reads_the_one_error_shape() -> None:
    body = (
        b'{"error": {"code": "pool_not_found", "message": "no such pool", "details": {"id": "p"}}}'
    )
    assert error_text(404, body) == "pool_not_found: no such pool (id=p)"
    limited = (
        b'{"error": {"code": "rate_limited", "message": "slow down", '
        b'"details": {"retry_after": 1}}}'
    )
    assert error_text(429, limited) == "rate_limited: slow down (retry_after=1)"
    assert error_text(502, b"<html>bad gateway</html>") == "http_502: codepool answered HTTP 502"
    assert error_text(500, b'{"error": "x"}') == "http_500: codepool answered HTTP 500"


def test_pool_and_event_conversions_keep_the_contract_s_names() -> None:
    pool = {
        "id": "p",
        "name": "n",
        "project_id": "acme",
        "total": 3,
        "available": 1,
        "assigned": 1,
        "redeemed": 1,
        "used_by": ["r"],
        "low_stock_thresholds": [],
        "notify": {"emails": []},
        "expires_at": None,
        "created_at": 1.0,
    }
    out = pool_out(pool)
    assert out["company_id"] == "acme"
    assert "notify" not in out and "project_id" not in out
    event = {"id": "1-0", "type": "POOL_LOW", "time": 2.0, "pool_id": "p", "available": 4}
    assert event_out(event) == event
    soon = {
        "id": "2-0",
        "type": "POOL_EMPTY_SOON",
        "time": 3.0,
        "pool_id": "p",
        "available": 4,
        "rate_per_minute": 2.0,
        "empty_at": 123.0,
        "threshold_seconds": 600,
    }
    assert event_out(soon) == soon
    # Fields only some services have are passed on when sent, and not made up.
    assert "empty_soon_alerts" not in pool_out(pool)
    assert pool_out({**pool, "empty_soon_alerts": [600]})["empty_soon_alerts"] == [600]
    entry = {"code": "A", "status": "assigned", "assigned_time": 1.0, "redeemed_time": None}
    assert code_out(entry) == {**entry, "user_id": None, "reward_id": None}
    held = code_out({**entry, "hold_expires_at": 9.0})
    assert held["hold_expires_at"] == 9.0


@pytest.mark.parametrize("count", [1, 1000])
async def test_count_bounds_are_inclusive(redis: Redis, count: int) -> None:
    async with app_client(redis) as c:
        t = await make_tenant(c)
        async with http_session(URL, t.admin, c.app) as s:
            answer = await call(s, "list_voucher_pools", project_id="acme", count=count)
            assert answer["success"] is True
            assert answer["limit"] == count
