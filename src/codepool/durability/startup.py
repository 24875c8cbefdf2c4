"""Before serving: make Redis hold the codepool state (restore it if it was lost).

``codepool serve`` calls :func:`prepare` once Redis is up and before any worker starts
(so nothing is served from a Redis that lost its data), then runs the snapshot loop
(durability.loop), which calls :func:`ensure_state` again whenever Redis loses its state.

What ``prepare`` finds, and does:

- ``cp:restoring`` set: a restore died half-way -> restore again (from scratch);
- no ``cp:epoch`` but a snapshot or journal on disk: Redis lost its data -> restore;
- no ``cp:epoch`` and nothing on disk: a first start (or data from before snapshots
  existed) -> mark the state as complete;
- ``cp:epoch`` present: Redis kept its data (AOF). If the journal holds changes Redis
  does not (its last second of AOF lost to a power cut), they are applied by taking a
  snapshot of what Redis has and restoring it with the journal ("catch-up").

Every restore is followed by a fresh snapshot before serving, so later restores never
mix journal records of the old history with the new one.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from redis.asyncio import Redis

from codepool import keys
from codepool.durability import catchup
from codepool.durability.journal import journal_dir, rotation
from codepool.durability.journal_files import journal_files, read_journal
from codepool.durability.records import Record
from codepool.durability.restore import RestoreStats, has_state, mark_complete, restore
from codepool.durability.snapshot import take_snapshot
from codepool.durability.snapshot_dir import (
    directory_lock,
    list_snapshots,
    newest_valid,
    snapshots_dir,
    started_at,
)
from codepool.durability.snapshot_format import SnapshotInfo
from codepool.settings import Settings

log = logging.getLogger(__name__)


def make_redis(url: str) -> Redis:
    # Generous timeouts: a restore writes big pipelines.
    return Redis.from_url(url, socket_timeout=120, socket_connect_timeout=10)


async def snapshot_now(client: Redis, settings: Settings) -> SnapshotInfo:
    """Take a snapshot into the data directory (under its lock)."""
    directory = snapshots_dir(settings.data_dir)
    with directory_lock(directory):
        return await take_snapshot(
            client,
            directory,
            keep=settings.snapshot_keep,
            journal_rotation=rotation(settings.snapshot_interval),
        )


def _on_disk(settings: Settings) -> bool:
    return bool(
        list_snapshots(snapshots_dir(settings.data_dir))
        or journal_files(journal_dir(settings.data_dir))
    )


def journal_since(settings: Settings, snapshot: Path | None) -> list[Record]:
    """The journal records a restore of ``snapshot`` needs: those written since it began
    (all of them without a snapshot)."""
    since = 0.0 if snapshot is None else started_at(snapshot)
    return read_journal(journal_dir(settings.data_dir), since)


async def restore_from_disk(
    client: Redis, settings: Settings, snapshot: Path | None = None, *, use_journal: bool = True
) -> RestoreStats:
    """Restore the newest valid snapshot (or ``snapshot``) plus the journal, then take a
    fresh snapshot. Call with the snapshots directory lock held."""
    directory = snapshots_dir(settings.data_dir)
    if snapshot is None:
        snapshot = newest_valid(directory)
    records = journal_since(settings, snapshot) if use_journal else []
    log.warning(
        "restoring from %s with %d journal record(s)",
        snapshot or "no snapshot (journal only)",
        len(records),
    )
    stats = await restore(client, snapshot, records, user_events_maxlen=settings.user_events_maxlen)
    log.warning(
        "restored %d project(s), %d key(s), %d available code(s), %d journaled hand-out(s) "
        "in %.1f s",
        stats.projects,
        stats.keys,
        stats.codes_available,
        stats.journal_handouts,
        stats.seconds,
    )
    info = await take_snapshot(
        client,
        directory,
        keep=settings.snapshot_keep,
        journal_rotation=rotation(settings.snapshot_interval),
    )
    log.info("snapshot after restore: %s (%d bytes)", info.path, info.size)
    return stats


async def ensure_state(client: Redis, settings: Settings, *, catch_up: bool = True) -> str:
    """Make Redis hold the codepool state before anything is served; returns what was
    done: "kept", "caught-up", "initialized" or "restored". ``catch_up`` only while
    nothing else writes to Redis (its snapshot must be exact)."""
    directory = snapshots_dir(settings.data_dir)
    with directory_lock(directory):
        if await client.exists(keys.RESTORING):
            log.warning("a restore did not finish: restoring again")
            await restore_from_disk(client, settings)
            return "restored"
        if await client.exists(keys.EPOCH):
            if (
                catch_up
                and settings.journal
                and await catchup.catch_up(client, settings) is not None
            ):
                return "caught-up"
            return "kept"
        if _on_disk(settings):
            if await has_state(client):
                log.warning(
                    "Redis holds codepool keys but no state marker (%s), and snapshots "
                    "exist: it lost its data and was written to since; restoring",
                    keys.EPOCH,
                )
            else:
                log.warning("Redis holds no codepool state, but snapshots exist: restoring")
            await restore_from_disk(client, settings)
            return "restored"
        await mark_complete(client)
        return "initialized"


def prepare(settings: Settings, url: str) -> str:
    """Run :func:`ensure_state` to completion (``codepool serve``, before the workers)."""

    async def run() -> str:
        client = make_redis(url)
        try:
            return await ensure_state(client, settings)
        finally:
            await client.aclose()

    return asyncio.run(run())
