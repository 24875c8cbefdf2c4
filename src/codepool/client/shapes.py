"""Answers of the contract (../shared/API.md) that this branch's codepool.models lacks.

``GET .../stats`` (issue 17) and ``POST .../codes/generate`` are specified but not yet
served here; these Structs follow the contract field for field. Once the service has
them in codepool.models (PoolStats, StatsPoint, ...), import those instead.
"""

from __future__ import annotations

from msgspec import Struct


class StatsPoint(Struct, kw_only=True):
    t: float
    issued: int
    redeemed: int
    released: int


class PoolStats(Struct, kw_only=True):
    pool_id: str
    available: int
    rate_per_minute: float
    empty_at: float | None
    series: list[StatsPoint]


class GenerateIn(Struct, kw_only=True, omit_defaults=True):
    count: int
    pattern: str
    charset: str | None = None
    check_character: bool | None = None
    max_guess_probability: float | None = None


class Generated(Struct, kw_only=True):
    added: int
    total: int
    available: int
    space: float
    guess_probability: float
