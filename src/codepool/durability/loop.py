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
from codepool.durability.snapshot_format import SnapshotInfo
from codepool.durability.startup import ensure_state, make_redis, snapshot_now
from codepool.embedded import die_with_parent
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
