"""Catch-up: a Redis that kept its data (AOF) but lost its last writes (its last second
of AOF lost to a power cut) gets the journaled changes it lacks: a snapshot of what Redis
has, restored with the journal."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from redis.asyncio import Redis

from codepool import keys
from codepool.durability.journal import rotation
from codepool.durability.journal_files import read_journals
from codepool.durability.plan import Op, index_journal, reflected
from codepool.durability.records import Record
from codepool.durability.restore import RestoreStats, epoch_began, restore
from codepool.durability.snapshot import take_snapshot
from codepool.durability.snapshot_dir import snapshots_dir
from codepool.scripts import Scripts
from codepool.settings import Settings
from codepool.store.base import text

log = logging.getLogger(__name__)


async def unapplied(client: Redis, records: list[Record]) -> list[Op]:
    """Journaled changes a Redis that kept its data does not hold (by the pool counters)."""
    missing: list[Op] = []
    scripts = Scripts(client)
    for project, pj in index_journal(records).items():
        pools = {text(m) for m in await client.smembers(keys.pools(project))}
        clock_raw, _ = await scripts.run(
            "snapshot_read",
            [keys.project(project), keys.pools(project)],
            ["hash", keys.pool(project, "\0"), keys.pool_available(project, "\0"), "", ""],
        )
        clock = {
            clock_raw[i].decode(): (
                int(clock_raw[i + 1]),
                int(clock_raw[i + 2]),
                int(clock_raw[i + 3]),
            )
            for i in range(0, len(clock_raw), 4)
        }
        # Changes of pools deleted since are no one's concern any more.
        missing += [
            op
            for op in pj.ops
            if op.kind not in ("replay", "confirm")
            and op.pool in pools
            and not reflected(op, clock)
        ]
        missing += await _unconfirmed(client, project, [o for o in pj.ops if o.kind == "confirm"])
    return missing


async def _unconfirmed(client: Redis, project: str, confirms: list[Op]) -> list[Op]:
    """Journaled confirms Redis lacks: no counter tells, so the records do (a confirm
    is missing while its instance is still held)."""
    if not confirms:
        return []
    records: list[bytes | None] = await client.hmget(  # type: ignore[assignment]
        keys.issued(project), [op.code for op in confirms]
    )
    missing = []
    for op, record in zip(confirms, records, strict=True):
        for raw in record.split(b"\x1e") if record else []:
            f = raw.split(b"\x1f")
            same = (f[0].decode(), f[2], f[4], f[5], f[6]) == (
                op.pool,
                op.at,
                op.user,
                op.reward,
                op.purchase,
            )
            if same and f[1] == b"a" and len(f) > 7:
                missing.append(op)
                break
    return missing


async def catch_up(client: Redis, settings: Settings, dirs: Sequence[Path]) -> RestoreStats | None:
    """Apply the journaled changes (of ``dirs``) Redis lacks; None if it lacks none."""
    directory = snapshots_dir(settings.data_dir)
    # Every record of this Redis's history the journal still keeps, not only those since
    # the newest snapshot: the writes Redis lost may be older than that snapshot's start
    # (it read them from Redis before Redis lost them). Counters tell which are missing.
    epoch = await client.get(keys.EPOCH)
    records = read_journals(dirs, epoch_began(epoch or b""))
    missing = await unapplied(client, records)
    if not missing:
        return None
    log.warning(
        "Redis lacks %d journaled change(s) (its last writes were lost): applying them",
        len(missing),
    )
    with tempfile.TemporaryDirectory(dir=directory, prefix=".catchup-") as temp:
        # Redis is quiet (nothing serves yet): this snapshot is exact.
        current = await take_snapshot(client, Path(temp), keep=1)
        stats = await restore(
            client, current.path, records, user_events_maxlen=settings.user_events_maxlen
        )
    info = await take_snapshot(
        client,
        directory,
        keep=settings.snapshot_keep,
        journal_rotation=rotation(settings.snapshot_interval),
    )
    log.info("snapshot after catch-up: %s", info.path)
    return stats
