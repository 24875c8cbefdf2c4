"""The ``codepool`` command line: ``codepool serve``, ``snapshot``, ``restore``, and the
client verbs that talk to a running service (codepool/client, docs/cli.md).

Each subcommand is an argparse subparser whose ``handler`` default is a function
``(args, settings) -> exit code``; add one in ``build_parser`` to add a command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import importlib
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from multiprocessing import resource_tracker
from pathlib import Path
from types import FrameType
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import uvicorn
from granian import Granian
from granian.constants import Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from redis.exceptions import RedisError
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from codepool import __version__
from codepool.client.verbs import add_verbs as add_client_verbs
from codepool.durability import startup
from codepool.durability.hosts import RestoreRunningError
from codepool.durability.loop import SnapshotProcess
from codepool.durability.restore import has_state
from codepool.durability.snapshot_dir import directory_lock, snapshots_dir
from codepool.durability.snapshot_format import SnapshotError, SnapshotInfo, verify
from codepool.embedded import (
    SOCKET_NAME,
    EmbeddedRedis,
    EmbeddedRedisError,
    die_with_parent,
    redis_servers_in,
)
from codepool.httplimits import HttpLimits, LimitedHttpToolsProtocol
from codepool.settings import Settings, SettingsError, load_settings

log = logging.getLogger("codepool")

Handler = Callable[[argparse.Namespace, Settings], int]

# The ASGI app factory every worker calls; it reads its Settings from the environment,
# which is how workers learn the URL of the embedded Redis.
APP_FACTORY = "codepool.app:create_app_from_env"
# uvicorn's workers are spawned, not forked: theirs also ties them to serve's life.
WORKER_FACTORY = "codepool.cli:uvicorn_worker_app"

# How long a worker may take to finish its requests at shutdown before it is killed.
WORKERS_KILL_TIMEOUT = 30

# A worker's collections of its youngest objects (CPython's default: every 700 net
# container allocations). docs/index.md ("Where a till's time goes") has the measurement.
GC_GEN0_THRESHOLD = 700


class Terminated(BaseException):
    """SIGTERM arrived; raised like KeyboardInterrupt so ``finally`` blocks still run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def _die_with_serve() -> None:
    """In a worker: be SIGKILLed by the kernel when ``codepool serve`` dies.

    Neither granian nor uvicorn stops its workers when its main process is SIGKILLed:
    they would go on serving (with the embedded Redis gone) and hold the port. SIGKILL,
    not SIGTERM: with the main process gone nothing graceful is left to do, and granian
    2.8's worker hangs for good in its SIGTERM handler when the signal lands during
    lifespan startup with the parent already dead.
    """
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid is not None:
        die_with_parent(parent.pid, signal.SIGKILL)


def settle_gc() -> None:
    """In a worker, once its app is built: move every object alive now into CPython's
    permanent generation (gc.freeze), out of reach of the cyclic collector.

    A worker's imports and app are ~140,000 objects that live as long as it does. Each
    full collection walked all of them: 25-65 ms (156 ms seen) with the machine busy,
    every few seconds under the purchase load, stalling every request on that worker
    (a till's p99). Frozen, a full collection walks only what was made since.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


def load_app(target: str) -> Callable[..., Any]:
    """Granian's target loader, run in each worker: calls the ``module:factory`` target.

    Workers are forked from granian's main process and inherit its SIGTERM/SIGINT handler,
    which only sets a flag in the worker's copy of the server object. A stop signal that
    reaches a worker while it is still importing the app is lost that way, and the worker
    is killed only after WORKERS_KILL_TIMEOUT. Default actions until granian installs the
    worker's own handlers (right after this returns) make such a worker just exit.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _die_with_serve()
    module_name, _, attribute = target.partition(":")
    factory: Callable[[], Callable[..., Any]] = getattr(
        importlib.import_module(module_name), attribute
    )
    app = factory()
    settle_gc()
    return app


def uvicorn_worker_app() -> Any:
    """The app factory of a uvicorn worker (a process spawned by ``codepool serve``)."""
    _die_with_serve()
    from codepool.app import create_app_from_env  # noqa: PLC0415 (only workers need the app)

    app = create_app_from_env()
    settle_gc()
    return app


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced, fit for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codepool",
        description="Hands out pre-generated voucher codes from pools, exactly once.",
        epilog="Settings come from CODEPOOL_* environment variables (see the README).",
    )
    parser.add_argument("--version", action="version", version=f"codepool {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the HTTP API",
        description="Run the HTTP API. Without CODEPOOL_REDIS_URL, start a private "
        "redis-server with its files under $CODEPOOL_DATA_DIR/redis and stop it on exit.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument("--port", type=_port, default=8000, help="port (default: %(default)s)")
    serve.add_argument(
        "--workers", type=_positive, default=1, help="worker processes (default: %(default)s)"
    )
    serve.add_argument(
        "--server",
        choices=("uvicorn", "granian"),
        default="uvicorn",
        help="ASGI server running the workers (default: %(default)s, the faster one here)",
    )
    serve.set_defaults(handler=serve_command)

    snapshot = commands.add_parser(
        "snapshot",
        help="write a snapshot now",
        description="Write a snapshot of the whole state to $CODEPOOL_DATA_DIR/snapshots and "
        "print its path, size and duration. Uses the running `codepool serve`'s embedded Redis, "
        "or starts it if none runs.",
    )
    snapshot.set_defaults(handler=snapshot_command)

    restore = commands.add_parser(
        "restore",
        help="restore a snapshot into Redis",
        description="Restore FILE (plus the journal written since, when FILE is one of "
        "$CODEPOOL_DATA_DIR/snapshots) into Redis, then take a fresh snapshot. Refuses when "
        "Redis already holds codepool state, unless --force (which deletes it first).",
    )
    restore.add_argument("file", type=Path, metavar="FILE", help="a snapshot (.cps) file")
    restore.add_argument(
        "--force", action="store_true", help="replace the codepool state Redis holds"
    )
    restore.add_argument(
        "--journal",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="replay the journal written since FILE began (default: only for a FILE "
        "of this data directory, or with --journal-dir)",
    )
    restore.add_argument(
        "--journal-dir",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="also replay the journals in DIR (a host's data or journal directory, or the "
        "journals of many hosts gathered in one); repeat for every host (docs/scale.md)",
    )
    restore.add_argument(
        "--allow-missing-journals",
        action="store_true",
        help="restore even though hosts that journaled since FILE began have no journal "
        "here (codes they handed out may be handed out again)",
    )
    restore.set_defaults(handler=restore_command)

    # The client verbs (projects, keys, pools, codes, issue, ...): docs/cli.md.
    add_client_verbs(commands)
    mcp = commands.add_parser(
        "mcp",
        help="serve the agent tools over stdio",
        description="Serve the read-only agent tools (MCP) on stdin/stdout for a desktop "
        "agent, talking to the service at $CODEPOOL_URL with $CODEPOOL_API_KEY "
        "(docs/agents.md).",
    )
    mcp.set_defaults(handler=_mcp_command)

    return parser


def _log_level(name: str) -> int:
    level = logging.getLevelNamesMapping().get(name.upper())
    if level is None:
        raise SettingsError(f"bad CODEPOOL_LOG_LEVEL {name!r}: use DEBUG, INFO, WARNING or ERROR")
    return level


def _mcp_command(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here: the MCP SDK takes ~0.35 s to import, which every other verb of
    # the command line would pay.
    from codepool.mcp.stdio import mcp_command  # noqa: PLC0415

    return mcp_command(args, settings)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        level = _log_level(settings.log_level)
    except SettingsError as exc:
        print(f"codepool: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except SettingsError as exc:
        print(f"codepool: {exc}", file=sys.stderr)
        return 2
    except EmbeddedRedisError as exc:
        print(f"codepool: {exc}", file=sys.stderr)
        return 1
    except (RedisError, SnapshotError) as exc:
        # Before serving (the restore check) or in snapshot/restore: one line, no trace.
        print(f"codepool: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except Terminated as exc:
        return 128 + exc.signum


@contextlib.contextmanager
def _terminate_raises() -> Iterator[None]:
    """Turn SIGTERM into an exception until something else (granian) takes it over.

    Python's default SIGTERM action kills the process without running ``finally``, which
    would leave the embedded redis-server to PDEATHSIG alone.
    """
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# A root key is every project's master key: long enough that guessing is hopeless.
MIN_ROOT_KEY = 32


def check_root_key(settings: Settings) -> None:
    """Refuse a short root key (an empty one means no root access, which is fine);
    development mode (`make run`, CODEPOOL_DEV=1) only warns."""
    if not settings.root_key or len(settings.root_key) >= MIN_ROOT_KEY:
        return
    if settings.dev:
        log.warning(
            "CODEPOOL_ROOT_KEY is shorter than %d characters: fine for development "
            "(CODEPOOL_DEV=1), never in production",
            MIN_ROOT_KEY,
        )
        return
    raise SettingsError(
        f"CODEPOOL_ROOT_KEY must be at least {MIN_ROOT_KEY} characters "
        "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
    )


def serve_command(args: argparse.Namespace, settings: Settings) -> int:
    check_root_key(settings)
    with _terminate_raises(), contextlib.ExitStack() as cleanup:
        if settings.redis_url is None:
            embedded = cleanup.enter_context(
                EmbeddedRedis(settings.data_dir / "redis", maxmemory=settings.redis_maxmemory)
            )
            # Workers are separate processes that build their Settings from the
            # environment; this is how all of them reach the one embedded server.
            os.environ["CODEPOOL_REDIS_URL"] = embedded.url
            log.info(
                "embedded Redis (pid %s) at %s, files in %s",
                embedded.pid,
                redact_url(embedded.url),
                embedded.directory,
            )
        else:
            log.info("using Redis at %s", redact_url(settings.redis_url))

        if settings.snapshot_interval > 0:
            url = os.environ.get("CODEPOOL_REDIS_URL") or settings.redis_url or ""
            # Before any worker: a Redis that lost its data is restored first, so nothing
            # is ever served from it.
            outcome = startup.prepare(settings, url)
            log.info("Redis state: %s; snapshots every %g s", outcome, settings.snapshot_interval)
            snapshots = SnapshotProcess(settings, url)
            snapshots.start()
            # Registered after Redis: stopped (with a last snapshot) before Redis stops.
            cleanup.callback(snapshots.stop)

        log.info(
            "serving http://%s:%d with %d worker(s) (%s)",
            args.host,
            args.port,
            args.workers,
            args.server,
        )
        log.info("console: http://%s:%d/console", args.host, args.port)
        code = _SERVERS[args.server](args, settings)
        if code:
            return code
    log.info("codepool stopped")
    return 0


def _run_uvicorn(args: argparse.Namespace, settings: Settings) -> int:
    """uvicorn (httptools, uvloop) with its own supervisor: worker processes spawned by
    this one, replaced if they die, stopped on SIGTERM/SIGINT; SIGHUP restarts them one by
    one. Returns once every worker has stopped."""
    config = uvicorn.Config(
        WORKER_FACTORY,
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        # httptools with a header size limit and a header deadline (httplimits.py).
        http=cast(
            Any,
            functools.partial(
                LimitedHttpToolsProtocol,
                limits=HttpLimits(settings.http_max_header_bytes, settings.http_header_timeout),
            ),
        ),
        timeout_keep_alive=settings.http_keep_alive,
        limit_concurrency=settings.http_max_concurrency,
        lifespan="on",
        access_log=False,
        log_config=None,  # the logging set up by main(), and by the app in each worker
        log_level=_log_level(settings.log_level),
        timeout_graceful_shutdown=WORKERS_KILL_TIMEOUT,
    )
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    # Spawning the workers started multiprocessing's resource tracker; it would exit
    # only once this process is gone. Stop and reap it now, so that when serve returns
    # none of its children is left. (_stop is what multiprocessing's own tests use.)
    stop_tracker = getattr(resource_tracker._resource_tracker, "_stop", None)
    if stop_tracker is not None:
        stop_tracker()
    failed = [p.pid for p in supervisor.processes if p.exitcode == STARTUP_FAILURE]
    if failed:
        log.error("worker(s) %s failed to start; see the log above", failed)
        return 1
    return 0


def _run_granian(args: argparse.Namespace, settings: Settings) -> int:
    server = Granian(
        APP_FACTORY,
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=args.workers,
        # load_app (below) calls the factory itself; this keeps granian's view consistent.
        factory=True,
        log_level=LogLevels(logging.getLevelName(_log_level(settings.log_level)).lower()),
        workers_kill_timeout=WORKERS_KILL_TIMEOUT,
        # The same limits as under uvicorn: hyper answers 431 to headers past its buffer
        # (8 KiB at least), closes connections whose headers are late, and a worker takes
        # at most `backpressure` requests at once.
        http1_settings=HTTP1Settings(
            header_read_timeout=int(settings.http_header_timeout * 1000),
            max_buffer_size=max(8192, settings.http_max_header_bytes),
        ),
        backpressure=settings.http_max_concurrency,
    )
    # granian installs its own SIGINT/SIGTERM handlers in the main process: on either it
    # stops the workers (letting them finish their requests) and returns from serve(),
    # so the ExitStack then stops Redis after the last worker is gone.
    try:
        server.serve(target_loader=load_app)
    except SystemExit as exc:
        # granian exits 1 when workers died on their own (e.g. the app failed to start).
        code = exc.code if isinstance(exc.code, int) else 1
        log.error("granian exited with code %s", code)
        return code
    return 0


# --server name -> how to run the workers. uvicorn is the default by measurement
# (loadtest/servers.py; docs/performance.md).
_SERVERS: dict[str, Handler] = {"uvicorn": _run_uvicorn, "granian": _run_granian}


@contextlib.contextmanager
def _redis_url(settings: Settings, *, existing: bool = False) -> Iterator[str]:
    """The Redis the data directory belongs to: CODEPOOL_REDIS_URL, the embedded server
    of a running ``codepool serve`` (its unix socket), or one started for the command
    (with ``existing``, only on files an earlier ``codepool serve`` left there)."""
    if settings.redis_url is not None:
        yield settings.redis_url
        return
    directory = (settings.data_dir / "redis").absolute()
    if redis_servers_in(directory):
        socket_path = directory / SOCKET_NAME
        if not socket_path.exists():
            raise SettingsError(
                f"the Redis in {directory} listens on TCP only: set CODEPOOL_REDIS_URL"
            )
        yield f"unix://{socket_path}"
        return
    if existing and not any(
        (directory / name).exists() for name in ("appendonly.aof", "appendonlydir", "dump.rdb")
    ):
        # Run from the wrong directory, this would start an empty Redis and snapshot it.
        raise SettingsError(
            f"no codepool data in {directory}: run from the service's directory, or set "
            "CODEPOOL_DATA_DIR (or CODEPOOL_REDIS_URL) to the service's"
        )
    with EmbeddedRedis(directory) as embedded:
        yield embedded.url


def snapshot_command(args: argparse.Namespace, settings: Settings) -> int:
    async def run(url: str) -> SnapshotInfo:
        client = startup.make_redis(url)
        try:
            if not await has_state(client):
                raise SettingsError(f"the Redis at {redact_url(url)} holds no codepool state")
            return await startup.snapshot_now(client, settings)
        finally:
            await client.aclose()

    with _terminate_raises(), _redis_url(settings, existing=True) as url:
        info = asyncio.run(run(url))
    print(f"{info.path}\t{info.size} bytes\t{info.seconds:.2f} s")
    return 0


def restore_command(args: argparse.Namespace, settings: Settings) -> int:
    path: Path = args.file
    try:
        verify(path)
    except SnapshotError as exc:
        print(f"codepool: {exc}", file=sys.stderr)
        return 1
    directory = snapshots_dir(settings.data_dir)
    use_journal = args.journal
    if use_journal is None:
        # The journal continues this data directory's snapshots, not a file from elsewhere.
        use_journal = bool(args.journal_dir) or path.resolve().parent == directory.resolve()

    async def run(url: str) -> int:
        client = startup.make_redis(url)
        try:
            with directory_lock(directory):
                if await has_state(client) and not args.force:
                    print(
                        "codepool: Redis already holds codepool state; --force replaces it",
                        file=sys.stderr,
                    )
                    return 1
                stats = await startup.restore_from_disk(
                    client,
                    settings,
                    path,
                    use_journal=use_journal,
                    journals=args.journal_dir,
                    allow_missing=args.allow_missing_journals,
                )
        except RestoreRunningError:
            print("codepool: a restore is running (its marker is live)", file=sys.stderr)
            return 1
        except startup.MissingJournalsError as exc:
            print(f"codepool: {exc}; --allow-missing-journals restores anyway", file=sys.stderr)
            return 1
        finally:
            await client.aclose()
        print(
            f"restored {path}: {stats.projects} project(s), {stats.keys} key(s), "
            f"{stats.codes_available} available code(s), {stats.journal_records} journal "
            f"record(s) in {stats.seconds:.2f} s"
        )
        return 0

    with _terminate_raises(), _redis_url(settings) as url:
        return asyncio.run(run(url))
