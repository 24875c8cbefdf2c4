"""A third-party fuzzer finds nothing: schemathesis against a real `codepool serve`.

It reads /schema/openapi.json, then sends generated requests (its coverage phase: every
boundary and negative case of each parameter and body; its fuzzing phase: random valid
ones) as root, and fails on any 5xx, any status the document does not list for the
operation, and any answer that does not match the document's schema.

A project with a pool of codes, a reward and handed-out codes is made first, and the
fuzzer draws path ids and codes from them most of the time, so it reaches past the
404s into the routes' own logic. Seeded, one worker and bounded examples: the same
requests on every run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import ServeProcess, start_serve

pytestmark = pytest.mark.e2e

CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"
SEED = 20261204
MAX_EXAMPLES = 30
CODES = [f"ST-{i:05d}" for i in range(500)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeProcess]:
    with start_serve(tmp_path / "data", workers=1) as s:
        yield s


def _seed(server: ServeProcess) -> str:
    """A project to fuzz in; answers its pool's id (the server picks it)."""
    root = {"Authorization": f"Bearer {server.root_key}"}
    with httpx.Client(base_url=server.url, headers=root, timeout=30, trust_env=False) as c:
        assert c.post("/v1/projects", json={"id": "st", "name": "fuzz"}).status_code == 201
        pool = c.post("/v1/projects/st/pools", json={"name": "p1"}).json()["id"]
        up = c.post(
            f"/v1/projects/st/pools/{pool}/codes",
            content="\n".join(CODES),
            headers={"Content-Type": "text/plain"},
        )
        assert up.status_code == 200, up.text
        reward = c.post("/v1/projects/st/rewards", json={"id": "r1", "name": "R", "pool_id": pool})
        assert reward.status_code == 201, reward.text
        # Some codes assigned (to u1) and one redeemed, so the pos routes meet every status.
        issued = c.post(f"/v1/projects/st/pools/{pool}/issue", json={"count": 20, "user_id": "u1"})
        assert issued.status_code == 200, issued.text
        redeemed = c.post("/v1/projects/st/codes/redeem", json={"code": CODES[0]})
        assert redeemed.status_code == 200, redeemed.text
    return str(pool)


def _config(pool: str) -> str:
    codes = ", ".join(f'"{c}"' for c in [*CODES[:3], CODES[19], CODES[20], CODES[400]])
    return f"""
[dictionaries]
projects = {{ values = ["st"] }}
pools = {{ values = ["{pool}"] }}
rewards = {{ values = ["r1"] }}
users = {{ values = ["u1"] }}
codes = {{ values = [{codes}] }}

[parameters]
"path.project_id" = {{ dictionary = "projects", probability = 0.9 }}
"path.pool_id" = {{ dictionary = "pools", probability = 0.8 }}
"path.reward_id" = {{ dictionary = "rewards", probability = 0.8 }}
"path.user_id" = {{ dictionary = "users", probability = 0.5 }}
"body.code" = {{ dictionary = "codes", probability = 0.7 }}
"""


def test_schemathesis_finds_nothing(server: ServeProcess, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(_seed(server)))
    argv = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{server.url}/schema/openapi.json",
        "--header",
        f"Authorization: Bearer {server.root_key}",
        "--checks",
        CHECKS,
        "--phases",
        "coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--no-color",
    ]
    run = subprocess.run(
        argv, cwd=tmp_path, capture_output=True, text=True, timeout=55, check=False
    )
    assert run.returncode == 0, (
        f"{run.stdout[-20000:]}\n{run.stderr[-3000:]}\nserver log:\n{server.log_tail()}"
    )
    # Every generated case passed, and there were cases for every operation.
    assert re.search(r"(\d+) generated, \1 passed", run.stdout), run.stdout[-3000:]
    selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", run.stdout)
    assert selected and len(set(selected.groups())) == 1, run.stdout[-3000:]
