"""Run ``codepool serve`` as a real process for end-to-end tests.

``start_serve`` starts it in its own process group with its own environment and returns
once ``GET /healthz`` answers 200. Use the result as a context manager so a failing test
never leaves a server (or its redis-server) behind.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from codepool.embedded_binary import JEMALLOC
from codepool.embedded_recovery import redis_servers_in

__all__ = [
    "ServeError",
    "ServeProcess",
    "SpreadTransport",
    "descendants",
    "free_port",
    "group_members",
    "pid_alive",
    "serve_env",
    "serve_processes",
    "start_serve",
    "wait_gone",
]

ROOT_KEY = "test-root-key-for-the-e2e-servers-0123456789"
_LOG_TAIL_LINES = 40


class SpreadTransport(httpx.AsyncBaseTransport):
    """``connections`` connections in all, split over small connection pools taken in turn.

    httpcore's pool walks all its connections and waiting requests on every request and
    response, so one pool of hundreds of connections made the test process, not the
    server, the bottleneck of an e2e sale (800 purchases on 300 connections: 6.8 s; on
    ten pools of 30: 1.8 s). The same number of requests is in flight either way. Give
    it to ``httpx.AsyncClient(transport=...)``; the client closes it.
    """

    def __init__(self, connections: int, per_pool: int = 30) -> None:
        count = -(-connections // per_pool)
        sizes = [connections // count + (i < connections % count) for i in range(count)]
        self._pools = [
            httpx.AsyncHTTPTransport(
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size)
            )
            for size in sizes
        ]
        self._turns = itertools.cycle(self._pools)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await next(self._turns).handle_async_request(request)

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


class ServeError(RuntimeError):
    """``codepool serve`` did not come up (the message holds the tail of its output)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def runs_on_jemalloc(pid: int | None) -> bool:
    """Whether process ``pid`` has jemalloc mapped (the embedded Redis preloads it where
    the system has it: codepool.embedded_binary.find_jemalloc); False if it is gone."""
    maps = Path(f"/proc/{pid}/maps")
    return maps.exists() and JEMALLOC in maps.read_text()


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process; a zombie counts as dead.

    Processes reparented to an init that does not reap (as in some containers) stay
    zombies forever, yet they are gone for every purpose here.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def _proc_table() -> list[tuple[int, int, int]]:
    """(pid, ppid, pgid) of every live process, from /proc (zombies left out)."""
    table: list[tuple[int, int, int]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in {"Z", "X"}:
            table.append((int(entry.name), int(fields[1]), int(fields[2])))
    return table


def descendants(pid: int) -> list[int]:
    """Pids of all live processes below ``pid`` (children, grandchildren...), via /proc."""
    children: dict[int, list[int]] = {}
    for child, ppid, _ in _proc_table():
        children.setdefault(ppid, []).append(child)
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return sorted(found)


def group_members(pgid: int) -> list[int]:
    """Pids of the live processes in process group ``pgid`` (orphans keep their group)."""
    return sorted(pid for pid, _, group in _proc_table() if group == pgid)


def serve_processes(data_dir: Path) -> list[int]:
    """Live pids of every process of the ``codepool serve`` that uses ``data_dir``.

    The server and its workers are found by the CODEPOOL_DATA_DIR in their environment
    (so also a worker orphaned or forked late), its redis-server by working directory.
    """
    wanted = f"CODEPOOL_DATA_DIR={data_dir}".encode()
    found = set(redis_servers_in(data_dir / "redis"))
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if wanted in environ.split(b"\0") and pid_alive(int(entry.name)):
            found.add(int(entry.name))
    return sorted(found)


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Poll until none of ``pids`` is alive or ``timeout`` passes; returns the survivors.

    Polling, because they are not our children: there is nothing to wait() on.
    """
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if pid_alive(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


class ServeProcess:
    """A running ``codepool serve``; ``url`` is its base URL (no trailing slash)."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        *,
        url: str,
        root_key: str,
        data_dir: Path,
        log_path: Path,
        embedded_redis: bool,
    ) -> None:
        self.process = process
        self.url = url
        self.root_key = root_key
        self.data_dir = data_dir
        self.log_path = log_path
        # Whether it started its own redis-server (no CODEPOOL_REDIS_URL given).
        self.embedded_redis = embedded_redis

    @property
    def pid(self) -> int:
        return self.process.pid

    def __repr__(self) -> str:
        return f"ServeProcess(pid={self.pid}, url={self.url!r})"

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the server's stdout and stderr."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no output)"
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait for the exit code; if it does not exit in time, kill() and raise.

        Raises subprocess.TimeoutExpired so a test that expects a graceful stop fails.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL the server, its workers and its redis-server, and reap the server.

        The embedded redis-server runs in a process group of its own (see embedded.py), so
        killing the server's group alone would spare it: it is killed by pid as well.
        """
        below = sorted(set(self._own_processes()) - {self.pid})
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # start_new_session: its pgid is its pid
        for pid in below:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()
        survivors = wait_gone(below, timeout=10.0)
        if survivors:
            raise ServeError(f"processes {survivors} survived SIGKILL")

    def _own_processes(self) -> list[int]:
        """Everything of this server still alive, including what it orphaned already.

        Its workers are in its process group (kept when orphaned); its embedded
        redis-server in a group of its own, found by working directory instead.
        """
        own = set(group_members(self.pid))
        if self.process.poll() is None:
            own.update(descendants(self.pid))
        if self.embedded_redis:
            own.update(redis_servers_in(self.data_dir / "redis"))
        return sorted(own)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Whatever the test did: nothing of this server may outlive it.
        if self.process.poll() is None or self._own_processes():
            self.kill()


def serve_env(
    data_dir: Path, *, env: dict[str, str] | None = None, redis_url: str | None = None
) -> dict[str, str]:
    """The environment ``start_serve`` gives the server.

    Starts from ours without any CODEPOOL_* variable, so a developer's settings never
    leak into a test; ``env`` is applied last and may override anything.
    """
    result = {k: v for k, v in os.environ.items() if not k.startswith("CODEPOOL_")}
    result.update(
        CODEPOOL_DATA_DIR=str(data_dir),
        CODEPOOL_ROOT_KEY=ROOT_KEY,
        # The suite's webhook receivers listen on 127.0.0.1.
        CODEPOOL_WEBHOOK_ALLOW_PRIVATE="1",
        # Complete output in the log when a test fails.
        PYTHONUNBUFFERED="1",
    )
    if redis_url is not None:
        result["CODEPOOL_REDIS_URL"] = redis_url
    result.update(env or {})
    return result


def start_serve(
    data_dir: Path,
    *,
    workers: int = 2,
    env: dict[str, str] | None = None,
    redis_url: str | None = None,
    timeout: float = 30.0,
    asgi_server: str | None = None,
) -> ServeProcess:
    """Start ``python -m codepool serve`` on a free port and wait for ``GET /healthz`` = 200.

    Without ``redis_url`` the server starts its embedded Redis under ``data_dir/redis``.
    Its output goes to ``data_dir.parent / "serve-<port>.log"`` (outside data_dir, which
    belongs to the server).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = data_dir.parent / f"serve-{port}.log"
    full_env = serve_env(data_dir, env=env, redis_url=redis_url)
    argv = [sys.executable, "-m", "codepool", "serve", "--port", str(port)]
    argv += ["--workers", str(workers)]
    if asgi_server is not None:
        argv += ["--server", asgi_server]
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            argv,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Own session and process group: kill() can take the whole tree down, and a
            # Ctrl-C of the test run does not reach it before the fixtures clean up.
            start_new_session=True,
        )
    server = ServeProcess(
        process,
        url=f"http://127.0.0.1:{port}",
        root_key=full_env["CODEPOOL_ROOT_KEY"],
        data_dir=data_dir,
        log_path=log_path,
        embedded_redis=not full_env.get("CODEPOOL_REDIS_URL"),
    )
    try:
        _wait_healthy(server, timeout)
    except BaseException:
        server.kill()
        raise
    return server


def _wait_healthy(server: ServeProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    # trust_env=False: a proxy from the environment must not see requests to 127.0.0.1.
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            code = server.process.poll()
            if code is not None:
                raise ServeError(
                    f"codepool serve exited with code {code} before /healthz answered:\n"
                    f"{server.log_tail()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if client.get(f"{server.url}/healthz").status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise ServeError(
                    f"codepool serve gave no 200 on /healthz within {timeout:g} s:\n"
                    f"{server.log_tail()}"
                )
            # Pause, but notice at once if it dies meanwhile.
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(0.05)
