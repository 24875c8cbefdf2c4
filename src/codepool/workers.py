"""The worker processes of ``codepool serve``: the ASGI server that runs and supervises
them (``--server``: uvicorn or granian), and what each worker does as it starts.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib
import logging
import multiprocessing
import signal
from collections.abc import Callable
from multiprocessing import resource_tracker
from typing import Any, cast

import uvicorn
from granian import Granian
from granian.constants import Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from codepool.cli_common import Handler, log_level
from codepool.httplimits import HttpLimits, LimitedHttpToolsProtocol
from codepool.parent_death import die_with_parent
from codepool.settings import Settings

log = logging.getLogger("codepool")

# The ASGI app factory every worker calls; it reads its Settings from the environment,
# which is how workers learn the URL of the embedded Redis.
APP_FACTORY = "codepool.app:create_app_from_env"
# uvicorn's workers are spawned, not forked: theirs also ties them to serve's life.
WORKER_FACTORY = "codepool.workers:uvicorn_worker_app"

# How long a worker may take to finish its requests at shutdown before it is killed.
WORKERS_KILL_TIMEOUT = 30

# A worker's collections of its youngest objects (CPython's default: every 700 net
# container allocations). docs/index.md ("Where a till's time goes") has the measurement.
GC_GEN0_THRESHOLD = 700


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
        log_level=log_level(settings.log_level),
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
        log_level=LogLevels(logging.getLevelName(log_level(settings.log_level)).lower()),
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
SERVERS: dict[str, Handler] = {"uvicorn": _run_uvicorn, "granian": _run_granian}
