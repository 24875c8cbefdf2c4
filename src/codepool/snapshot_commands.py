"""``codepool snapshot`` and ``codepool restore``: write a snapshot now, or restore one
(and the journal written since) into the Redis the data directory belongs to.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from codepool.cli_common import redact_url, terminate_raises
from codepool.durability import startup
from codepool.durability.hosts import RestoreRunningError
from codepool.durability.restore import has_state
from codepool.durability.snapshot_dir import directory_lock, snapshots_dir
from codepool.durability.snapshot_format import SnapshotError, SnapshotInfo, verify
from codepool.embedded import EmbeddedRedis
from codepool.embedded_config import SOCKET_NAME
from codepool.embedded_recovery import redis_servers_in
from codepool.settings import Settings, SettingsError


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

    with terminate_raises(), _redis_url(settings, existing=True) as url:
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

    with terminate_raises(), _redis_url(settings) as url:
        return asyncio.run(run(url))
