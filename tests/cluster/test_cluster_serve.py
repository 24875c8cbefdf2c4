"""`codepool serve` as a process, CODEPOOL_REDIS_URL naming one node of the cluster
(before: it died at start with MovedError): it finds the cluster and serves."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from loadtest.cluster import LocalCluster

from tests.servers import start_serve

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]


def test_serve_on_any_node_of_the_cluster(
    tmp_path: Path, cluster_url: str, redis_cluster: LocalCluster
) -> None:
    # Not the node the fixture's URL names: any node will do, a replica too.
    url = f"redis://127.0.0.1:{redis_cluster.ports[-1]}"
    # Default settings: the durability layer's start (EPOCH check) runs on the cluster too.
    with start_serve(tmp_path / "data", workers=2, redis_url=url) as server:
        root = {"Authorization": f"Bearer {server.root_key}"}
        with httpx.Client(base_url=server.url, trust_env=False, timeout=10) as http:
            assert http.get("/readyz").status_code == 200
            codes_by_shop = {}
            for n in range(4):
                shop = f"shop{n}"
                assert (
                    http.post(
                        "/v1/projects", json={"id": shop, "name": shop}, headers=root
                    ).status_code
                    == 201
                )
                pool = http.post(
                    f"/v1/projects/{shop}/pools", json={"name": "p"}, headers=root
                ).json()
                upload = http.post(
                    f"/v1/projects/{shop}/pools/{pool['id']}/codes",
                    content="\n".join(f"{shop}-{i}" for i in range(20)),
                    headers={**root, "Content-Type": "text/plain"},
                )
                assert upload.status_code == 200, upload.text
                issued = http.post(
                    f"/v1/projects/{shop}/pools/{pool['id']}/issue", json={"count": 5}, headers=root
                )
                assert issued.status_code == 200, issued.text
                codes = [c["code"] for c in issued.json()["codes"]]
                redeemed = http.post(
                    f"/v1/projects/{shop}/codes/redeem", json={"code": codes[0]}, headers=root
                )
                assert redeemed.status_code == 200, redeemed.text
                p = http.get(f"/v1/projects/{shop}/pools/{pool['id']}", headers=root).json()
                assert (p["available"], p["assigned"], p["redeemed"]) == (15, 4, 1)
                codes_by_shop[shop] = codes
            listed = http.get("/v1/projects", headers=root).json()
            assert sorted(x["id"] for x in listed["data"]) == sorted(codes_by_shop)
        assert server.terminate() == 0, server.log_tail()
