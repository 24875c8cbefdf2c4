"""A private redis-server for codepool when no ``CODEPOOL_REDIS_URL`` is configured.

``codepool serve`` starts one :class:`EmbeddedRedis` in the main process and hands its URL
to every worker, so all workers share one Redis (which holds the truth) and the server
lives exactly as long as the service. Its files (AOF, RDB, log, socket) live in one
directory; only one embedded server may use a directory at a time.

Linux is the target: the "die with the parent" guarantee (PR_SET_PDEATHSIG) and the
search for stray servers (``/proc``) are Linux-only; elsewhere both quietly do nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import redis
import redis.exceptions

from codepool.embedded_binary import (
    JEMALLOC,
    MIN_REDIS_VERSION,
    find_jemalloc,
    find_redis_server,
    redis_server_version,
)
from codepool.embedded_config import CONFIG_NAME, LOG_NAME, SOCKET_NAME, write_config
from codepool.embedded_error import EmbeddedRedisError
from codepool.embedded_lock import lock_directory, open_private, unlock
from codepool.embedded_memory import redis_maxmemory
from codepool.embedded_recovery import (
    keep_private,
    remove_temp_files,
    stop_strays,
)
from codepool.parent_death import pdeathsig_preexec

log = logging.getLogger(__name__)


# sockaddr_un.sun_path holds 108 bytes on Linux (104 on macOS); stay well below both.
_MAX_UNIX_SOCKET_PATH = 100
_LOG_TAIL_LINES = 30

RDB_NAME = "dump.rdb"


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _preload(malloc: str) -> str | None:
    """The allocator to preload into redis-server for CODEPOOL_REDIS_MALLOC (settings)."""
    if malloc == "libc":
        return None
    found = find_jemalloc()
    if found is None and malloc == "jemalloc":
        raise EmbeddedRedisError(
            f"CODEPOOL_REDIS_MALLOC=jemalloc, but no {JEMALLOC} was found "
            "(Debian: apt-get install libjemalloc2)"
        )
    return found


def _is_running(process: subprocess.Popen[bytes]) -> bool:
    return process.poll() is None


def _wait_quietly(process: subprocess.Popen[bytes], seconds: float) -> None:
    """Pause up to ``seconds``, returning at once if the process exits meanwhile."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(seconds)


class EmbeddedRedis:
    """One redis-server child process with its files in ``directory``.

    ``start()`` returns the URL to connect to: a unix socket inside ``directory`` when its
    path is short enough, else a random localhost TCP port guarded by a random password.
    ``stop()`` shuts it down gracefully (AOF fsynced; without the AOF, an RDB written),
    killing it only if it does not exit in time. Use as a context manager to have both
    done for you.
    """

    def __init__(
        self,
        directory: Path,
        *,
        appendonly: bool = True,
        unix_socket: bool = True,
        executable: str | None = None,
        maxmemory: str = "0",
        malloc: str = "auto",
    ) -> None:
        # Absolute, because redis chdirs to `dir` and resolves every other path from there,
        # and because the URL is handed to processes with other working directories.
        self.directory = Path(directory).absolute()
        self.appendonly = appendonly
        self.unix_socket = unix_socket
        self.executable = executable
        self.maxmemory = redis_maxmemory(maxmemory)
        self.preload = _preload(malloc)
        self._process: subprocess.Popen[bytes] | None = None
        self._url: str | None = None
        self._lock: IO[bytes] | None = None
        self._log_offset = 0

    # -- paths -------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.directory / CONFIG_NAME

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_NAME

    @property
    def socket_path(self) -> Path:
        return self.directory / SOCKET_NAME

    # -- state -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The redis URL of the running server; raises if it is not running."""
        if self._url is None or self._process is None:
            raise EmbeddedRedisError(f"embedded redis-server in {self.directory} is not running")
        return self._url

    @property
    def pid(self) -> int | None:
        """The redis-server pid while started, else None."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and _is_running(self._process)

    def __repr__(self) -> str:
        return f"EmbeddedRedis({str(self.directory)!r}, pid={self.pid}, url={self._url!r})"

    def __enter__(self) -> Self:
        if self._process is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- start -------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> str:
        """Start redis-server and wait until it answers PING; returns its URL.

        ``timeout`` bounds the wait for the server to accept connections. Once it does,
        replaying a large AOF/RDB takes as long as it takes (redis answers LOADING) and
        is waited for without a deadline as long as the process is alive.
        """
        if self._process is not None:
            raise EmbeddedRedisError(f"embedded redis-server in {self.directory} already started")
        executable = self.executable or find_redis_server()
        version = redis_server_version(executable)
        if version < MIN_REDIS_VERSION:
            raise EmbeddedRedisError(
                f"{executable} is Redis {'.'.join(map(str, version))}; codepool needs "
                f">= {'.'.join(map(str, MIN_REDIS_VERSION))}"
            )
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        keep_private(self.directory)
        self._lock = lock_directory(self.directory)
        try:
            stop_strays(self.directory, timeout)
            remove_temp_files(self.directory)
            return self._launch(executable, version, timeout)
        except BaseException:
            # Also on KeyboardInterrupt/SIGTERM mid-start: never leave a half-started server.
            self._terminate(timeout=5.0)
            self._release_lock()
            raise

    def _release_lock(self) -> None:
        if self._lock is not None:
            unlock(self._lock)
            self._lock = None

    def _aof_exists(self) -> bool:
        # Redis 6.2 keeps one appendonly.aof; 7.x a multi-part appendonlydir/.
        return (self.directory / "appendonly.aof").exists() or (
            self.directory / "appendonlydir"
        ).exists()

    def _launch(self, executable: str, version: tuple[int, ...], timeout: float) -> str:
        # With appendonly on, redis loads *only* the AOF at startup. A directory holding an
        # RDB but no AOF (restored from a backup, or run without AOF before) would come up
        # empty, silently dropping every code. So boot from the RDB with AOF off, then turn
        # AOF on at runtime, which rewrites the AOF from the loaded data.
        bootstrap_aof = (
            self.appendonly
            and not self._aof_exists()
            and (self.directory / RDB_NAME).is_file()
            and (self.directory / RDB_NAME).stat().st_size > 0
        )
        use_unix = self.unix_socket and len(os.fsencode(self.socket_path)) < _MAX_UNIX_SOCKET_PATH
        if self.unix_socket and not use_unix:
            log.info(
                "socket path %s is too long for a unix socket; using localhost TCP",
                self.socket_path,
            )
        # A port picked here may be taken before redis binds it; try a few.
        attempts = 1 if use_unix else 3
        for attempt in range(1, attempts + 1):
            if use_unix:
                port, password = 0, None
                url = f"unix://{self.socket_path}"
            else:
                port, password = _free_tcp_port(), secrets.token_urlsafe(24)
                url = f"redis://:{password}@127.0.0.1:{port}/0"
            write_config(
                self.directory,
                port=port,
                password=password,
                unixsocket=use_unix,
                appendonly=self.appendonly and not bootstrap_aof,
                configured_appendonly=self.appendonly,
                maxmemory=self.maxmemory,
            )
            self._spawn(executable)
            try:
                self._wait_ready(url, timeout)
            except EmbeddedRedisError:
                if attempt < attempts and "Address already in use" in self._log_tail():
                    self._terminate(timeout=5.0)
                    continue
                raise
            self._url = url
            if bootstrap_aof:
                self._enable_aof(url)
            log.info(
                "embedded redis-server %s (pid %d) ready in %s",
                ".".join(map(str, version)),
                self.pid,
                self.directory,
            )
            return url
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _spawn(self, executable: str) -> None:
        # redis.log keeps the history of earlier runs; remember where this run starts so an
        # error shows this run's lines only.
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        # Config-file errors go to stderr before redis opens its logfile: send both there.
        with open_private(self.log_path) as log_file:
            env = None
            if self.preload is not None:
                # In front of whatever the environment already preloads.
                preloads = " ".join(filter(None, [self.preload, os.environ.get("LD_PRELOAD")]))
                env = {**os.environ, "LD_PRELOAD": preloads}
            self._process = subprocess.Popen(
                [executable, str(self.config_path)],
                cwd=self.directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                # Its own process group: a Ctrl-C in the terminal signals the foreground
                # group, and redis must outlive the workers draining their last requests;
                # the owner stops it last.
                process_group=0,
                # The AOF and RDB hold every secret (key hashes, webhook and token
                # secrets): files redis writes are readable by this user only.
                umask=0o077,
                # Unsafe only if another thread holds a lock the child needs; the hook calls
                # nothing but prctl/getppid, and the CLI starts redis before any thread.
                preexec_fn=pdeathsig_preexec(os.getpid()),  # noqa: PLW1509
            )

    def _wait_ready(self, url: str, timeout: float) -> None:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=5.0)
        loading_logged = False
        pause = 0.01
        try:
            while True:
                if not _is_running(process):
                    raise EmbeddedRedisError(
                        f"redis-server exited with code {process.returncode} during startup "
                        f"(log {self.log_path}):\n{self._log_tail()}"
                    )
                try:
                    if client.ping():
                        return
                except redis.exceptions.BusyLoadingError:
                    # Up, and replaying its data: the deadline was for coming up at all.
                    deadline = float("inf")
                    if not loading_logged:
                        log.info("redis-server is loading its data set from %s", self.directory)
                        loading_logged = True
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise EmbeddedRedisError(
                        f"redis-server did not answer PING within {timeout:g} s "
                        f"(log {self.log_path}):\n{self._log_tail()}"
                    )
                _wait_quietly(process, pause)
                pause = min(pause * 2, 0.2)
        finally:
            client.close()

    def _enable_aof(self, url: str) -> None:
        log.info("no AOF yet in %s: turning it on from the loaded RDB", self.directory)
        process = self._process
        assert process is not None
        with redis.Redis.from_url(url) as client:
            client.config_set("appendonly", "yes")
            # The data is not in the AOF until the rewrite finishes; wait for it.
            while True:
                info = client.info("persistence")
                if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
                    break
                if not _is_running(process):
                    raise EmbeddedRedisError(
                        f"redis-server exited while writing its first AOF:\n{self._log_tail()}"
                    )
                _wait_quietly(process, 0.05)
            if info.get("aof_last_bgrewrite_status") != "ok":
                raise EmbeddedRedisError(
                    f"redis-server failed to write its first AOF:\n{self._log_tail()}"
                )

    def _log_tail(self) -> str:
        try:
            with self.log_path.open("rb") as log_file:
                log_file.seek(self._log_offset)
                text = log_file.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-_LOG_TAIL_LINES:]) or "(log is empty)"

    # -- stop --------------------------------------------------------------------------

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down gracefully, SIGKILL it after ``timeout``; idempotent.

        With the AOF on, redis is told ``SHUTDOWN NOSAVE``: it fsyncs the AOF, which
        holds every write, and exits. A final RDB would add nothing the AOF lacks (redis
        boots from the AOF when it has one) and costs seconds per few million codes: a
        10M-code sale's took over 10 s and was killed half written, leaving its temp
        file behind. The hourly RDB stays as it is. Without the AOF, SIGTERM: redis
        writes the RDB it needs and exits.
        """
        process = self._process
        if process is not None:
            returncode = self._terminate(timeout, nosave=self._shut_down_without_rdb())
            if returncode not in (0, -signal.SIGKILL):
                log.warning("redis-server exited with code %s:\n%s", returncode, self._log_tail())
            else:
                log.info("embedded redis-server (pid %d) stopped", process.pid)
        self._url = None
        self._release_lock()

    def _shut_down_without_rdb(self) -> bool:
        """With the AOF on, send SHUTDOWN NOSAVE; whether redis took it."""
        if not self.appendonly or self._url is None or not self.running:
            return False
        client = redis.Redis.from_url(
            self._url, socket_connect_timeout=1.0, socket_timeout=5.0, retry=None
        )
        try:
            # Only while the AOF really is on: had someone turned it off at runtime, the
            # RDB written on SIGTERM would be the only copy of the data.
            if client.config_get("appendonly").get("appendonly") != "yes":
                return False
            # redis-py treats the connection closing under it as success.
            client.shutdown(nosave=True)
        except redis.exceptions.RedisError as exc:
            # Unreachable, or refused (while it writes its first AOF): try SIGTERM.
            log.info("SHUTDOWN NOSAVE not taken (%s); sending SIGTERM", exc)
            return False
        finally:
            client.close()
        return True

    def _terminate(self, timeout: float, *, nosave: bool = False) -> int | None:
        """SIGTERM the server (unless ``nosave``: it was told SHUTDOWN NOSAVE and is on
        its way out), wait up to ``timeout``, then SIGKILL."""
        process = self._process
        if process is None:
            return None
        if _is_running(process):
            if not nosave:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning(
                    "redis-server (pid %d) still running %g s after %s; killing it",
                    process.pid,
                    timeout,
                    "SHUTDOWN NOSAVE" if nosave else "SIGTERM",
                )
                process.kill()
                process.wait()
        self._process = None
        return process.returncode
