"""Restore: a snapshot plus the journal written since, back into an empty Redis.

The snapshot was read slice by slice while codes were handed out (durability.snapshot);
each slice carries the clock it was read at. The journal (durability.journal) holds every
hand-out, redeem and release, each with its counter. A journaled change is *reflected*
in a slice when its counter is below that slice's clock:

    hand-out at position x      reflected iff x < popped      (of its pool)
    release pushing at position y reflected iff y < end
    redeem number s              reflected iff s <= redeemed

Everything not reflected is applied, exactly once, to the data of that slice:

- available list: codes are kept by position; a position the journal says was handed
  out is dropped, so no acknowledged code is ever available again; a release the
  snapshot missed is put back at its position. The issued hash is read before the
  available lists, so a code read as available cannot already be in it.
- issued records: missed hand-outs are added, missed redeems and releases applied.
- pool log, user code lists, per-user reward counts, idempotency records and events:
  missed changes appended or applied the way the scripts would have. Missed events,
  and the low-stock alerts missed hand-outs fired (the journal keeps them with the
  hand-outs; reflected with them), go through lua/restore_events.lua, which queues
  them in the outbox for whoever the lost writes would have told.
- per-user event indexes (keys.user_events; snapshots leave them out): rebuilt from the
  project stream as it is written back, each event with a user under the same id, and
  missed events through restore_events.lua, which writes both. A user's events older
  than the project stream keeps (settings.events_maxlen) are not rebuilt.
- pool hashes: `armed` from the restored available count (a threshold is armed
  exactly while more than it is available); `soon_armed` (empty-soon alerts) as the
  snapshot had it, less the thresholds whose alerts the journal fires again, plus those
  the forecast at the restore (restored counters, restored stock) is above.
- per-minute counters (one string per pool and day, read with the clock): the
  journaled hand-outs, redeems and releases a day's read does not reflect are counted
  into the minute of their time; a day the snapshot has no key for is counted from
  the journal alone. So the series stays exact across a restore.
- the code index (keys.code_index; snapshots leave it out): rebuilt from the restored
  available lists before the restore is marked complete (codepool.store.codeindex).
- counters are recounted from what was written (total = available + assigned +
  redeemed), so they are exact whatever the snapshot's timing.

A pool the snapshot does not know (created after it, or no snapshot at all) comes back
as a placeholder ("restored-<id>": nothing available, its hand-outs as issued), so the
admin can rename it and upload again with duplicates=skip.

The restore runs under the ``cp:restoring`` marker; pool hashes (without which no code
can be handed out) are written last per project and the project registry last of all,
then ``cp:epoch`` marks the state complete. A restore that dies half-way is redone from
scratch (everything of codepool is flushed first). Only the snapshot's own records are
replayed on top of it (records written since its start), so restoring twice gives the
same state.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
from redis.asyncio import Redis

from codepool import keys
from codepool.durability.apply import ProjectRestore
from codepool.durability.hosts import redis_now, restore_marker
from codepool.durability.keyspace import all_keys, classify, scan_keys
from codepool.durability.plan import NO_CLOCK, ProjectJournal, index_journal
from codepool.durability.records import Record
from codepool.durability.snapshot_format import (
    FORMAT_VERSION,
    Footer,
    Frame,
    Header,
    ProjectEnd,
    SetSlice,
    SnapshotError,
    read_frames,
)
from codepool.durability.writer import USER_EVENTS_MAXLEN, WRITE_BATCH, Writer
from codepool.store import codeindex


class RestoreStats(msgspec.Struct, kw_only=True):
    snapshot: str | None
    journal_records: int
    projects: int = 0
    keys: int = 0
    codes_available: int = 0
    journal_handouts: int = 0
    placeholders: int = 0
    seconds: float = 0.0


async def flush_codepool(client: Redis) -> int:
    """Delete every codepool key but the markers and leases (UNLINK: freed off-thread):
    the restore's own marker, and the snapshot lease and host registry, which tell the
    other hosts this restore is running."""
    names = [n for n in await all_keys(client) if n not in keys.KEPT_BY_RESTORE]
    for i in range(0, len(names), WRITE_BATCH):
        await client.unlink(*names[i : i + WRITE_BATCH])
    return len(names)


async def has_state(client: Redis) -> bool:
    """Whether Redis holds any codepool key (the markers and leases aside)."""
    if await client.exists(keys.PROJECTS):
        return True
    async for name in scan_keys(client):
        if name not in keys.NOT_STATE:
            return True
    return False


async def mark_complete(client: Redis, since: float | None = None) -> str:
    """Mark Redis as holding a whole codepool state (see keys.EPOCH), one that exists
    since ``since`` (Redis time; default now): journal records of changes Redis made
    before belong to another."""
    began = await redis_now(client) if since is None else since
    epoch = f"{began:.6f}-{secrets.token_hex(6)}"
    await client.set(keys.EPOCH, epoch)
    return epoch


def epoch_began(epoch: bytes | str) -> float:
    """When the state a ``cp:epoch`` value marks began (see mark_complete)."""
    raw = epoch.decode() if isinstance(epoch, bytes) else epoch
    try:
        return float(raw.split("-", 1)[0])
    except ValueError:
        return 0.0


async def restore(
    client: Redis,
    snapshot: Path | None,
    journal: list[Record],
    *,
    flush: bool = True,
    user_events_maxlen: int = USER_EVENTS_MAXLEN,
) -> RestoreStats:
    """Write ``snapshot`` (verified; None: start from nothing) plus ``journal`` into Redis.

    ``journal`` must hold the records of every host since the snapshot started, in
    Redis's order (see journal_files.read_journals). With ``flush`` every codepool key
    is deleted first.
    ``user_events_maxlen``: settings.user_events_maxlen, for the rebuilt user lists.
    """
    started = time.time()
    # Redis's clock: the records of changes made from the restored state are all later.
    began = await redis_now(client)
    async with restore_marker(client, f"{began}"):
        # Until the end nothing here is a complete state (a restore that dies is redone).
        await client.delete(keys.EPOCH)
        stats = await _restore(client, snapshot, journal, flush, user_events_maxlen)
        await mark_complete(client, since=began)
    stats.seconds = time.time() - started
    return stats


async def _restore(
    client: Redis,
    snapshot: Path | None,
    journal: list[Record],
    flush: bool,
    user_events_maxlen: int,
) -> RestoreStats:
    if flush:
        await flush_codepool(client)
    stats = RestoreStats(
        snapshot=None if snapshot is None else str(snapshot), journal_records=len(journal)
    )
    by_project = index_journal(journal)
    stats.journal_handouts = sum(
        1 for pj in by_project.values() for op in pj.ops if op.kind == "issue"
    )
    w = Writer(client, user_events_maxlen)
    projects_seen: set[str] = set()
    registry: set[bytes] = set()
    current: ProjectRestore | None = None
    frames: Iterator[Frame] = iter(()) if snapshot is None else read_frames(snapshot)
    for frame in frames:
        if isinstance(frame, Header) and frame.version != FORMAT_VERSION:
            raise SnapshotError(f"{snapshot}: format version {frame.version} is not supported")
        if isinstance(frame, Header | Footer):
            continue
        if isinstance(frame, ProjectEnd):
            if current is None:  # a project with no keys read: start and end it
                current = ProjectRestore(
                    frame.project, by_project.get(frame.project, ProjectJournal()), w
                )
            stats.placeholders += await current.finish(frame.clock)
            stats.codes_available += current.stats_available
            projects_seen.add(frame.project)
            current = None
            continue
        key = frame.key
        kind = classify(key)
        if kind is None:
            if key == keys.PROJECTS and isinstance(frame, SetSlice):
                registry.update(frame.members)
            continue
        if current is None or current.project != kind.project:
            current = ProjectRestore(
                kind.project, by_project.get(kind.project, ProjectJournal()), w
            )
        await current.frame(frame)
    # Projects the snapshot does not know (or no snapshot at all): journal only.
    for project in sorted(set(by_project) - projects_seen):
        only = ProjectRestore(project, by_project[project], w)
        stats.placeholders += await only.finish(NO_CLOCK)
        stats.codes_available += only.stats_available
    await w.flush()
    # The registry last: only projects whose record came back (a project created after
    # the snapshot has no name or secrets to restore; root can create it again by id).
    present = []
    for member in sorted(registry | {p.encode() for p in by_project}):
        if await client.exists(keys.project(member.decode())):
            present.append(member)
    if present:
        await client.sadd(keys.PROJECTS, *present)
    stats.projects = len(present)
    stats.keys = len(w.keys)
    # The code index (keys.code_index; snapshots leave it out: its upload numbers and
    # offsets name a past state): every restored pool is indexed again from its restored
    # available list, in positions. The pool hashes came back without their ``ix``.
    await codeindex.ensure_all(client, sorted(projects_seen | set(by_project)))
    return stats
