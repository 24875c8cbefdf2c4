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
import os
from collections.abc import Sequence
from pathlib import Path

from redis.asyncio import Redis

from codepool import keys, redisclient
from codepool.durability import catchup
from codepool.durability.hosts import (
    Lease,
    RestoreRunningError,
    heartbeat,
    host_id,
    known_hosts,
    needed_hosts,
    redis_now,
    registered_hosts,
    restore_running,
)
from codepool.durability.journal import journal_dir, rotation
from codepool.durability.journal_files import journal_files, journal_hosts, read_journals
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
from codepool.durability.snapshot_format import SnapshotInfo, read_header
from codepool.settings import Settings
from codepool.store import codeindex

log = logging.getLogger(__name__)

# While another host holds the snapshot lease, how often a host waiting for it to
# restore looks again.
WAIT_SECONDS = 0.5


class MissingJournalsError(RuntimeError):
    """A restore would miss the journals of hosts that may have handed codes out since
    the snapshot began: codes they told would be handed out again."""

    def __init__(self, hosts: set[str]) -> None:
        self.hosts = hosts
        super().__init__(
            f"the journals of host(s) {', '.join(sorted(hosts))} are not here: gather them "
            "and run `codepool restore SNAPSHOT --journal DIR ...` (docs/scale.md)"
        )


def make_redis(url: str) -> Redis:
    # Generous timeouts: a restore writes big pipelines.
    # A cluster node's URL gives a cluster client (redisclient.connect).
    return redisclient.connect(url, socket_timeout=120, socket_connect_timeout=10)


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


def peer_dirs(settings: Settings) -> list[Path]:
    return [Path(d) for d in settings.peer_data_dirs.split(os.pathsep) if d]


def _as_journal_dir(directory: Path) -> Path:
    """A data directory's journal directory; any other directory as it is."""
    inner = journal_dir(directory)
    return inner if inner.is_dir() else directory


def journal_dirs(settings: Settings, extra: Sequence[Path] = ()) -> list[Path]:
    """Where this host reads journals: its own, its peers' (settings.peer_data_dirs),
    and ``extra`` (data or journal directories, e.g. gathered from every host)."""
    own = journal_dir(settings.data_dir)
    return [own, *(_as_journal_dir(d) for d in [*peer_dirs(settings), *extra])]


def newest_snapshot(settings: Settings) -> Path | None:
    """The newest valid snapshot of this host's and its peers' snapshot directories."""
    found = [newest_valid(snapshots_dir(d)) for d in [settings.data_dir, *peer_dirs(settings)]]
    return max((p for p in found if p is not None), key=started_at, default=None)


def _on_disk(settings: Settings) -> bool:
    return bool(
        list_snapshots(snapshots_dir(settings.data_dir))
        or journal_files(journal_dir(settings.data_dir))
        or any(newest_valid(snapshots_dir(d)) for d in peer_dirs(settings))
    )


def _since(snapshot: Path | None) -> float:
    return 0.0 if snapshot is None else read_header(snapshot).since


def journal_since(
    settings: Settings, snapshot: Path | None, extra: Sequence[Path] = ()
) -> list[Record]:
    """The journal records a restore of ``snapshot`` needs: those of changes Redis made
    since it began (all of them without a snapshot), from every journal this host reads,
    in Redis's order."""
    return read_journals(journal_dirs(settings, extra), _since(snapshot))


def missing_hosts(settings: Settings, snapshot: Path | None, dirs: Sequence[Path]) -> set[str]:
    """Hosts that journaled after ``snapshot`` began (by the snapshot's header and this
    host's copy of the registry) whose journals are not in ``dirs``."""
    hosts = known_hosts(settings.data_dir)
    if snapshot is not None:
        for host, seen in read_header(snapshot).hosts.items():
            hosts[host] = max(seen, hosts.get(host, 0.0))
    needed = needed_hosts(hosts, _since(snapshot)) - {host_id(settings)}
    return needed - journal_hosts(dirs)


async def restore_from_disk(
    client: Redis,
    settings: Settings,
    snapshot: Path | None = None,
    *,
    use_journal: bool = True,
    journals: Sequence[Path] = (),
    allow_missing: bool = False,
) -> RestoreStats:
    """Restore the newest valid snapshot (or ``snapshot``) plus the journals of every
    host (this one's, its peers', ``journals``), then take a fresh snapshot. Raises
    MissingJournalsError (before touching Redis) if a host's journal is missing, unless
    ``allow_missing``. Call with the snapshots directory lock held."""
    directory = snapshots_dir(settings.data_dir)
    if snapshot is None:
        snapshot = newest_snapshot(settings)
    records: list[Record] = []
    if use_journal:
        dirs = journal_dirs(settings, journals)
        missing = missing_hosts(settings, snapshot, dirs)
        if missing and not allow_missing:
            raise MissingJournalsError(missing)
        if missing:
            log.error("restoring without the journals of %s", ", ".join(sorted(missing)))
        records = read_journals(dirs, _since(snapshot))
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


async def _others_live(client: Redis, settings: Settings) -> bool:
    """Whether another host has journaled lately (its heartbeat in keys.HOSTS)."""
    hosts = await registered_hosts(client)
    return bool(needed_hosts(hosts, await redis_now(client)) - {host_id(settings)})


async def _lead(client: Redis, lease: Lease | None) -> bool:
    """Hold ``lease`` (no lease: alone), or wait until its holder has made Redis hold
    the state; True if the caller holds it (and must make the state), False if the
    state is there."""
    if lease is None:
        return True
    told = False
    while not await lease.hold():
        if await client.exists(keys.EPOCH) and not await restore_running(client):
            return False
        if not told:
            log.warning("Redis holds no codepool state: waiting for the snapshot taker")
            told = True
        await asyncio.sleep(WAIT_SECONDS)
    return True


async def ensure_state(
    client: Redis, settings: Settings, *, catch_up: bool = True, lease: Lease | None = None
) -> str:
    """Make Redis hold the codepool state before anything is served; returns what was
    done: "kept", "caught-up", "initialized" or "restored". ``catch_up`` only while
    nothing else writes to Redis (its snapshot must be exact; skipped while another
    host journals). With ``lease`` (the snapshot lease, many hosts): only its holder
    restores; another host waits until Redis holds the state. Raises MissingJournalsError if
    a restore would miss a host's journal. Every pool is in the code index afterwards."""
    if not await _lead(client, lease):
        return "kept"
    while True:
        # A live restore (`codepool restore`, here or elsewhere): wait for its result.
        # Polled: it runs in another process.
        while await restore_running(client):  # noqa: ASYNC110
            await asyncio.sleep(WAIT_SECONDS)
        try:
            outcome = await _ensure_state(client, settings, catch_up)
        except RestoreRunningError:
            log.info("another restore began meanwhile: waiting for it")
            continue
        await _index_pools(client)
        return outcome


async def _index_pools(client: Redis) -> None:
    """Pools from before the code index (or a restore that died before indexing) are
    indexed before anything is served (codepool.store.codeindex.ensure_all)."""
    done = await codeindex.ensure_all(client)
    if done:
        log.warning("code index: indexed %d code(s) of pools not yet in it", done)


async def _ensure_state(client: Redis, settings: Settings, catch_up: bool) -> str:
    directory = snapshots_dir(settings.data_dir)
    with directory_lock(directory):
        if await client.exists(keys.RESTORING):
            log.warning("a restore did not finish: restoring again")
            await restore_from_disk(client, settings)
            return "restored"
        if await client.exists(keys.EPOCH):
            if not (catch_up and settings.journal):
                return "kept"
            if await _others_live(client, settings):
                log.info("other hosts journal: no catch-up (Redis is not quiet)")
                return "kept"
            if await catchup.catch_up(client, settings, journal_dirs(settings)) is not None:
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
    """Run :func:`ensure_state` to completion (``codepool serve``, before the workers),
    holding the snapshot lease while it makes the state (the snapshot loop goes on
    holding it: the same host's token)."""

    async def run() -> str:
        client = make_redis(url)
        try:
            host = host_id(settings)
            # Registered before anything is served: a restore from now on needs this
            # host's journal.
            await heartbeat(client, host, settings.data_dir)
            lease = Lease(client, keys.SNAPSHOT_TAKER, host, settings.snapshot_lease)
            return await ensure_state(client, settings, lease=lease)
        finally:
            await client.aclose()

    return asyncio.run(run())
