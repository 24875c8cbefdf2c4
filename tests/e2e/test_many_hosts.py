"""Two `codepool serve` hosts, each with its own data directory, against one real Redis.

Both sell; Redis loses everything; no host restores alone (each lacks the other's
journal); `codepool restore` with the snapshot and both journals brings back one exact
state. And one host at a time takes the snapshots; another takes over when it dies.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from redis.asyncio import Redis

from codepool import keys
from tests.servers import ServeProcess, serve_env, start_serve

pytestmark = pytest.mark.e2e

CODES = 600
BUYERS = 120  # per host
ENV = {"CODEPOOL_SNAPSHOT_INTERVAL": "3600"}


def _client(server: ServeProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, timeout=30.0, trust_env=False)


def _cli(data_dir: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "codepool", *args],
        env=serve_env(data_dir, redis_url=url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _host_id(data_dir: Path) -> str:
    return (data_dir / "host-id").read_text().strip()


async def _wait(predicate: Callable[[], bool], what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


class Shop:
    async def setup(self, c: httpx.AsyncClient, root: str) -> None:
        h = {"Authorization": f"Bearer {root}"}
        project = (await c.post("/v1/projects", json={"id": "shop", "name": "S"}, headers=h)).json()
        self.secret = project["user_token_secret"]
        r = await c.post("/v1/projects/shop/keys", json={"role": "admin", "name": "a"}, headers=h)
        self.admin = {"Authorization": f"Bearer {r.json()['key']}"}
        pool = await c.post("/v1/projects/shop/pools", json={"name": "p"}, headers=self.admin)
        self.pool_id = pool.json()["id"]
        up = await c.post(
            f"/v1/projects/shop/pools/{self.pool_id}/codes",
            content="\n".join(f"H-{i:05d}" for i in range(CODES)),
            headers={**self.admin, "Content-Type": "text/plain"},
        )
        assert up.status_code == 200, up.text
        reward = await c.post(
            "/v1/projects/shop/rewards",
            json={"name": "r", "pool_id": self.pool_id, "per_user_limit": 1},
            headers=self.admin,
        )
        self.reward_id = reward.json()["id"]

    def user(self, name: str) -> dict[str, str]:
        token = jwt.encode(
            {"sub": name, "exp": int(time.time()) + 3600}, self.secret, algorithm="HS256"
        )
        return {"Authorization": f"Bearer {token}"}

    async def buy(self, c: httpx.AsyncClient, name: str) -> httpx.Response:
        return await c.post(
            f"/v1/projects/shop/rewards/{self.reward_id}/purchase", headers=self.user(name)
        )

    async def pool(self, c: httpx.AsyncClient) -> dict[str, Any]:
        r = await c.get(f"/v1/projects/shop/pools/{self.pool_id}", headers=self.admin)
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result


async def test_two_hosts_sell_redis_loses_everything_restore_takes_both_journals(
    tmp_path: Path, real_redis: Redis, redis_server_url: str
) -> None:
    url = redis_server_url
    data_a, data_b = tmp_path / "a" / "data", tmp_path / "b" / "data"
    with (
        start_serve(data_a, workers=1, env=ENV, redis_url=url) as a,
        start_serve(data_b, workers=1, env=ENV, redis_url=url) as b,
    ):
        shop = Shop()
        async with _client(a) as ca, _client(b) as cb:
            await shop.setup(ca, a.root_key)
            # The base snapshot (the taker's first one predates the shop).
            snap = _cli(data_a, url, "snapshot")
            assert snap.returncode == 0, snap.stderr
            snapshot = Path(snap.stdout.split("\t")[0])

            # Both hosts sell: purchases and admin issues on each.
            told: dict[str, str] = {}  # buyer -> code

            async def buy(c: httpx.AsyncClient, name: str) -> None:
                r = await shop.buy(c, name)
                assert r.status_code == 201, r.text
                told[name] = r.json()["code"]

            await asyncio.gather(
                *(buy(ca, f"a{i}") for i in range(BUYERS)),
                *(buy(cb, f"b{i}") for i in range(BUYERS)),
            )
            issued: list[str] = []
            for c in (ca, cb, ca, cb):
                r = await c.post(
                    f"/v1/projects/shop/pools/{shop.pool_id}/issue",
                    json={"count": 5},
                    headers=shop.admin,
                )
                assert r.status_code == 200, r.text
                issued += [x["code"] for x in r.json()["codes"]]
            # Bought on one host, given back on the other (Redis's clock orders the two
            # journals' records: the release comes after the purchase).
            released = [f"a{i}" for i in range(10)]
            for name in released:
                r = await cb.post(
                    "/v1/projects/shop/codes/release",
                    json={"code": told.pop(name)},
                    headers=shop.admin,
                )
                assert r.status_code == 200, r.text
            assert len(set(told.values()) | set(issued)) == len(told) + len(issued)

            # Redis loses everything. Neither host restores alone: each lacks the other's
            # journal; meanwhile nothing is sold.
            await real_redis.flushall()
            await _wait(
                lambda: "not restoring it" in a.log_tail() + b.log_tail(),
                "a host to refuse the restore",
            )
            assert (await shop.buy(cb, "late")).status_code != 201
            assert not await real_redis.exists(keys.EPOCH)

            restored = _cli(
                data_a, url, "restore", str(snapshot), "--force", "--journal-dir", str(data_b)
            )
            assert restored.returncode == 0, restored.stderr
            assert "journal record(s)" in restored.stdout, restored.stdout

            # One exact state, seen from both hosts.
            pool = await shop.pool(cb)
            holders = len(told) + len(issued)
            assert (pool["total"], pool["assigned"], pool["redeemed"]) == (CODES, holders, 0)
            assert pool["available"] == CODES - holders
            for code in [*told.values(), *issued]:
                # (admin: the pos role is rate-limited)
                r = await ca.post(
                    "/v1/projects/shop/codes/validate", json={"code": code}, headers=shop.admin
                )
                assert r.json()["status"] == "assigned", r.text
            # Per-user counts: a buyer whose code went back may buy again, a holder not.
            assert (await shop.buy(ca, released[0])).status_code == 201
            held = await shop.buy(cb, "b0")
            assert held.status_code == 409 and held.json()["error"]["code"] == (
                "per_user_limit_reached"
            )
            # Drain from both hosts: nothing anybody holds comes out again.
            drained: list[str] = []
            turn = 0
            while (available := (await shop.pool(ca))["available"]) > 0:
                turn += 1
                r = await (ca, cb)[turn % 2].post(
                    f"/v1/projects/shop/pools/{shop.pool_id}/issue",
                    json={"count": min(available, 25)},
                    headers=shop.admin,
                )
                assert r.status_code == 200, r.text
                drained += [x["code"] for x in r.json()["codes"]]
            assert len(drained) == len(set(drained)) == CODES - holders - 1
            assert not set(drained) & (set(told.values()) | set(issued))
        assert a.terminate() == 0
        assert b.terminate() == 0


async def test_one_host_takes_snapshots_and_another_takes_over_when_it_dies(
    tmp_path: Path, real_redis: Redis, redis_server_url: str
) -> None:
    env = {"CODEPOOL_SNAPSHOT_INTERVAL": "0.3", "CODEPOOL_SNAPSHOT_LEASE": "2"}
    data_a, data_b = tmp_path / "a" / "data", tmp_path / "b" / "data"

    def snapshots(data_dir: Path) -> int:
        return len(list((data_dir / "snapshots").glob("snapshot-*.cps")))

    with (
        start_serve(data_a, workers=1, env=env, redis_url=redis_server_url) as a,
        start_serve(data_b, workers=1, env=env, redis_url=redis_server_url) as b,
    ):
        # The first host holds the lease; the second registers and waits.
        await _wait(lambda: snapshots(data_a) >= 3, "snapshots on a")
        await asyncio.sleep(1.0)
        assert snapshots(data_b) == 0
        assert (await real_redis.get(keys.SNAPSHOT_TAKER)) == _host_id(data_a).encode()
        assert set(await real_redis.hkeys(keys.HOSTS)) == {
            _host_id(data_a).encode(),
            _host_id(data_b).encode(),
        }
        # It dies (no lease given up): the other takes over once the lease runs out.
        a.kill()
        died = time.monotonic()
        await _wait(lambda: snapshots(data_b) >= 1, "snapshots on b")
        assert time.monotonic() - died < 2.0 + 3.0
        assert (await real_redis.get(keys.SNAPSHOT_TAKER)) == _host_id(data_b).encode()
        assert "takes the snapshots" in b.log_tail()
        assert b.terminate() == 0
