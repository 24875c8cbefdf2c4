"""``codepool serve``: check the root key, start the embedded Redis (unless
CODEPOOL_REDIS_URL names one), restore a Redis that lost its data and take snapshots,
then run the workers (workers.py) until a stop signal.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os

from codepool.cli_common import redact_url, terminate_raises
from codepool.durability import startup
from codepool.durability.loop import SnapshotProcess
from codepool.embedded import EmbeddedRedis
from codepool.settings import Settings, SettingsError
from codepool.workers import SERVERS

log = logging.getLogger("codepool")


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
    with terminate_raises(), contextlib.ExitStack() as cleanup:
        if settings.redis_url is None:
            embedded = cleanup.enter_context(
                EmbeddedRedis(
                    settings.data_dir / "redis",
                    maxmemory=settings.redis_maxmemory,
                    malloc=settings.redis_malloc,
                )
            )
            # Workers are separate processes that build their Settings from the
            # environment; this is how all of them reach the one embedded server.
            os.environ["CODEPOOL_REDIS_URL"] = embedded.url
            log.info(
                "embedded Redis (pid %s) at %s, files in %s, allocator %s",
                embedded.pid,
                redact_url(embedded.url),
                embedded.directory,
                embedded.preload or "libc (no jemalloc found: apt-get install libjemalloc2)",
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
        code = SERVERS[args.server](args, settings)
        if code:
            return code
    log.info("codepool stopped")
    return 0
