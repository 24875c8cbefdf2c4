"""The agent tools: read-only views of codepool, each answering ``{success, data, error}``.

Each tool is one or two calls of the public JSON API (door.py) with the caller's key;
the functions below only check the arguments an agent gets wrong most, and reshape
the HTTP answer into the contract's field names (shapes.py). Their signatures and
docstrings are what an agent reads: the SDK makes the input schemas from them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol, cast

from mcp.server.mcpserver import Context
from pydantic import Field

from codepool.mcp.door import MAX_COUNT, Door, ToolFailedError
from codepool.mcp.shapes import (
    CodesAnswer,
    EventsAnswer,
    PoolAnswer,
    PoolsAnswer,
    ProjectsAnswer,
    RewardsAnswer,
    StatsAnswer,
    Status,
    ValidationAnswer,
    code_out,
    event_out,
    failed,
    ok,
    paged,
    pool_out,
    pool_summary_out,
    project_out,
    reward_out,
    stats_from_pool,
    stats_out,
    validation_out,
)
from codepool.models import ID_PATTERN

ProjectId = Annotated[str, Field(description="A project id, as list_projects gives it.")]
PoolId = Annotated[str, Field(description="A pool id, as list_voucher_pools gives it.")]
Skip = Annotated[int, Field(description="Entries to skip (paging), >= 0.")]
Count = Annotated[int, Field(description=f"Entries to return, 1..{MAX_COUNT}.")]

MAX_MINUTES = 7 * 24 * 60  # the stats window's longest, as GET .../stats takes it

log = logging.getLogger("codepool.mcp")
_ID = re.compile(ID_PATTERN).fullmatch
# What a pos key may see and call (API.md: validate at the till, and its own project).
POS_TOOLS = frozenset({"list_projects", "validate_voucher_code"})


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
    minutes: Annotated[
        int, Field(description=f"Window of the series in minutes, 1..{MAX_MINUTES}.")
    ] = 60,
) -> StatsAnswer:
    """A pool's hand-out rate: codes available, codes per minute now, when it runs dry
    at that rate (empty_at, null while the rate is 0), and a per-minute series."""

    async def fetch(door: Door) -> dict[str, Any]:
        if not 1 <= minutes <= MAX_MINUTES:
            raise ToolFailedError(f"invalid_request: minutes must be 1..{MAX_MINUTES}")
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
