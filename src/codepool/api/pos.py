"""Point of sale: validate, redeem, release a presented code."""

from __future__ import annotations

from litestar import Controller, post
from litestar.params import JSONBody

from codepool import errors
from codepool.api.deps import Caller, Svc
from codepool.api.params import IdPath
from codepool.api.responses import BODY, SECURITY, WRITE, answers
from codepool.auth import authorize
from codepool.models import CodeIn, CodeInstance, Validation

# What redeem and release may answer besides the shared errors.
_CHANGE = (
    errors.UnknownCode,
    errors.NotIssued,
    errors.AlreadyRedeemed,
    errors.PoolExpired,
    errors.NotReady,
    errors.NotReplicated,
)


class PosController(Controller):
    path = "/v1/projects/{project_id:str}/codes"
    tags = ("point of sale",)
    security = SECURITY

    @post(
        "/validate",
        status_code=200,
        responses=answers(errors.UnknownCode, errors.NotIssued, errors.PoolExpired, *BODY),
    )
    async def validate(
        self, project_id: IdPath, data: JSONBody[CodeIn], principal: Caller, services: Svc
    ) -> Validation:
        """Is this code genuine, issued and unused? Changes nothing."""
        authorize(principal, project_id, "pos", "admin")
        return await services.pos.validate(project_id, data.code)

    @post("/redeem", status_code=200, responses=answers(*_CHANGE, *BODY, *WRITE))
    async def redeem(
        self, project_id: IdPath, data: JSONBody[CodeIn], principal: Caller, services: Svc
    ) -> CodeInstance:
        """Burn one assigned instance of the code, exactly once."""
        authorize(principal, project_id, "pos", "admin")
        return await services.pos.redeem(project_id, data.code)

    @post("/release", status_code=200, responses=answers(*_CHANGE, *BODY, *WRITE))
    async def release(
        self, project_id: IdPath, data: JSONBody[CodeIn], principal: Caller, services: Svc
    ) -> CodeInstance:
        """Give an assigned, unredeemed instance back to its pool (a failed checkout)."""
        authorize(principal, project_id, "admin")
        return await services.pos.release(project_id, data.code)

    @post("/confirm", status_code=200, responses=answers(*_CHANGE, errors.NotHeld, *BODY, *WRITE))
    async def confirm(
        self, project_id: IdPath, data: JSONBody[CodeIn], principal: Caller, services: Svc
    ) -> CodeInstance:
        """Make a held hand-out final: the code stays assigned past its hold_expires_at."""
        authorize(principal, project_id, "admin")
        return await services.pos.confirm(project_id, data.code)
