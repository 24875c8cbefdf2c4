"""The ``stats`` client verb: a pool's hand-outs per minute as sparklines, its rate and
forecast."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from codepool.client.base import Ctx, Subparsers, add
from codepool.client.output import fields, when
from codepool.models import PoolStats

_BARS = " ▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int]) -> str:
    """One character per value, its height relative to the largest."""
    top = max(values, default=0)
    if top == 0:
        return _BARS[1] * len(values)
    return "".join(_BARS[max(1 if v else 0, round(v / top * 8))] for v in values)


def stats(ctx: Ctx) -> None:
    pool_id = ctx.pool(ctx.args.pool)
    answer = ctx.api.call(
        "GET", ctx.path("pools", pool_id, "stats"), PoolStats, params={"minutes": ctx.args.minutes}
    )

    def people() -> Any:
        series = answer.series
        rows: list[tuple[str, object]] = [
            ("pool", answer.pool_id),
            ("available", f"{answer.available:,}"),
            ("rate", f"{answer.rate_per_minute:,.1f} codes/min"),
            ("empty at", when(answer.empty_at) if answer.empty_at else "never at this rate"),
        ]
        start = when(series[0].t) if series else "-"
        for name in ("issued", "redeemed", "released"):
            counts = [getattr(point, name) for point in series]
            rows.append(
                (name, f"{sparkline(counts)}  {sum(counts):,} (max {max(counts, default=0):,}/min)")
            )
        rows.append(("minutes", f"{len(series)} from {start}, one character each"))
        return fields(rows)

    ctx.out.answer(answer, people)


def add_verbs(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    """Register ``stats``."""
    p = add(commands, "stats", stats, common, "a pool's hand-outs per minute, rate and forecast")
    p.add_argument("pool", metavar="POOL", help="pool id or name")
    p.add_argument("--minutes", type=int, default=60, help="minutes back (1-10080; default 60)")
