"""A pool's per-minute counters, hand-out rate and forecast (docs/stats.md)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import QueryParameter

from codepool import errors
from codepool.api.deps import Caller, Svc
from codepool.api.params import IdPath
from codepool.api.responses import SECURITY, answers
from codepool.auth import authorize
from codepool.models import PoolStats
from codepool.store.stats import MAX_MINUTES

Minutes = Annotated[
    int,
    QueryParameter(ge=1, le=MAX_MINUTES, description="Minutes of series, the current one last."),
]


class StatsController(Controller):
    path = "/v1/projects/{project_id:str}/pools/{pool_id:str}/stats"
    tags = ("pools",)
    security = SECURITY

    @get("/", responses=answers(errors.PoolNotFound))
    async def pool_stats(
        self,
        project_id: IdPath,
        pool_id: IdPath,
        principal: Caller,
        services: Svc,
        minutes: Minutes = 60,
    ) -> PoolStats:
        """Exact per-minute counts (zeros included), the hand-out rate and empty_at."""
        authorize(principal, project_id, "admin")
        return await services.stats.get(project_id, pool_id, minutes)
