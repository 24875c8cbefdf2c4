"""The agent tools: read-only views of codepool, each answering ``{success, data, error}``.

Each tool is one or two calls of the public JSON API (door.py) with the caller's key;
the functions below only check the arguments an agent gets wrong most, and reshape
the HTTP answer into the contract's field names (API.md, "People and agents").
The output types are TypedDicts because the MCP SDK derives the output schema from
them (it does not read msgspec Structs); typing_extensions' TypedDict, which pydantic
needs below Python 3.12.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal, NotRequired, Protocol, cast

from mcp.server.mcpserver import Context
from pydantic import Field
from typing_extensions import TypedDict

from codepool.mcp.door import MAX_COUNT, Door, ToolFailedError
from codepool.models import ID_PATTERN

Status = Literal["available", "assigned", "redeemed"]
ProjectId = Annotated[str, Field(description="A project id, as list_projects gives it.")]
PoolId = Annotated[str, Field(description="A pool id, as list_voucher_pools gives it.")]
Skip = Annotated[int, Field(description="Entries to skip (paging), >= 0.")]
Count = Annotated[int, Field(description=f"Entries to return, 1..{MAX_COUNT}.")]

log = logging.getLogger("codepool.mcp")
_ID = re.compile(ID_PATTERN).fullmatch
# What a pos key may see and call (API.md: validate at the till, and its own project).
POS_TOOLS = frozenset({"list_projects", "validate_voucher_code"})


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


# -- running a tool -------------------------------------------------------------------


class Doors(Protocol):
    """Where a tool finds the caller's Door: the MCP server's lifespan context."""

    async def door(self, ctx: Context) -> Door:
        """The caller's Door; raises ToolFailedError (rate limited, no credentials)."""

    async def role(self, ctx: Any) -> str | None:
        """The caller's role (None: unknown, show every tool)."""


def _doors(ctx: Context) -> Doors:
    return cast(Doors, ctx.request_context.lifespan_context)


def _id(kind: str, value: str) -> str:
    """A well-formed id, or the answer the API gives an id it does not know."""
    if not _ID(value):
        raise ToolFailedError(f"{kind}_not_found: no such {kind} (id={value!r})")
    return value


def _paging(skip: int, count: int) -> None:
    if not 1 <= count <= MAX_COUNT:
        raise ToolFailedError(f"invalid_request: count must be 1..{MAX_COUNT}, not {count}")
    if skip < 0:
        raise ToolFailedError(f"invalid_request: skip must be >= 0, not {skip}")


async def _run(ctx: Context, fetch: Callable[[Door], Awaitable[dict[str, Any]]]) -> Any:
    try:
        return await fetch(await _doors(ctx).door(ctx))
    except ToolFailedError as exc:
        return failed(str(exc))
    except Exception:
        # A bug here (or an answer of a shape this version does not know): logged with its
        # trace, and still the one answer shape for the agent, as the HTTP API's 500.
        log.exception("agent tool %s failed", (ctx.request_context.params or {}).get("name"))
        return failed("internal_error: the tool failed; the service log has the details")


# -- the tools ------------------------------------------------------------------------


async def list_projects(ctx: Context, skip: Skip = 0, count: Count = 20) -> ProjectsAnswer:
    """List the projects this key sees (root: all; a project key: its own): id and name.
    Start here: every other tool takes a project_id."""

    async def fetch(door: Door) -> dict[str, Any]:
        _paging(skip, count)
        me = await door.get("/v1/whoami")
        if me["project_id"] is None:  # root
            return paged(await door.get("/v1/projects", skip=skip, count=count), project_out)
        own = [project_out(await door.get(f"/v1/projects/{me['project_id']}"))]
        page = {"data": own[skip : skip + count], "matched": 1, "matched_limited": False}
        return paged({**page, "skip": skip, "limit": count}, lambda p: p)

    return cast(ProjectsAnswer, await _run(ctx, fetch))


async def list_voucher_pools(
    project_id: ProjectId, ctx: Context, skip: Skip = 0, count: Count = 20
) -> PoolsAnswer:
    """List a project's voucher pools: id, name, total codes ever uploaded, available."""

    async def fetch(door: Door) -> dict[str, Any]:
        _paging(skip, count)
        path = f"/v1/projects/{_id('project', project_id)}/pools"
        return paged(await door.get(path, skip=skip, count=count), pool_summary_out)

    return cast(PoolsAnswer, await _run(ctx, fetch))


async def get_voucher_pool(project_id: ProjectId, pool_id: PoolId, ctx: Context) -> PoolAnswer:
    """One voucher pool with its exact counts (available + assigned + redeemed = total),
    the rewards drawing from it (used_by), low-stock thresholds and expiry."""

    async def fetch(door: Door) -> dict[str, Any]:
        path = f"/v1/projects/{_id('project', project_id)}/pools/{_id('pool', pool_id)}"
        return ok(pool_out(await door.get(path)))

    return cast(PoolAnswer, await _run(ctx, fetch))


async def list_voucher_codes(
    project_id: ProjectId,
    pool_id: PoolId,
    ctx: Context,
    skip: Skip = 0,
    count: Count = 20,
    status: Annotated[Status | None, Field(description="Only codes with this status.")] = None,
) -> CodesAnswer:
    """List a pool's codes (one entry per uploaded instance) with status and times;
    page with skip and count (at most 1000); matched says how many there are."""

    async def fetch(door: Door) -> dict[str, Any]:
        _paging(skip, count)
        path = f"/v1/projects/{_id('project', project_id)}/pools/{_id('pool', pool_id)}/codes"
        return paged(await door.get(path, skip=skip, count=count, status=status), code_out)

    return cast(CodesAnswer, await _run(ctx, fetch))


async def get_pool_stats(
    project_id: ProjectId,
    pool_id: PoolId,
    ctx: Context,
    minutes: Annotated[int, Field(description="Window of the series, 1..10080.")] = 60,
) -> StatsAnswer:
    """A pool's hand-out rate: codes available, codes per minute now, when it runs dry
    at that rate (empty_at, null while the rate is 0), and a per-minute series."""

    async def fetch(door: Door) -> dict[str, Any]:
        path = f"/v1/projects/{_id('project', project_id)}/pools/{_id('pool', pool_id)}"
        try:
            return ok(stats_out(await door.get(f"{path}/stats", minutes=minutes)))
        except ToolFailedError as exc:
            # No such route (a service before issue 17's stats): the pool's counts alone.
            if not str(exc).startswith("not_found:"):
                raise
        return ok(stats_from_pool(await door.get(path)))

    return cast(StatsAnswer, await _run(ctx, fetch))


async def validate_voucher_code(
    project_id: ProjectId,
    code: Annotated[str, Field(description="The code as presented (1-128 characters).")],
    ctx: Context,
) -> ValidationAnswer:
    """Is this code genuine, handed out and unused? valid is true only for an assigned
    code; reason says why not. Read-only: it never redeems or changes anything."""

    async def fetch(door: Door) -> dict[str, Any]:
        path = f"/v1/projects/{_id('project', project_id)}/codes/validate"
        return ok(validation_out(await door.post(path, {"code": code})))

    return cast(ValidationAnswer, await _run(ctx, fetch))


async def list_rewards(
    project_id: ProjectId, ctx: Context, skip: Skip = 0, count: Count = 20
) -> RewardsAnswer:
    """List a project's rewards: the pool each draws from, codes available, hide_code,
    per-user limit and metadata."""

    async def fetch(door: Door) -> dict[str, Any]:
        _paging(skip, count)
        path = f"/v1/projects/{_id('project', project_id)}/rewards"
        return paged(await door.get(path, skip=skip, count=count), reward_out)

    return cast(RewardsAnswer, await _run(ctx, fetch))


async def list_events(
    project_id: ProjectId,
    ctx: Context,
    user_id: Annotated[str | None, Field(description="Only this user's events.")] = None,
    type: Annotated[
        str | None,
        Field(
            description="Only events of this type: REDEEMED_VOUCHER, VOUCHER_USED, "
            "VOUCHER_RELEASED, POOL_LOW, POOL_EXHAUSTED (and POOL_EMPTY_SOON where the "
            "service forecasts)."
        ),
    ] = None,
    after: Annotated[
        str | None, Field(description="Only events after this event id or Unix time.")
    ] = None,
    skip: Skip = 0,
    count: Count = 20,
) -> EventsAnswer:
    """The project's trace, oldest first: who got which code (REDEEMED_VOUCHER), used
    (VOUCHER_USED), released, and low-stock alerts (POOL_LOW, POOL_EXHAUSTED)."""

    async def fetch(door: Door) -> dict[str, Any]:
        _paging(skip, count)
        path = f"/v1/projects/{_id('project', project_id)}/events"
        page = await door.get(path, user_id=user_id, type=type, after=after, skip=skip, count=count)
        return paged(page, event_out)

    return cast(EventsAnswer, await _run(ctx, fetch))


TOOLS = (
    list_projects,
    list_voucher_pools,
    get_voucher_pool,
    list_voucher_codes,
    get_pool_stats,
    validate_voucher_code,
    list_rewards,
    list_events,
)
