"""A hold outlives a restart of `codepool serve`: the restarted server gives it back."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.servers import start_serve

pytestmark = pytest.mark.e2e


def test_a_hold_made_before_a_restart_expires_after_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with start_serve(data_dir, workers=2) as server:
        root = {"Authorization": f"Bearer {server.root_key}"}
        with httpx.Client(base_url=server.url, trust_env=False, timeout=10) as c:
            assert c.post("/v1/projects", json={"id": "shop", "name": "Shop"}, headers=root)
            key = c.post(
                "/v1/projects/shop/keys", json={"role": "admin", "name": "a"}, headers=root
            )
            admin = {"Authorization": f"Bearer {key.json()['key']}"}
            pool = c.post("/v1/projects/shop/pools", json={"name": "p"}, headers=admin).json()
            c.post(
                f"/v1/projects/shop/pools/{pool['id']}/codes",
                content="E1\nE2",
                headers={**admin, "Content-Type": "text/plain"},
            )
            r = c.post(
                f"/v1/projects/shop/pools/{pool['id']}/issue",
                json={"hold_seconds": 4},
                headers=admin,
            )
            held = r.json()["codes"][0]
        assert server.terminate() == 0, server.log_tail()
    with (
        start_serve(data_dir, workers=2) as server,
        httpx.Client(base_url=server.url, trust_env=False, timeout=10) as c,
    ):
        up = time.time()
        check = {"code": held["code"]}
        v = c.post("/v1/projects/shop/codes/validate", json=check, headers=admin).json()
        if up < held["hold_expires_at"] - 0.2:  # (a slow start may take longer than the hold)
            assert v["hold_expires_at"] == held["hold_expires_at"] and v["status"] == "assigned"
        while v["status"] == "assigned":
            assert time.time() < max(up, held["hold_expires_at"]) + 1.0, v
            time.sleep(0.05)
            v = c.post("/v1/projects/shop/codes/validate", json=check, headers=admin).json()
        assert v["reason"] == "not_issued"
        events = c.get("/v1/projects/shop/events?type=VOUCHER_RELEASED", headers=admin).json()
        assert [(e["code"], e["reason"]) for e in events["data"]] == [
            (held["code"], "hold_expired")
        ]
