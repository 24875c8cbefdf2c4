"""A restore's code instances: the issued records and the available lists.

- issued records: missed hand-outs are added, missed redeems and releases applied
  (durability.plan.apply_ops). The issued hash is read before the available lists, so a
  code read as available cannot already be in it.
- available lists: codes are kept by position; a position the journal says was handed
  out is dropped, so no acknowledged code is ever available again; a release the
  snapshot missed is put back at its position; a replayed answer added back to the
  records leaves the list by value (its position is unknown).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

from codepool import keys
from codepool.durability.plan import NO_CLOCK, Clocks, Op, ProjectJournal, apply_ops
from codepool.durability.snapshot_format import Avail, Clock, HashSlice
from codepool.durability.writer import WRITE_BATCH, Writer

log = logging.getLogger(__name__)


class IssuedRecords:
    """One project's issued hash during a restore."""

    def __init__(self, project: str, journal: ProjectJournal, w: Writer, clocks: Clocks) -> None:
        self.project = project
        self.j = journal
        self.w = w
        self.clocks = clocks
        self.seen: set[bytes] = set()
        self.replays_added: dict[bytes, list[Op]] = {}
        self.done = False
        # pool -> code -> how many instances must leave its available list by value
        self.value_removals: dict[str, Counter[bytes]] = defaultdict(Counter)

    async def slice(self, frame: HashSlice) -> None:
        clock = frame.clock or NO_CLOCK
        out: list[bytes] = []
        for code, record in zip(frame.flat[::2], frame.flat[1::2], strict=True):
            ops = self.j.by_code.get(code)
            if ops is None:
                out += [code, record]
                continue
            self.seen.add(code)
            new, added = apply_ops(record, ops, clock)
            # HSCAN may return a field twice; the later read (and its clock) decides.
            self.replays_added[code] = added
            if new is None:
                await self.w.call("HDEL", frame.key, code)
            else:
                out += [code, new]
        if out:
            await self.w.call("HSET", frame.key, *out)

    async def end(self, clock: Clock) -> None:
        """Codes with journaled changes that no slice held: their changes since the scan
        began (a code present for the whole scan is in it; one absent was made later)."""
        if self.done:
            return
        self.done = True
        first = self.clocks.first.get(keys.issued(self.project), clock)
        out: list[bytes] = []
        for code, ops in self.j.by_code.items():
            if code in self.seen:
                continue
            new, self.replays_added[code] = apply_ops(None, ops, first)
            if new is not None:
                out += [code, new]
            if len(out) >= 2 * WRITE_BATCH:
                await self.w.call("HSET", keys.issued(self.project), *out)
                out = []
        if out:
            await self.w.call("HSET", keys.issued(self.project), *out)
        # A replayed answer added back to the records must leave the available list.
        for added in self.replays_added.values():
            for op in added:
                self.value_removals[op.pool][op.code] += 1


class AvailableLists:
    """One project's available lists during a restore (after its issued hash)."""

    def __init__(
        self, project: str, journal: ProjectJournal, w: Writer, issued: IssuedRecords
    ) -> None:
        self.project = project
        self.j = journal
        self.w = w
        self.value_removals = issued.value_removals
        self.done: set[str] = set()
        self.length: dict[str, int] = defaultdict(int)
        self._sorted_releases: dict[str, list[Op]] = {}
        self._next_release: dict[str, int] = defaultdict(int)

    def _pool_releases(self, pool: str) -> list[Op]:
        if pool not in self._sorted_releases:
            self._sorted_releases[pool] = sorted(
                self.j.releases.get(pool, []), key=lambda o: o.counter
            )
        return self._sorted_releases[pool]

    async def _emit(self, pool: str, codes: list[bytes]) -> None:
        removals = self.value_removals.get(pool)
        if removals:
            kept = []
            for code in codes:
                if removals.get(code, 0) > 0:
                    removals[code] -= 1
                else:
                    kept.append(code)
            codes = kept
        if codes:
            await self.w.push(keys.pool_available(self.project, pool), codes)
            self.length[pool] += len(codes)

    async def _releases(self, pool: str, below: int | None, captured_from: int | None) -> None:
        """Codes put back by journaled releases at positions below ``below`` (all: None).

        Those at or above ``captured_from`` lie in the slice being written, which holds
        them (or not, if they went out again); the others lie where no slice was read
        (codes popped before their slice was read, or pushed after the last one) and go
        back now, in position order, unless the journal says they went out again.
        """
        releases = self._pool_releases(pool)
        handed = self.j.handed_out.get(pool, {})
        i = self._next_release[pool]
        back: list[bytes] = []
        while i < len(releases) and (below is None or releases[i].counter < below):
            op = releases[i]
            i += 1
            held = captured_from is not None and op.counter >= captured_from
            if not held and op.counter not in handed:
                back.append(op.code)
        self._next_release[pool] = i
        await self._emit(pool, back)

    async def slice(self, frame: Avail) -> None:
        pool = frame.pool
        await self._releases(pool, frame.start + frame.count, frame.start)
        handed = self.j.handed_out.get(pool, {})
        codes = frame.codes.split(b"\n")
        if handed:
            kept = []
            for offset, code in enumerate(codes):
                journaled = handed.get(frame.start + offset)
                if journaled is None:
                    kept.append(code)
                elif journaled != code:
                    # Positions of another history (should not happen): the journal is
                    # sure this position went out, so it stays out.
                    log.warning(
                        "restore: position %d of pool %s holds %r, journal says %r",
                        frame.start + offset, pool, code, journaled,
                    )  # fmt: skip
            codes = kept
        await self._emit(pool, codes)

    async def end(self, pool: str) -> None:
        if pool in self.done:
            return
        self.done.add(pool)
        await self._releases(pool, None, None)
