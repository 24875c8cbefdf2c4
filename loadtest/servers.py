"""Which ASGI server should run codepool? The same app under each, measured in one run.

    python -m loadtest.servers                    # every server below, 8 s per rate run
    python -m loadtest.servers --seconds 4 --only granian,granian-uvloop

Starts one embedded Redis, then, one server at a time, runs the app factory
(codepool.app:create_app_from_env) under that server's own command line with the same
settings (2 workers; journal and snapshots off, so the server is what differs), and
drives /healthz, single-code pool/issue and purchase with the client of
loadtest/bench.py (wrk if installed; --client). Prints requests per second and the
ratio of each hand-out route to the same server's /healthz.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec
import redis

from codepool.embedded import EmbeddedRedis
from loadtest.bench import (
    HOST,
    ROOT_KEY,
    Bench,
    Run,
    add_client_argument,
    client_name,
    free_port,
    stop,
)

FACTORY = "codepool.app:create_app_from_env"


# name -> (a module it needs, skipped if missing; argv after the interpreter, before the
# address options of _ADDRESS, where {port} and {workers} are filled in).
SERVERS: dict[str, tuple[str, list[str]]] = {
    "granian": (
        "granian",
        ["-m", "granian", "--interface", "asgi", "--factory", "--loop", "asyncio"],
    ),
    "granian-uvloop": (
        "uvloop",
        ["-m", "granian", "--interface", "asgi", "--factory", "--loop", "uvloop"],
    ),
    "uvicorn": (
        "uvicorn",
        ["-m", "uvicorn", "--factory", "--loop", "asyncio", "--http", "h11"],
    ),
    "uvicorn-httptools-uvloop": (
        "httptools",
        ["-m", "uvicorn", "--factory", "--loop", "uvloop", "--http", "httptools"],
    ),
}
_ADDRESS = {
    "granian": ["--host", HOST, "--port", "{port}", "--workers", "{workers}"],
    "uvicorn": ["--host", HOST, "--port", "{port}", "--workers", "{workers}", "--no-access-log"],
}


class Row(msgspec.Struct):
    server: str
    healthz: float
    issue_ratio: float  # to the /healthz rate measured interleaved with it
    purchase_ratio: float


def launch(
    name: str, port: int, workers: int, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    _, argv = SERVERS[name]
    program = argv[1]
    address = [a.format(port=port, workers=workers) for a in _ADDRESS[program]]
    return subprocess.Popen(
        [sys.executable, *argv, *address, FACTORY],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://{HOST}:{port}/healthz", trust_env=False).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit("server did not start")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated subset of the servers")
    add_client_argument(parser)
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a CODEPOOL_* setting for every server, e.g. --env CODEPOOL_SNAPSHOT_INTERVAL=60",
    )
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(SERVERS)
    unknown = set(names) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}; known: {', '.join(SERVERS)}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="codepool-servers-") as tmp:
        data_dir = Path(tmp)
        with EmbeddedRedis(data_dir / "redis") as embedded:
            r = redis.Redis.from_url(embedded.url)
            env = {k: v for k, v in os.environ.items() if not k.startswith("CODEPOOL_")}
            env.update(
                CODEPOOL_DATA_DIR=str(data_dir),
                CODEPOOL_ROOT_KEY=ROOT_KEY,
                CODEPOOL_REDIS_URL=embedded.url,
                CODEPOOL_LOG_LEVEL="WARNING",
                CODEPOOL_SNAPSHOT_INTERVAL="0",
            )
            env.update(item.split("=", 1) for item in args.env)
            print(
                f"codepool servers: {os.cpu_count()} cores, {args.workers} workers, "
                f"{args.connections} connections, {args.seconds:g} s per rate run"
            )
            for name in names:
                module = SERVERS[name][0]
                if importlib.util.find_spec(module) is None:
                    print(f"{name}: skipped ({module} is not installed)")
                    continue
                r.flushall()
                port = free_port()
                proc = launch(name, port, args.workers, env, data_dir / f"{name}.log")
                try:
                    wait_ready(port, proc)
                    b = Bench(port, args, r)
                    print(f"-- {name} (load from {client_name(b)})")
                    run = Run(b, r, args, proc.pid)
                    run.health()
                    run.single_issue()
                    run.purchase()
                    issue, issue_health = run.rates["pool/issue"]
                    purchase, purchase_health = run.rates["purchase"]
                    rows.append(
                        Row(name, run.health_rate, issue / issue_health, purchase / purchase_health)
                    )
                finally:
                    stop(proc)
    print(f"\n{'server':<26} {'/healthz req/s':>14}  issue/healthz  purchase/healthz")
    for row in rows:
        print(
            f"{row.server:<26} {row.healthz:>14,.0f}  {row.issue_ratio:>13.2f}"
            f"  {row.purchase_ratio:>16.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
