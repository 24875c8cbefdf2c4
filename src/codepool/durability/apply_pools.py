"""A restore's pool hashes, written last per project (without them no code can be handed
out), with counters recounted from what was written:

- total = available + assigned + redeemed, assigned and redeemed counted from the
  issued records now in Redis, so they are exact whatever the snapshot's timing;
- `armed` from the restored available count (a threshold is armed exactly while more
  than it is available); `soon_armed` (empty-soon alerts) as the snapshot had it, less
  the thresholds whose alerts the journal fires again, plus those the forecast at the
  restore (restored counters, restored stock) is above;
- a pool the snapshot does not know comes back as a placeholder ("restored-<id>").

The same pass over the issued records fills the holds set and rebuilds the lists a
release shifted under the snapshot's reader (durability.apply_lists).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

from codepool import keys
from codepool.durability.plan import NO_CLOCK, RS, US, Clocks, ProjectJournal, reflected
from codepool.durability.writer import PUSH_CHUNK, Writer
from codepool.store import stats

log = logging.getLogger(__name__)

PLACEHOLDER_PREFIX = "restored-"


class PoolHashes:
    """One project's pool hashes during a restore: kept as the snapshot had them, written
    by :meth:`write` once everything else of the project is."""

    def __init__(self, project: str, journal: ProjectJournal, w: Writer, clocks: Clocks) -> None:
        self.project = project
        self.j = journal
        self.w = w
        self.clocks = clocks
        self.hashes: dict[str, dict[bytes, bytes]] = {}
        self.stats_available = 0
        self.stored = 0  # code instances of the restored pools (keys.project_stored)

    async def recount_and_rebuild(self, rebuild: set[str]) -> dict[str, tuple[int, int]]:
        """Assigned and redeemed per pool, counted from the issued records now in Redis
        (exact whatever the snapshot's timing); and the lists to rebuild, rebuilt."""
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        wanted: dict[str, list[tuple[float, int, bytes]]] = {key: [] for key in rebuild}
        issued = keys.issued(self.project)
        seq = 0
        holds: list[bytes] = []  # ZADD arguments: hold_expires_at, code, ...
        async for code, record in self.w.client.hscan_iter(issued, count=1000):
            for raw in record.split(RS):
                f = raw.split(US)
                pool = f[0].decode()
                counts[pool][0 if f[1] == b"a" else 1] += 1
                if len(f) > 7 and f[1] == b"a":
                    holds += [f[7], code]
                if wanted:
                    seq += 1
                    for key in (
                        keys.pool_log(self.project, pool),
                        keys.user_codes(self.project, f[4].decode()) if f[4] else "",
                    ):
                        if key in wanted:
                            wanted[key].append((float(f[2]), seq, code))
        # Every hold in the records is in the holds set, scored no later than it ends
        # (LT: an entry the snapshot had keeps its score, as issue.lua's ZADD LT does).
        for i in range(0, len(holds), 2 * PUSH_CHUNK):
            await self.w.call(
                "ZADD", keys.holds(self.project), "LT", *holds[i : i + 2 * PUSH_CHUNK]
            )
        for key, entries in wanted.items():
            # Hand-out order is assigned time; within one script call (one time) it is
            # the order the snapshot read, which the skip did not change.
            read: list[bytes] = await self.w.client.lrange(key, 0, -1)  # type: ignore[assignment]
            where: dict[bytes, int] = {}
            for index, code in enumerate(read):
                where.setdefault(code, index)
            # An entry the reader skipped goes after the one the records list before it.
            entries.sort(key=lambda e: (e[0], e[1]))
            placed: list[tuple[float, float, int, bytes]] = []
            previous = -1.0
            for at, seq_no, code in entries:
                found = where.get(code)
                previous = float(found) if found is not None else previous + 1e-6
                placed.append((at, previous, seq_no, code))
            placed.sort()
            await self.w.call("DEL", key)
            await self.w.push(key, [code for _, _, _, code in placed])
        return {pool: (a, r) for pool, (a, r) in counts.items()}

    async def write(
        self, pool: str, counts: tuple[int, int], placeholder: bool, available: int
    ) -> None:
        key = keys.pool(self.project, pool)
        assigned, redeemed = counts
        self.stats_available += available
        self.stored += available + sum(counts)
        handed = self.j.handed_out.get(pool, {})
        popped = max(self.clocks.max_popped[pool], max(handed) + 1 if handed else 0)
        if placeholder:
            name = f"{PLACEHOLDER_PREFIX}{pool}"
            first_at = min((float(o.at) for o in self.j.by_pool[pool] if o.at), default=time.time())
            fields: dict[bytes, bytes] = {
                b"id": pool.encode(),
                b"name": name.encode(),
                b"created_at": repr(first_at).encode(),
                b"expires_at": b"",
                b"thresholds": b"",
                b"notify": b"{}",
                b"armed": b"",
                b"exhausted_armed": b"0",
                b"soon": b"",
                b"soon_armed": b"",
            }
            await self.w.call("SADD", keys.pools(self.project), pool)
            await self.w.call("HSETNX", keys.pool_names(self.project), name, pool)
            log.warning(
                "restore: pool %s of project %s is not in the snapshot; restored as %r with "
                "its %d journaled hand-out(s) and nothing available",
                pool, self.project, name, assigned + redeemed,
            )  # fmt: skip
        else:
            fields = {
                k: v
                for k, v in self.hashes[pool].items()
                # ix: the pool's code index upload, rebuilt after the restore (restore.py)
                if not k.startswith(b"committing:") and k != b"ix"
            }
            # A threshold is armed exactly while more than it is available (issue.lua
            # fires and disarms it on the way down, a release or refill re-arms it on the
            # way up); the alerts of crossings since the snapshot are journaled.
            thresholds = fields.get(b"thresholds", b"").decode().split(",")
            armed = [t for t in thresholds if t and available > int(t)]
            fields[b"armed"] = ",".join(armed).encode()
            fields[b"exhausted_armed"] = b"1" if available > 0 else b"0"
            if b"soon" in fields:
                fields[b"soon_armed"] = await self._soon_armed(pool, fields, available)
        fields.update(
            {
                b"total": str(available + assigned + redeemed).encode(),
                b"assigned": str(assigned).encode(),
                b"redeemed": str(redeemed).encode(),
            }
        )
        if popped or b"popped" in fields:  # issue.lua creates it with the first hand-out
            fields[b"popped"] = str(popped).encode()
        flat: list[bytes] = []
        for k, v in fields.items():
            flat += [k, v]
        await self.w.call("HSET", key, *flat)

    async def _soon_armed(self, pool: str, fields: dict[bytes, bytes], available: int) -> bytes:
        soon = [t for t in fields.get(b"soon", b"").decode().split(",") if t]
        if not soon:
            return b""
        armed = set(fields.get(b"soon_armed", b"").decode().split(","))
        clock = self.clocks.last.get(keys.pool(self.project, pool), NO_CLOCK)
        for op in self.j.ops:  # alerts the journal fires again were disarmed by them
            soon_alert = op.kind == "alert" and op.code.startswith(b"soon:")
            if soon_alert and op.pool == pool and not reflected(op, clock):
                armed.discard(op.code.split(b":")[1].decode())
        at = time.time()
        counts = await stats.recent_issued(self.w.client, self.project, pool, at)
        return ",".join(stats.armed_soon(soon, armed, counts, at, available)).encode()
