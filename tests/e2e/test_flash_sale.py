"""A flash sale against a real `codepool serve` (2 workers, its embedded Redis)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from tests.servers import ServeProcess, SpreadTransport, start_serve

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeProcess]:
    with start_serve(tmp_path / "data", workers=2) as s:
        yield s


async def _client(server: ServeProcess) -> httpx.AsyncClient:
    transport = SpreadTransport(200)  # one pool of 200 spent seconds of our CPU
    return httpx.AsyncClient(
        base_url=server.url, transport=transport, timeout=30.0, trust_env=False
    )


async def _setup(
    c: httpx.AsyncClient, root: str, codes: int
) -> tuple[dict[str, str], str, str, str]:
    root_h = {"Authorization": f"Bearer {root}"}
    project = (
        await c.post("/v1/projects", json={"id": "shop", "name": "Shop"}, headers=root_h)
    ).json()
    key = (
        await c.post("/v1/projects/shop/keys", json={"role": "admin", "name": "a"}, headers=root_h)
    ).json()
    admin = {"Authorization": f"Bearer {key['key']}"}
    pool = (await c.post("/v1/projects/shop/pools", json={"name": "sale"}, headers=admin)).json()

    async def body() -> AsyncIterator[bytes]:
        # Streamed in pieces, as a large paste or export would arrive.
        for start in range(0, codes, 10_000):
            yield "".join(
                f"SALE-{i:07d}\n" for i in range(start, min(start + 10_000, codes))
            ).encode()

    up = await c.post(
        f"/v1/projects/shop/pools/{pool['id']}/codes",
        content=body(),
        headers={**admin, "Content-Type": "text/plain"},
    )
    assert up.status_code == 200, up.text
    assert up.json()["added"] == codes
    reward = (
        await c.post(
            "/v1/projects/shop/rewards", json={"name": "r", "pool_id": pool["id"]}, headers=admin
        )
    ).json()
    return admin, pool["id"], reward["id"], project["user_token_secret"]


async def test_hundreds_in_flight_across_workers_never_double_issue(server: ServeProcess) -> None:
    async with await _client(server) as c:
        admin, pool_id, reward_id, secret = await _setup(c, server.root_key, 39_400)
        # Drain most of the pool first through bulk issues, so the race below is for the last codes.
        bulk = await asyncio.gather(
            *(
                c.post(
                    f"/v1/projects/shop/pools/{pool_id}/issue", json={"count": 1000}, headers=admin
                )
                for _ in range(39)
            )
        )
        told = [code["code"] for r in bulk for code in r.json()["codes"]]
        assert len(told) == 39_000

        tokens = [
            jwt.encode(
                {"sub": f"fan-{i}", "exp": int(time.time()) + 3600}, secret, algorithm="HS256"
            )
            for i in range(700)
        ]
        responses = await asyncio.gather(
            *(
                c.post(
                    f"/v1/projects/shop/rewards/{reward_id}/purchase",
                    headers={"Authorization": f"Bearer {t}"},
                )
                for t in tokens
            )
        )
        statuses = Counter(r.status_code for r in responses)
        assert statuses == {201: 400, 409: 300}, statuses
        told += [r.json()["code"] for r in responses if r.status_code == 201]
        assert len(told) == len(set(told)) == 39_400, "a code was handed out twice"
        pool = (await c.get(f"/v1/projects/shop/pools/{pool_id}", headers=admin)).json()
        assert (pool["total"], pool["available"], pool["assigned"], pool["redeemed"]) == (
            39_400,
            0,
            39_400,
            0,
        )
