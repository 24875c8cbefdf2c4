"""The OpenAPI document tells a client the whole contract, and its pages work offline."""

from __future__ import annotations

import re
from contextlib import AbstractAsyncContextManager
from typing import Any

import fakeredis
from redis.asyncio import Redis

from tests.apphelpers import ROOT, Client, app_client, make_pool, make_tenant

# Routes a user's flash sale or a refill may be retried on.
IDEMPOTENT = [
    ("post", "/v1/projects/{project_id}/pools/{pool_id}/issue"),
    ("post", "/v1/projects/{project_id}/rewards/{reward_id}/purchase"),
    ("post", "/v1/projects/{project_id}/pools/{pool_id}/codes"),
]
UPLOAD = "/v1/projects/{project_id}/pools/{pool_id}/codes"
ERROR_REF = "#/components/schemas/ErrorOut"


def _client() -> AbstractAsyncContextManager[Client]:
    # The docs need no data; fakeredis keeps the app's services happy.
    return app_client(fakeredis.FakeAsyncRedis())


async def _document() -> dict[str, Any]:
    async with _client() as client:
        r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


async def test_bearer_auth_is_a_security_scheme_on_every_v1_operation() -> None:
    doc = await _document()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    ops = _operations(doc)
    assert len(ops) > 30
    for method, path, op in ops:
        if path.startswith("/v1/"):
            assert op.get("security") == [{"bearer": []}], (method, path)
        else:
            assert "security" not in op, (method, path)


async def test_every_error_status_is_documented_in_the_one_error_shape() -> None:
    doc = await _document()
    assert set(doc["components"]["schemas"]["ErrorOut"]["properties"]) == {"error"}
    for method, path, op in _operations(doc):
        responses = op["responses"]
        for status, response in responses.items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, (method, path, status)
        if not path.startswith("/v1/"):
            continue
        assert {"400", "401", "403", "429", "503"} <= set(responses), (method, path)
        if "project_id" in path:
            assert "project_not_found" in responses["404"]["description"], (method, path)
        if method in {"post", "put", "patch"} and not path.endswith("/validate"):
            assert "storage_full" in responses["507"]["description"], (method, path)
        if "requestBody" in op:
            assert "payload_too_large" in responses["413"]["description"], (method, path)
    upload = doc["paths"][UPLOAD]["post"]["responses"]
    for status, code in [("409", "upload_in_progress"), ("415", "unsupported_media_type")]:
        assert code in upload[status]["description"]
    assert {"no_codes", "invalid_codes"} <= set(
        re.findall(r"`(\w+)`", upload["422"]["description"])
    )
    purchase = doc["paths"]["/v1/projects/{project_id}/rewards/{reward_id}/purchase"]["post"]
    assert {"409", "410", "422"} <= set(purchase["responses"])


async def test_uploads_take_every_media_type_and_handouts_an_idempotency_key() -> None:
    doc = await _document()
    body = doc["paths"][UPLOAD]["post"]["requestBody"]
    assert body["required"] is True
    assert set(body["content"]) == {"text/plain", "text/csv", "application/json"}
    json_body = body["content"]["application/json"]["schema"]
    assert json_body["required"] == ["codes"]
    assert json_body["properties"]["codes"]["type"] == "array"
    for method, path in IDEMPOTENT:
        params = doc["paths"][path][method]["parameters"]
        (header,) = [p for p in params if p["name"] == "Idempotency-Key"]
        assert header["in"] == "header" and header["required"] is False


async def test_docs_pages_load_nothing_from_another_host() -> None:
    async with _client() as client:
        await _check_pages(client)


async def _check_pages(client: Client) -> None:
    content_types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    for page in ("/schema", "/schema/swagger", "/schema/scalar"):
        r = await client.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "default-src 'none'" in csp
        # No absolute URL at all, so nothing can come from a CDN.
        assert not re.search(r"(https?:)?//", r.text), r.text
        assets = re.findall(r"(?:src|href)='([^']+)'", r.text)
        assert len(assets) >= 3
        for url in assets:
            assert url.startswith("/schema/assets/"), url
            asset = await client.get(url)
            assert asset.status_code == 200, url
            suffix = url[url.rindex(".") :]
            assert asset.headers["content-type"].startswith(content_types[suffix]), url
            assert asset.headers["x-content-type-options"] == "nosniff", url
            assert len(asset.content) > 100
        # The OpenAPI document the page starts from is served from here too.
        (data_url,) = re.findall(r"data-url='([^']+)'", r.text)
        assert (await client.get(data_url)).status_code == 200


async def test_a_skip_past_what_redis_can_index_is_a_400(redis: Redis) -> None:
    # schemathesis found it: skip=196614856834539143905316700160 reached LRANGE, a 500.
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = (await make_pool(c, t, ["A1", "A2"]))["id"]
        huge = 2**53 + 1
        for path in [
            "/v1/projects",
            f"/v1/projects/{t.id}/pools",
            f"/v1/projects/{t.id}/pools/{pool}/codes",
            f"/v1/projects/{t.id}/rewards",
            f"/v1/projects/{t.id}/events",
            f"/v1/projects/{t.id}/users/u1/vouchers",
            f"/v1/projects/{t.id}/deliveries/dead",
        ]:
            r = await c.get(path, params={"skip": huge, "count": 100}, headers=ROOT)
            assert r.status_code == 400, (path, r.text)
            assert r.json()["error"]["code"] == "invalid_request"
            ok = await c.get(path, params={"skip": 2**53, "count": 1000}, headers=ROOT)
            assert ok.status_code == 200, (path, ok.text)
            assert ok.json()["data"] == []
