"""The hold reaper: expired holds go back to their pools by themselves.

A hand-out with ``hold_seconds`` (issue, purchase) stays a hold until it is confirmed
(``POST /codes/confirm``), redeemed, released, or its ``hold_expires_at`` passes; then
this loop gives it back through lua/reap_holds.lua, one atomic step per batch of due
codes, each a release with ``VOUCHER_RELEASED {"reason": "hold_expired"}``.

Every app process (every worker on every host) runs the loop; one at a time reaps: the
holder of a lease in Redis (keys.HOLD_REAPER, lua/lease.lua), renewed every tick and
taken over by another process once a dead holder's TTL has run out
(``CODEPOOL_HOLD_REAPER_LEASE``). The lease only saves work: each batch is one script
that decides from the records alone, so two reapers at once (a holder that stalled past
its TTL) could not give a hold back twice.

A tick (every ``CODEPOOL_HOLD_REAP_INTERVAL`` seconds) costs the lease holder one lease
call, one SMEMBERS of the project registry and one pipelined ``ZRANGEBYSCORE ... LIMIT 0
1`` per project; only a project with a due entry gets a script call. The others pay
the lease call only. The reaper's releases are journaled like an admin's release, so a
restore after a data loss ends in the state Redis had.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time

from redis.exceptions import RedisError

from codepool import keys
from codepool.durability.records import ReleaseRecord
from codepool.store import codeindex
from codepool.store.base import Backend, now, text
from codepool.store.pos import give_back_args

log = logging.getLogger("codepool.holds")

# Codes one reap_holds.lua call looks at: a few ms of Redis at most.
REAP_BATCH = 500
# close(): rounds of cancelling (0.05 s each) before giving up on the task.
STOP_ROUNDS = 100
HOLD_EXPIRED = "hold_expired"


class HoldReaper:
    def __init__(self, backend: Backend, *, token: str = "") -> None:
        self._b = backend
        # Unique per process (and per app instance in one process).
        self.token = token or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.leading = False  # held the lease at the last tick
        self.released = 0  # holds given back by this process (for /metrics and tests)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="codepool-hold-reaper")

    async def close(self) -> None:
        """Stop, and give the lease up so another process takes over at once."""
        self._stopping = True
        task = self._task
        if task is not None:
            # A cancel can be lost inside redis-py on 3.11 (see notify.worker): repeat it.
            for _ in range(STOP_ROUNDS):
                if task.done():
                    break
                task.cancel()
                await asyncio.wait([task], timeout=0.05)
            await asyncio.gather(task, return_exceptions=True)
            self._task = None
        if self.leading:
            with contextlib.suppress(RedisError, OSError):  # else its TTL ends it
                await self._lease(0)
            self.leading = False

    async def _run(self) -> None:
        interval = self._b.settings.hold_reap_interval
        failing = False
        while not self._stopping:
            try:
                await self.tick()
            except (RedisError, OSError) as exc:
                if not failing:  # once per outage, not once per tick
                    log.warning("hold reaper: %s: %s (retrying)", type(exc).__name__, exc)
                failing = True
            except Exception:
                log.exception("hold reaper: unexpected error (retrying)")
            else:
                failing = False
            await asyncio.sleep(interval)

    async def _lease(self, ttl_ms: int) -> bool:
        taken = await self._b.scripts.run("lease", [keys.HOLD_REAPER], [self.token, ttl_ms])
        return int(taken) == 1

    async def tick(self) -> int:
        """One round: take or renew the lease; holding it, reap every project that has a
        due hold. Returns the holds given back."""
        self.leading = await self._lease(int(self._b.settings.hold_reaper_lease * 1000))
        if not self.leading:
            return 0
        client = self._b.client
        projects = sorted(text(p) for p in await client.smembers(keys.PROJECTS))
        if not projects:
            return 0
        at = now()
        async with client.pipeline(transaction=False) as pipe:
            for project in projects:
                pipe.zrangebyscore(keys.holds(project), "-inf", at, start=0, num=1)
            due = await pipe.execute()
        released = 0
        for project, first in zip(projects, due, strict=True):
            if first:
                released += await self.reap(project)
        return released

    async def reap(self, project: str) -> int:
        """Give back every hold of ``project`` that has ended, a batch per script call."""
        b = self._b
        names = [
            keys.holds(project),
            keys.issued(project),
            keys.events(project),
            keys.outbox(project),
            keys.webhook(project),
            keys.code_index_uploads(project),
        ]
        released = 0
        while True:
            at = now()
            raw = await b.scripts.run(
                "reap_holds",
                names,
                [
                    at,
                    REAP_BATCH,
                    b.settings.events_maxlen,
                    *give_back_args(project, b.settings, at),
                    codeindex.bucket_template(project),
                ],
            )
            looked, redis_us, flat = int(raw[0]), int(raw[1]), raw[2:]
            records = [
                ReleaseRecord(
                    written=time.time(),
                    project=project,
                    pool=text(flat[i + 1]),
                    code=text(flat[i]),
                    at=text(flat[i + 2]),
                    user=text(flat[i + 3]),
                    reward=text(flat[i + 4]),
                    purchase=text(flat[i + 5]),
                    released_at=repr(at),
                    position=int(flat[i + 6]),
                    reason=HOLD_EXPIRED,
                    redis_us=redis_us,
                )
                for i in range(0, len(flat), 7)
            ]
            released += len(records)
            self.released += len(records)
            if records and b.journal is not None:
                try:
                    await b.journal.append(records)
                except Exception:
                    # Done in Redis; a restore after a data loss would hold them again
                    # (and give them back again once it runs): logged, not retried.
                    log.error("hold reaper: %d release(s) not journaled", len(records))
            if looked < REAP_BATCH:
                return released
