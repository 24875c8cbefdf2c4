"""Per-minute counters and the forecast: the series, the hand-out rate, ``empty_at``.

The counters are written by the scripts that change codes (issue, redeem, release:
``count_stats`` in lua/includes/common.lua), one string per pool and UTC day
(keys.pool_stats). This module reads them, and computes the rate with the very formula
the scripts use for the empty-soon alerts (``handout_rate`` there), step for step, so
the rate an alert fired at and the rate this endpoint answers agree (a test holds them
equal). docs/stats.md explains the estimator.
"""

from __future__ import annotations

import math
import struct

from redis.asyncio import Redis

from codepool import errors, keys
from codepool.models import PoolStats, StatsPoint
from codepool.store.base import Backend, now

KINDS = 3  # issued, redeemed, released: cell = minute_of_day * 3 + kind
CELL = 4  # bytes: BITFIELD u32 cells, big-endian
MINUTES_PER_DAY = 1440
MAX_MINUTES = 7 * MINUTES_PER_DAY
KEEP_DAYS = 8  # a day's key expires this many days after the day ends (STATS_KEEP_DAYS)
RATE_MINUTES = 5  # whole minutes the rate looks back on, besides the current one

# The estimator's constants (the same in lua/includes/common.lua).
RATE_WEIGHTS = (1.0, 0.5, 0.25, 0.125, 0.0625)
RATE_WEIGHT_SUM = 1.9375
RATE_MIN_CURRENT = 10
RATE_MIN_ELAPSED = 0.25


def minute_of(at: float) -> tuple[int, float]:
    """The Unix minute of ``at`` and the fraction of it gone (stats_minute in Lua)."""
    minute = math.floor(at / 60)
    return minute, (at - minute * 60) / 60


def day_of(minute: int) -> int:
    """The UTC day (the key suffix) a Unix minute is counted under."""
    return minute // MINUTES_PER_DAY


def stats_keys(project_id: str, pool_id: str, at: float) -> tuple[str, str]:
    """The counter keys of ``at``'s day and the day before (what the scripts take)."""
    day = day_of(minute_of(at)[0])
    return keys.pool_stats(project_id, pool_id, day), keys.pool_stats(project_id, pool_id, day - 1)


def stats_templates(project_id: str, at: float) -> tuple[str, str]:
    """:func:`stats_keys` as templates ("\\0" = the pool id) for the scripts that learn
    the pool from a code's record (redeem, release)."""
    return stats_keys(project_id, "\0", at)


def handout_rate(counts: list[int], elapsed: float) -> float:
    """Codes per minute from counts[0] = hand-outs of the current minute so far and
    counts[1..5] = the five whole minutes before; ``elapsed`` = fraction of the current
    minute gone. Same operations, same order as handout_rate in lua/includes/common.lua."""
    ewma = 0.0
    for k in range(RATE_MINUTES):
        ewma = ewma + RATE_WEIGHTS[k] * counts[k + 1]
    ewma = ewma / RATE_WEIGHT_SUM
    rate = counts[0] + counts[1] * (1 - elapsed)
    rate = max(rate, ewma)
    if counts[0] >= RATE_MIN_CURRENT:
        projected = counts[0] / max(elapsed, RATE_MIN_ELAPSED)
        rate = max(rate, projected)
    return float(rate)


def forecast(counts: list[int], at: float, available: int) -> tuple[float, float | None]:
    """(rate per minute, empty_at) as the scripts format them (3 decimals); empty_at None
    while the rate is 0."""
    rate = handout_rate(counts, minute_of(at)[1])
    if rate <= 0:
        return 0.0, None
    seconds = available * 60 / rate
    return float(f"{rate:.3f}"), float(f"{at + seconds:.3f}")


def decode_cells(raw: bytes, cells: int) -> list[int]:
    """``cells`` u32 cells from a GETRANGE answer (missing bytes read as 0)."""
    padded = raw.ljust(cells * CELL, b"\0")
    return list(struct.unpack(f">{cells}I", padded[: cells * CELL]))


class StatsStore:
    def __init__(self, backend: Backend) -> None:
        self._b = backend

    async def get(
        self, project_id: str, pool_id: str, minutes: int, at: float | None = None
    ) -> PoolStats:
        """The last ``minutes`` minutes (the current one last), the rate and empty_at.

        One MULTI: the pool's existence, its available count and one GETRANGE per day
        the window touches (at most 8 for the 7-day maximum), so the answer is one
        instant's and its Redis work is bounded whatever the window.
        """
        at = now() if at is None else at
        current, _ = minute_of(at)
        first = current - max(minutes, RATE_MINUTES + 1) + 1
        spans: list[tuple[int, int, int]] = []  # (day, first minute, last minute)
        minute = first
        while minute <= current:
            day = day_of(minute)
            last = min(current, (day + 1) * MINUTES_PER_DAY - 1)
            spans.append((day, minute, last))
            minute = last + 1
        async with self._b.client.pipeline(transaction=True) as pipe:
            pipe.exists(keys.pool(project_id, pool_id))
            pipe.llen(keys.pool_available(project_id, pool_id))
            for day, lo, hi in spans:
                start = (lo - day * MINUTES_PER_DAY) * KINDS * CELL
                end = (hi - day * MINUTES_PER_DAY + 1) * KINDS * CELL - 1
                pipe.getrange(keys.pool_stats(project_id, pool_id, day), start, end)
            exists, available, *raws = await pipe.execute()
        if not exists:
            raise errors.PoolNotFound(id=pool_id)
        cells: list[int] = []
        for (_, lo, hi), raw in zip(spans, raws, strict=True):
            cells += decode_cells(raw, (hi - lo + 1) * KINDS)
        issued = cells[0::KINDS]
        # counts[0] = the current minute, then the minutes before it.
        recent = [issued[-1 - k] for k in range(RATE_MINUTES + 1)]
        rate, empty_at = forecast(recent, at, int(available))
        skip = len(issued) - minutes
        series = [
            StatsPoint(
                t=float((first + i) * 60),
                issued=cells[i * KINDS],
                redeemed=cells[i * KINDS + 1],
                released=cells[i * KINDS + 2],
            )
            for i in range(skip, len(issued))
        ]
        return PoolStats(
            pool_id=pool_id,
            available=int(available),
            rate_per_minute=rate,
            empty_at=empty_at,
            series=series,
        )


def cell_of(at: float, kind: int) -> tuple[int, int]:
    """(day, cell) a change of ``kind`` at ``at`` is counted in (stats_cell in Lua)."""
    minute, _ = minute_of(at)
    day = day_of(minute)
    return day, (minute - day * MINUTES_PER_DAY) * KINDS + kind


def expires_at(day: int) -> int:
    """When a day's counters expire (Unix seconds; stats_prepare in Lua)."""
    return (day + 1 + KEEP_DAYS) * 86400


def armed_soon(
    soon: list[str], armed: set[str], counts: list[int], at: float, available: int
) -> list[str]:
    """The empty-soon thresholds armed after a re-arm check (check_soon in Lua without
    firing): those armed, and those the forecast is above."""
    rate = handout_rate(counts, minute_of(at)[1])
    seconds = available * 60 / rate if rate > 0 else None
    return [t for t in soon if t in armed or seconds is None or seconds > int(t)]


async def recent_issued(client: Redis, project_id: str, pool_id: str, at: float) -> list[int]:
    """Hand-outs of ``at``'s minute and the five before (what the scripts' rate reads)."""
    current, _ = minute_of(at)
    async with client.pipeline(transaction=True) as pipe:
        for k in range(RATE_MINUTES + 1):
            day, cell = cell_of((current - k) * 60, 0)
            pipe.getrange(keys.pool_stats(project_id, pool_id, day), cell * CELL, cell * CELL + 3)
        raws = await pipe.execute()
    return [decode_cells(raw, 1)[0] for raw in raws]
