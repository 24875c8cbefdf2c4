"""What the agent tools answer, and how an HTTP answer becomes it.

TypedDicts, because the MCP SDK derives each tool's output schema from its return type
and does not read msgspec Structs; typing_extensions' TypedDict, which pydantic needs
below Python 3.12. The field names are the contract's (API.md, "People and agents").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, NotRequired, cast

from typing_extensions import TypedDict

Status = Literal["available", "assigned", "redeemed"]


# -- what the tools answer ------------------------------------------------------------


class ProjectOut(TypedDict):
    id: str
    name: str


class PoolSummaryOut(TypedDict):
    id: str
    name: str
    total: int
    available: int


class PoolOut(TypedDict):
    id: str
    name: str
    company_id: str  # the project id, under the name marketing platforms use
    total: int
    available: int
    assigned: int
    redeemed: int
    used_by: list[str]
    low_stock_thresholds: list[int]
    expires_at: float | None
    created_at: float
    empty_soon_alerts: NotRequired[list[int]]  # where the service has forecasts


class CodeOut(TypedDict):
    code: str
    status: Status
    assigned_time: float | None
    redeemed_time: float | None
    user_id: str | None
    reward_id: str | None
    hold_expires_at: NotRequired[float | None]  # where the service has holds


class StatsPointOut(TypedDict):
    t: float
    issued: int
    redeemed: int
    released: int


class StatsOut(TypedDict):
    pool_id: str
    available: int
    rate_per_minute: float | None  # None: this service keeps no per-minute counters
    empty_at: float | None
    series: list[StatsPointOut]


class ValidationOut(TypedDict):
    valid: bool
    status: Status | None
    reason: str | None
    pool_id: str | None
    reward_id: str | None
    user_id: str | None
    assigned_time: float | None
    redeemed_time: float | None
    hold_expires_at: float | None


class RewardOut(TypedDict):
    id: str
    name: str
    pool_id: str
    hide_code: bool
    per_user_limit: int | None
    metadata: dict[str, Any]
    created_at: float
    available: int


class EventOut(TypedDict):
    id: str
    type: str
    time: float
    user_id: NotRequired[str]
    reward_id: NotRequired[str]
    pool_id: NotRequired[str]
    code: NotRequired[str]
    purchase_id: NotRequired[str]
    threshold: NotRequired[int]
    available: NotRequired[int]
    reason: NotRequired[str]
    hold_expires_at: NotRequired[float]
    rate_per_minute: NotRequired[float]
    empty_at: NotRequired[float]
    threshold_seconds: NotRequired[int]


class _Paging(TypedDict):
    """Beside ``data`` in every list answer that succeeded, as in the HTTP API."""

    matched: NotRequired[int]
    matched_limited: NotRequired[bool]
    skip: NotRequired[int]
    limit: NotRequired[int]


class ProjectsAnswer(_Paging):
    success: bool
    data: list[ProjectOut] | None
    error: str | None


class PoolsAnswer(_Paging):
    success: bool
    data: list[PoolSummaryOut] | None
    error: str | None


class PoolAnswer(TypedDict):
    success: bool
    data: PoolOut | None
    error: str | None


class CodesAnswer(_Paging):
    success: bool
    data: list[CodeOut] | None
    error: str | None


class StatsAnswer(TypedDict):
    success: bool
    data: StatsOut | None
    error: str | None


class ValidationAnswer(TypedDict):
    success: bool
    data: ValidationOut | None
    error: str | None


class RewardsAnswer(_Paging):
    success: bool
    data: list[RewardOut] | None
    error: str | None


class EventsAnswer(_Paging):
    success: bool
    data: list[EventOut] | None
    error: str | None


# -- from the HTTP answers ------------------------------------------------------------


def _pick(raw: Mapping[str, Any], names: Any, optional: frozenset[str] = frozenset()) -> Any:
    """``names`` from an HTTP answer: each always (null when absent), but those in
    ``optional`` (fields only some services have: holds, forecasts) only when sent.
    TypedDict's own __optional_keys__ cannot tell under `from __future__ import annotations`."""
    return {name: raw.get(name) for name in names if name not in optional or name in raw}


def project_out(raw: Mapping[str, Any]) -> ProjectOut:
    return ProjectOut(id=raw["id"], name=raw["name"])


def pool_summary_out(raw: Mapping[str, Any]) -> PoolSummaryOut:
    return cast(PoolSummaryOut, _pick(raw, PoolSummaryOut.__annotations__))


def pool_out(raw: Mapping[str, Any]) -> PoolOut:
    picked = _pick(raw, PoolOut.__annotations__, frozenset({"empty_soon_alerts"}))
    return cast(PoolOut, {**picked, "company_id": raw["project_id"]})


def code_out(raw: Mapping[str, Any]) -> CodeOut:
    return cast(CodeOut, _pick(raw, CodeOut.__annotations__, frozenset({"hold_expires_at"})))


def stats_out(raw: Mapping[str, Any]) -> StatsOut:
    series = [cast(StatsPointOut, _pick(p, StatsPointOut.__annotations__)) for p in raw["series"]]
    return StatsOut(
        pool_id=raw["pool_id"],
        available=raw["available"],
        rate_per_minute=raw["rate_per_minute"],
        empty_at=raw["empty_at"],
        series=series,
    )


def stats_from_pool(raw: Mapping[str, Any]) -> StatsOut:
    """A service without ``GET .../stats`` (before issue 17): the pool's counts, no rate."""
    return StatsOut(
        pool_id=raw["id"],
        available=raw["available"],
        rate_per_minute=None,
        empty_at=None,
        series=[],
    )


def validation_out(raw: Mapping[str, Any]) -> ValidationOut:
    return cast(ValidationOut, _pick(raw, ValidationOut.__annotations__))


def reward_out(raw: Mapping[str, Any]) -> RewardOut:
    return cast(RewardOut, _pick(raw, RewardOut.__annotations__))


def event_out(raw: Mapping[str, Any]) -> EventOut:
    # Only the fields the event has (the HTTP answer leaves out the empty ones).
    return cast(EventOut, {k: v for k, v in raw.items() if k in EventOut.__annotations__})


def paged(page: Mapping[str, Any], convert: Callable[[Any], Any]) -> dict[str, Any]:
    """A list answer: ``data`` converted, the HTTP page's counters beside it."""
    return {
        "success": True,
        "data": [convert(item) for item in page["data"]],
        "error": None,
        "matched": page["matched"],
        "matched_limited": page["matched_limited"],
        "skip": page["skip"],
        "limit": page["limit"],
    }


def ok(data: Any) -> dict[str, Any]:
    return {"success": True, "data": data, "error": None}


def failed(error: str) -> dict[str, Any]:
    return {"success": False, "data": None, "error": error}
