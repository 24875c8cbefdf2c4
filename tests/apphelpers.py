"""Helpers for HTTP-level tests: an app over a given Redis, a project with keys, a pool."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, cast

import httpx
import jwt
import msgspec
from litestar import Litestar
from redis.asyncio import Redis

from codepool.app import create_app
from codepool.settings import Settings, load_settings

ROOT_KEY = "root-test-key"


class Client(httpx.AsyncClient):
    """An HTTP client wired straight into an app, in the test's own event loop (Litestar's
    AsyncTestClient runs the app in a thread with another loop, where a Redis client made
    by the test cannot be used)."""

    def __init__(self, app: Litestar) -> None:
        # httpx types its ASGI app loosely; Litestar's __call__ is stricter but compatible.
        transport = httpx.ASGITransport(app=cast(Any, app))
        super().__init__(transport=transport, base_url="http://testserver")
        self.app = app


def settings_for_tests(**overrides: Any) -> Settings:
    # No hand-out journal unless a test asks for one (with its own data_dir): it would
    # write under ./var otherwise.
    overrides.setdefault("journal", False)
    # Tests fire requests faster than a client should: rate limits only where a test
    # asks for them (tests/integration/test_limits.py).
    overrides.setdefault("rate_limit_pos", 0)
    overrides.setdefault("rate_limit_user", 0)
    overrides.setdefault("rate_limit_mcp", 0)
    # The suite's webhook receivers listen on 127.0.0.1 (tests/unit/test_destinations.py
    # tests the refusal).
    overrides.setdefault("webhook_allow_private", True)
    return load_settings({}, root_key=ROOT_KEY, **overrides)


def journaled_settings(url: str, data_dir: Path, **overrides: Any) -> Settings:
    """Settings of an app on the Redis at ``url`` that journals under ``data_dir`` (no
    delivery worker: the tests read the outbox themselves)."""
    overrides.setdefault("redis_max_connections", 16)
    return settings_for_tests(
        redis_url=url, data_dir=str(data_dir), journal=True, notify=False, **overrides
    )


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ROOT = auth(ROOT_KEY)


@asynccontextmanager
async def serve_app(app: Litestar) -> AsyncIterator[Client]:
    async with app.lifespan(), Client(app) as client:
        yield client


@asynccontextmanager
async def app_client(redis: Redis, **overrides: Any) -> AsyncIterator[Client]:
    async with serve_app(create_app(settings_for_tests(**overrides), client=redis)) as client:
        yield client


class Tenant(msgspec.Struct, kw_only=True):
    """A project with an admin and a pos key, as the tests use it."""

    id: str
    admin: dict[str, str]
    pos: dict[str, str]
    project: dict[str, Any]


async def make_tenant(client: Client, project_id: str = "acme") -> Tenant:
    r = await client.post(
        "/v1/projects", json={"id": project_id, "name": project_id.title()}, headers=ROOT
    )
    assert r.status_code == 201, r.text
    project = r.json()
    keys = {}
    for role in ("admin", "pos"):
        k = await client.post(
            f"/v1/projects/{project_id}/keys", json={"role": role, "name": role}, headers=ROOT
        )
        assert k.status_code == 201, k.text
        keys[role] = auth(k.json()["key"])
    return Tenant(id=project_id, admin=keys["admin"], pos=keys["pos"], project=project)


async def make_pool(
    client: Client, tenant: Tenant, codes: list[str] | None = None, **fields: Any
) -> dict[str, Any]:
    body = {"name": fields.pop("name", "pool-1"), **fields}
    r = await client.post(f"/v1/projects/{tenant.id}/pools", json=body, headers=tenant.admin)
    assert r.status_code == 201, r.text
    pool: dict[str, Any] = r.json()
    if codes:
        u = await client.post(
            f"/v1/projects/{tenant.id}/pools/{pool['id']}/codes",
            content="\n".join(codes),
            headers={**tenant.admin, "Content-Type": "text/plain"},
        )
        assert u.status_code == 200, u.text
    return pool


def user_token(
    tenant: Tenant, user_id: str, *, ttl: float | None = 3600, secret: str | None = None
) -> dict[str, str]:
    """Authorization header of a user JWT (HS256, signed with the project's secret)."""
    claims: dict[str, Any] = {"sub": user_id}
    if ttl is not None:
        claims["exp"] = int(time.time() + ttl)
    return auth(
        jwt.encode(claims, secret or tenant.project["user_token_secret"], algorithm="HS256")
    )


async def make_reward(
    client: Client, tenant: Tenant, pool_id: str, **fields: Any
) -> dict[str, Any]:
    body = {"name": fields.pop("name", "Reward"), "pool_id": pool_id, **fields}
    r = await client.post(f"/v1/projects/{tenant.id}/rewards", json=body, headers=tenant.admin)
    assert r.status_code == 201, r.text
    reward: dict[str, Any] = r.json()
    return reward


WORKERS = 3


async def app_workers(
    stack: AsyncExitStack, redis_url: str, count: int = WORKERS, **overrides: Any
) -> list[Client]:
    """Independent apps on one Redis, as `codepool serve` workers are: each with its own
    connection pool, issuer and caches."""
    overrides.setdefault("redis_max_connections", 16)
    return [
        await stack.enter_async_context(
            serve_app(create_app(settings_for_tests(redis_url=redis_url, **overrides)))
        )
        for _ in range(count)
    ]
