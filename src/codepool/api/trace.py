"""The trace: events and what a user holds."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import QueryParameter

from codepool import errors
from codepool.api.deps import Caller, Svc
from codepool.api.params import Count, IdPath, Skip, UserPath, UserQuery
from codepool.api.responses import SECURITY, answers
from codepool.auth import authorize
from codepool.models import Event, EventType, Page, Voucher

OptionalText = Annotated[str | None, QueryParameter()]
TypeFilter = Annotated[EventType | None, QueryParameter()]


class TraceController(Controller):
    path = "/v1/projects/{project_id:str}"
    tags = ("trace",)
    security = SECURITY

    @get("/events", responses=answers())
    async def list_events(
        self,
        project_id: IdPath,
        principal: Caller,
        services: Svc,
        user_id: UserQuery = None,
        type: TypeFilter = None,
        after: OptionalText = None,
        skip: Skip = 0,
        count: Count = 20,
    ) -> Page[Event]:
        """Events oldest first; `after` is an event id or a Unix time. Users see their own
        (never the code of a hide_code reward)."""
        authorize(principal, project_id, "admin", "user")
        if principal.role == "user":
            if user_id is not None and user_id != principal.user_id:
                raise errors.Forbidden("a user can only read their own events")
            user_id = principal.user_id
        await services.projects.get(project_id)
        return await services.trace.events(
            project_id,
            user_id=user_id,
            event_type=type,
            after=after,
            skip=skip,
            count=count,
            hide_codes=principal.role == "user",
        )

    @get("/users/{user_id:str}/vouchers", responses=answers())
    async def user_vouchers(
        self,
        project_id: IdPath,
        user_id: UserPath,
        principal: Caller,
        services: Svc,
        skip: Skip = 0,
        count: Count = 20,
    ) -> Page[Voucher]:
        """The codes a user holds, with statuses and times."""
        authorize(principal, project_id, "admin", "user")
        if principal.role == "user" and principal.user_id != user_id:
            raise errors.Forbidden("a user can only read their own vouchers")
        await services.projects.get(project_id)
        return await services.trace.vouchers(
            project_id, user_id, skip, count, hide_codes=principal.role == "user"
        )
