"""`codepool serve` as a process: it starts, serves, and leaves nothing behind when stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from codepool.embedded_recovery import redis_servers_in
from tests.servers import (
    descendants,
    free_port,
    pid_alive,
    serve_env,
    serve_processes,
    start_serve,
    wait_gone,
)

pytestmark = pytest.mark.e2e


def test_sigterm_stops_workers_then_the_embedded_redis(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with start_serve(data_dir, workers=2) as server:
        response = httpx.get(f"{server.url}/healthz", trust_env=False)
        assert response.status_code == 200
        redis_pids = redis_servers_in(data_dir / "redis")
        assert len(redis_pids) == 1, "serve must start exactly one embedded redis-server"
        children = descendants(server.pid)
        assert set(redis_pids) < set(children)  # redis plus the workers

        exit_code = server.terminate(timeout=15.0)

        assert exit_code == 0, server.log_tail()
        # serve stops (and reaps) redis and its workers before exiting: nothing to wait for.
        assert [pid for pid in children if pid_alive(pid)] == []
        assert serve_processes(data_dir) == []
        # It said where Redis ran and what it served.
        log = server.log_tail(200)
        assert f"embedded Redis (pid {redis_pids[0]}) at unix://" in log
        assert f"serving {server.url} with 2 worker(s)" in log


def test_sigkill_of_serve_takes_redis_and_workers_down(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with start_serve(data_dir, workers=2) as server:
        children = descendants(server.pid)
        assert len(redis_servers_in(data_dir / "redis")) == 1
        # serve, 2 workers, the snapshot process (codepool.durability.loop), redis-server, and
        # multiprocessing's resource tracker (uvicorn spawns its workers)
        assert len(serve_processes(data_dir)) == 6
        # No cleanup code runs: only PR_SET_PDEATHSIG stands between us and orphans.
        os.kill(server.pid, signal.SIGKILL)
        server.process.wait()
        assert wait_gone(children, timeout=10.0) == []
        assert wait_gone(serve_processes(data_dir), timeout=10.0) == []

    # The data directory is free again (lock released, no stray server).
    with start_serve(data_dir, workers=1) as again:
        assert httpx.get(f"{again.url}/healthz", trust_env=False).status_code == 200
        assert again.terminate() == 0


def test_granian_runs_the_same_service(tmp_path: Path) -> None:
    """``--server granian``, the other ASGI server: serves, hands out, stops cleanly."""
    data_dir = tmp_path / "data"
    with start_serve(data_dir, workers=2, asgi_server="granian") as server:
        root = {"Authorization": f"Bearer {server.root_key}"}
        with httpx.Client(base_url=server.url, headers=root, trust_env=False) as http:
            assert http.post("/v1/projects", json={"id": "g", "name": "G"}).status_code == 201
            pool = http.post("/v1/projects/g/pools", json={"name": "p"}).json()["id"]
            added = http.post(
                f"/v1/projects/g/pools/{pool}/codes",
                content="A\nB\n",
                headers={"Content-Type": "text/plain"},
            )
            assert added.json()["added"] == 2
            issued = http.post(f"/v1/projects/g/pools/{pool}/issue", json={"count": 2})
            assert sorted(c["code"] for c in issued.json()["codes"]) == ["A", "B"]
        children = descendants(server.pid)
        assert server.terminate(timeout=15.0) == 0, server.log_tail()
        assert [pid for pid in children if pid_alive(pid)] == []
        assert "with 2 worker(s) (granian)" in server.log_tail(200)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CODEPOOL_SNAPSHOT_INTERVAL", "soon"),
        ("CODEPOOL_LOG_LEVEL", "loud"),
        ("CODEPOOL_ROOT_KEY", "guessable"),  # under 32 characters, and not CODEPOOL_DEV
    ],
)
def test_bad_settings_fail_fast_with_one_line(tmp_path: Path, variable: str, value: str) -> None:
    env = serve_env(tmp_path / "data", env={variable: value})
    result = subprocess.run(
        [sys.executable, "-m", "codepool", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("codepool: ")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "data" / "redis").exists()  # nothing was started


@pytest.mark.parametrize("asgi_server", ["uvicorn", "granian"])
def test_workers_that_cannot_start_make_serve_exit_1(tmp_path: Path, asgi_server: str) -> None:
    # The app's lifespan fails in every worker (a Redis URL no client can use): serve must
    # not hang or report success, whichever server runs the workers.
    env = serve_env(
        tmp_path / "data",
        env={"CODEPOOL_SNAPSHOT_INTERVAL": "0"},
        redis_url="foo://nowhere",
    )
    argv = [sys.executable, "-m", "codepool", "serve", "--port", str(free_port())]
    argv += ["--workers", "2", "--server", asgi_server]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stderr[-2000:]
