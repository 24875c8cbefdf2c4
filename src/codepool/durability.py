"""Who takes snapshots and when a restore runs: one process per data directory.

``codepool serve`` calls :func:`prepare` once Redis is up and before any worker starts
(so nothing is served from a Redis that lost its data), then runs a
:class:`SnapshotLoop` in a process beside the workers: it writes a snapshot every
``snapshot_interval`` seconds and, every second, checks that Redis still holds its
state marker (keys.EPOCH). A Redis that comes back empty (restarted without its files,
failed over to an empty replica) is restored again at once; meanwhile its pools do not
exist, so issue calls fail (404) instead of handing anything out twice.

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
import contextlib
import logging
import multiprocessing
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

from codepool import keys
from codepool.embedded import die_with_parent
from codepool.journal import Record, journal_dir, journal_files, read_journal, rotation
from codepool.restore import (
    Op,
    RestoreStats,
    epoch_began,
    has_state,
    index_journal,
    mark_complete,
    reflected,
    restore,
)
from codepool.scripts import Scripts
from codepool.settings import Settings
from codepool.snapshot import (
    SnapshotInfo,
    directory_lock,
    list_snapshots,
    newest_valid,
    snapshots_dir,
    started_at,
    take_snapshot,
)
from codepool.store import codeindex
from codepool.store.base import text

log = logging.getLogger(__name__)

# How often the loop checks that Redis still holds its state.
CHECK_SECONDS = 1.0
# After noticing a Redis that lost its data, wait this long before reading the journal:
# a worker whose issue call returned just before the loss is still writing its record.
JOURNAL_GRACE = 1.0
# Scheduling priority of the snapshot process, below Redis and the workers.
SNAPSHOT_NICENESS = 10
# At shutdown a last snapshot is written if the previous one took less than this.
FINAL_SNAPSHOT_MAX_SECONDS = 5.0


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


async def _catch_up(client: Redis, settings: Settings) -> RestoreStats | None:
    directory = snapshots_dir(settings.data_dir)
    # Every record of this Redis's history the journal still keeps, not only those since
    # the newest snapshot: the writes Redis lost may be older than that snapshot's start
    # (it read them from Redis before Redis lost them). Counters tell which are missing.
    epoch = await client.get(keys.EPOCH)
    records = read_journal(journal_dir(settings.data_dir), epoch_began(epoch or b""))
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


async def ensure_state(client: Redis, settings: Settings, *, catch_up: bool = True) -> str:
    """Make Redis hold the codepool state before anything is served; returns what was
    done: "kept", "caught-up", "initialized" or "restored". ``catch_up`` only while
    nothing else writes to Redis (its snapshot must be exact). Every pool is in the
    code index afterwards (_index_pools)."""
    outcome = await _ensure_state(client, settings, catch_up=catch_up)
    await _index_pools(client)
    return outcome


async def _index_pools(client: Redis) -> None:
    """Pools from before the code index (or a restore that died before indexing) are
    indexed before anything is served (codepool.store.codeindex.ensure_all)."""
    done = await codeindex.ensure_all(client)
    if done:
        log.warning("code index: indexed %d code(s) of pools not yet in it", done)


async def _ensure_state(client: Redis, settings: Settings, *, catch_up: bool) -> str:
    directory = snapshots_dir(settings.data_dir)
    with directory_lock(directory):
        if await client.exists(keys.RESTORING):
            log.warning("a restore did not finish: restoring again")
            await restore_from_disk(client, settings)
            return "restored"
        if await client.exists(keys.EPOCH):
            if catch_up and settings.journal and await _catch_up(client, settings) is not None:
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


class SnapshotLoop:
    """Snapshots every ``snapshot_interval`` seconds, and a restore whenever Redis comes
    back without its state. ``run()`` blocks until :meth:`request_stop`."""

    def __init__(self, settings: Settings, url: str) -> None:
        self.settings = settings
        self.url = url
        self._stop = threading.Event()
        self.last: SnapshotInfo | None = None
        self.failures = 0

    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        client = make_redis(self.url)
        interval = self.settings.snapshot_interval
        due = time.monotonic()  # a first snapshot right away: the base a restore needs
        try:
            while not self._stop.is_set():
                try:
                    await self._check(client)
                    if time.monotonic() >= due:
                        await self._snapshot(client)
                        due = time.monotonic() + interval
                except (RedisError, OSError) as exc:
                    self.failures += 1
                    log.error("snapshot loop: %s", exc)
                await asyncio.to_thread(self._stop.wait, CHECK_SECONDS)
            if self.last is not None and self.last.seconds < FINAL_SNAPSHOT_MAX_SECONDS:
                with contextlib.suppress(RedisError, OSError):
                    await self._snapshot(client)
        finally:
            await client.aclose()

    async def _check(self, client: Redis) -> None:
        if await client.exists(keys.EPOCH) and not await client.exists(keys.RESTORING):
            return
        log.error("Redis lost the codepool state: restoring it")
        await asyncio.sleep(JOURNAL_GRACE)
        outcome = await ensure_state(client, self.settings, catch_up=False)
        log.warning("state after the loss: %s", outcome)

    async def _snapshot(self, client: Redis) -> None:
        info = await snapshot_now(client, self.settings)
        self.last = info
        log.info(
            "snapshot %s: %d bytes, %d keys, %d available codes, %.2f s",
            info.path.name,
            info.size,
            info.keys,
            info.codes,
            info.seconds,
        )


def _run_loop(settings: Settings, url: str, parent_pid: int) -> None:
    """Body of the snapshot process (forked by ``codepool serve`` before its workers)."""
    # SIGKILL, not SIGTERM: if serve dies abruptly, Redis (SIGTERMed by its own
    # death signal) is going down too, and a "last snapshot" against it would hang on
    # reconnects and socket timeouts, outliving serve. Nothing is lost: every
    # acknowledged change is in the journal. An orderly stop still sends SIGTERM.
    die_with_parent(parent_pid, signal.SIGKILL)
    # Reading and encoding millions of codes is CPU work that can wait; Redis and the
    # workers answering clients cannot. On a small machine they win the cores.
    os.nice(SNAPSHOT_NICENESS)
    loop = SnapshotLoop(settings, url)
    # Ctrl-C reaches the whole process group; like the workers, this process waits for
    # serve to stop it (SIGTERM) once the workers are gone, and then writes a last snapshot.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: loop.request_stop())
    loop.run()


class SnapshotProcess:
    """The snapshot loop in a process of its own: serve's main process runs granian, which
    forks workers; a thread there would be forked along, locks and all."""

    def __init__(self, settings: Settings, url: str) -> None:
        context = multiprocessing.get_context("fork")
        self._process = context.Process(
            target=_run_loop, args=(settings, url, os.getpid()), name="codepool-snapshots"
        )

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self) -> None:
        self._process.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Ask for a last snapshot and wait for the process; kill it after ``timeout``."""
        process = self._process
        if process.pid is None:
            return
        if process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
        process.join(timeout)
        if process.is_alive():
            log.warning("snapshot process still running %g s after SIGTERM: killing it", timeout)
            process.kill()
            process.join()
