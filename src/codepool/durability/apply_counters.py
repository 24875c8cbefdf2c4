"""A restore's per-minute counters (one string per pool and day, read with the clock):
the journaled hand-outs, redeems and releases a day's read does not reflect are counted
into the minute of their time; a day the snapshot has no key for is counted from the
journal alone. So the series stays exact across a restore."""

from __future__ import annotations

import time
from collections import defaultdict

from codepool import keys
from codepool.durability.plan import Op, ProjectJournal, reflected
from codepool.durability.snapshot_format import Counters
from codepool.durability.writer import Writer
from codepool.store import stats

_COUNTED = {"issue": 0, "redeem": 1, "release": 2}  # op kind -> counter kind (stats.py)
_DAY_BYTES = stats.MINUTES_PER_DAY * stats.KINDS * stats.CELL


def _bump(value: bytearray, cell: int) -> None:
    """One more in a u32 big-endian counter cell (BITFIELD's layout)."""
    at = cell * stats.CELL
    value[at : at + stats.CELL] = (int.from_bytes(value[at : at + stats.CELL]) + 1).to_bytes(4)


class MinuteCounters:
    """One project's per-minute counters during a restore."""

    def __init__(self, project: str, journal: ProjectJournal, w: Writer) -> None:
        self.project = project
        self.j = journal
        self.w = w
        self._counted: dict[str, list[tuple[int, Op]]] | None = None
        self.done: set[str] = set()

    def _ops(self) -> dict[str, list[tuple[int, Op]]]:
        """Counter key -> (cell, change) of every journaled hand-out, redeem, release."""
        if self._counted is None:
            self._counted = defaultdict(list)
            once: set[tuple[str, str, int]] = set()
            for op in self.j.ops:
                kind = _COUNTED.get(op.kind)
                if kind is None:
                    continue
                # A hand-out is indexed once per position already; a redeem's number
                # and a release's position are unique per pool too.
                if (op.kind, op.pool, op.counter) in once:
                    continue
                once.add((op.kind, op.pool, op.counter))
                day, cell = stats.cell_of(float(op.when), kind)
                self._counted[keys.pool_stats(self.project, op.pool, day)].append((cell, op))
        return self._counted

    async def day(self, frame: Counters) -> None:
        self.done.add(frame.key)
        value = bytearray(frame.value.ljust(_DAY_BYTES, b"\0"))
        for cell, op in self._ops().get(frame.key, []):
            if not reflected(op, frame.clock):
                _bump(value, cell)
        await self._write_counters(frame.key, bytes(value), frame.expires_ms)

    async def end(self) -> None:
        """Days the snapshot has no counters of: every journaled change of the day (its
        key did not exist when the snapshot listed the keys, so all came later)."""
        for key, cells in self._ops().items():
            if key in self.done:
                continue
            value = bytearray(_DAY_BYTES)
            for cell, _ in cells:
                _bump(value, cell)
            day = int(key.rsplit(":", 1)[1])
            await self._write_counters(key, bytes(value), stats.expires_at(day) * 1000)

    async def _write_counters(self, key: str, value: bytes, expires_ms: int) -> None:
        if not expires_ms:
            await self.w.call("SET", key, value)
        elif expires_ms > time.time() * 1000:
            await self.w.call("SET", key, value, "PXAT", expires_ms)
