"""The snapshot loop of ``codepool serve``: in a process beside the workers, a snapshot
every ``snapshot_interval`` seconds and, every second, a check that Redis still holds its
state marker (keys.EPOCH). A Redis that comes back empty (restarted without its files,
failed over to an empty replica) is restored again at once (durability.startup);
meanwhile its pools do not exist, so issue calls fail (404) instead of handing anything
out twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from codepool import keys
from codepool.durability.hosts import Lease, heartbeat, host_id
from codepool.durability.journal import journal_dir, rotation
from codepool.durability.journal_files import CLOCK_SKEW, prune
from codepool.durability.snapshot_dir import list_snapshots, snapshots_dir
from codepool.durability.snapshot_format import SnapshotInfo, read_header
from codepool.durability.startup import (
    MissingJournalsError,
    ensure_state,
    make_redis,
    snapshot_now,
)
from codepool.parent_death import die_with_parent
from codepool.settings import Settings

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


class SnapshotLoop:
    """Snapshots every ``snapshot_interval`` seconds, and a restore whenever Redis comes
    back without its state, while this host holds the snapshot lease (many hosts: one
    takes snapshots and restores; another takes over once it stops renewing). Every
    host registers itself each second (durability.hosts) and prunes its own journal.
    ``run()`` blocks until :meth:`request_stop`."""

    def __init__(self, settings: Settings, url: str) -> None:
        self.settings = settings
        self.url = url
        self.host = host_id(settings)
        self._stop = threading.Event()
        self.last: SnapshotInfo | None = None
        self.failures = 0
        self.leading = False
        self._refused: str | None = None  # the last restore refusal logged

    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        client = make_redis(self.url)
        lease = Lease(client, keys.SNAPSHOT_TAKER, self.host, self.settings.snapshot_lease)
        keeper = asyncio.create_task(self._keep(lease))
        interval = self.settings.snapshot_interval
        due = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    await heartbeat(client, self.host, self.settings.data_dir)
                    leading = await lease.hold()
                    if leading and not self.leading:
                        log.info("host %s takes the snapshots", self.host)
                        due = time.monotonic()  # a first one at once: the base a restore needs
                    self.leading = leading
                    if leading:
                        await self._check(client, lease)
                        if time.monotonic() >= due:
                            await self._snapshot(client)
                            due = time.monotonic() + interval
                    else:
                        await self._prune(client)
                except (RedisError, OSError) as exc:
                    self.failures += 1
                    log.error("snapshot loop: %s", exc)
                except MissingJournalsError as exc:
                    self.failures += 1
                    if str(exc) != self._refused:
                        log.error("Redis lost the codepool state; not restoring it: %s", exc)
                        self._refused = str(exc)
                await asyncio.to_thread(self._stop.wait, CHECK_SECONDS)
            if (
                self.leading
                and self.last is not None
                and self.last.seconds < FINAL_SNAPSHOT_MAX_SECONDS
            ):
                with contextlib.suppress(RedisError, OSError):
                    await self._snapshot(client)
            if self.leading:  # another host takes over at once, not after the TTL
                with contextlib.suppress(RedisError, OSError):
                    await lease.give_up()
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            await client.aclose()

    async def _keep(self, lease: Lease) -> None:
        """Renew the lease every second while leading, also while a long snapshot or
        restore keeps the loop busy."""
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            if self.leading:
                with contextlib.suppress(RedisError, OSError):
                    self.leading = await lease.hold()

    async def _check(self, client: Redis, lease: Lease) -> None:
        if await client.exists(keys.EPOCH) and not await client.exists(keys.RESTORING):
            self._refused = None
            return
        log.error("Redis lost the codepool state: restoring it")
        await asyncio.sleep(JOURNAL_GRACE)
        outcome = await ensure_state(client, self.settings, catch_up=False, lease=lease)
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
        # The other hosts prune their journals up to the oldest snapshot kept here.
        directory = snapshots_dir(self.settings.data_dir)
        kept = list_snapshots(directory)[: self.settings.snapshot_keep]
        if kept:
            await client.set(keys.SNAPSHOTS_KEPT_FROM, repr(read_header(kept[-1]).since))

    async def _prune(self, client: Redis) -> None:
        """A host that takes no snapshots deletes the journal files no kept snapshot of
        the taker's needs."""
        kept_from = await client.get(keys.SNAPSHOTS_KEPT_FROM)
        if kept_from is not None:
            prune(
                journal_dir(self.settings.data_dir),
                float(kept_from) - CLOCK_SKEW,  # Redis's clock, the files' mtimes ours
                rotation(self.settings.snapshot_interval),
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
