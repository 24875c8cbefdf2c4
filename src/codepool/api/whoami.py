"""Who the bearer is: how the console learns which project an admin key belongs to."""

from __future__ import annotations

import msgspec
from litestar import Controller, get

from codepool.api.deps import Caller


class Whoami(msgspec.Struct, kw_only=True):
    role: str
    project_id: str | None  # None for root, which sees every project


class WhoamiController(Controller):
    path = "/v1/whoami"
    tags = ("projects",)

    @get("/")
    async def whoami(self, principal: Caller) -> Whoami:
        """The calling key's role and project (root: no project). User tokens: 401."""
        return Whoami(role=principal.role, project_id=principal.project_id)
