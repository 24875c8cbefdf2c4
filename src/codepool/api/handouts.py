"""The two routes that hand codes out: admin issue and user purchase.

Each is served by two shells that share everything here: the fast ASGI route
(api/fast.py), which serves them in production, and the Litestar handler (api/pools.py,
api/rewards.py), which documents them in the OpenAPI schema and serves them when
``CODEPOOL_FAST_ROUTES=0``. Whatever a shell is, the caller gets the same answer.
"""

from __future__ import annotations

import hashlib

from codepool import errors
from codepool.auth import Principal, authorize
from codepool.models import IssuedCode, IssueIn, IssueOut, Purchase, PurchaseIn
from codepool.purchases import purchase, raise_for_issue
from codepool.services import Services
from codepool.settings import Settings
from codepool.store import limits
from codepool.store.issuing import IssueRequest


def rate_limit(principal: Principal, settings: Settings) -> tuple[str | None, float]:
    """(credential in keys.rate_window, requests per second) of the caller, as the
    other routes count it (store.limits); (None, 0) when not limited. issue.lua counts
    and checks it in the hand-out's own script call (no round trip of its own)."""
    return limits.limit_of(principal, settings) or (None, 0.0)


def idempotency(
    key: str | None, principal: Principal, path: str, fingerprint: str
) -> tuple[str | None, str | None]:
    """(digest naming the record, fingerprint of this request) for an Idempotency-Key.

    The key is scoped to the caller and the endpoint, so two clients that happen to
    pick the same key never see each other's answers.
    """
    if key is None:
        return None, None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise errors.BadRequest("Idempotency-Key must be 1-255 printable characters")
    # Both routes are POSTs (the method stays in the scope, as records already name it).
    # A trailing slash names the same endpoint (Litestar routes it the same way).
    scope = f"{principal.identity}\x1fPOST\x1f{path.rstrip('/')}\x1f{key}"
    digest = hashlib.sha256(scope.encode()).hexdigest()
    return digest, hashlib.sha256(fingerprint.encode()).hexdigest()[:32]


async def issue_codes(
    services: Services,
    principal: Principal,
    project_id: str,
    pool_id: str,
    data: IssueIn,
    idempotency_key: str | None,
    path: str,
) -> IssueOut:
    """Hand ``data.count`` codes of a pool to an admin, all or nothing.

    ``principal`` comes from the auth cache: its credential is re-checked by issue.lua.
    """
    authorize(principal, project_id, "admin")
    digest, fingerprint = idempotency(
        idempotency_key,
        principal,
        path,
        f"issue\x1f{data.count}\x1f{data.user_id or ''}{_hold_part(data.hold_seconds)}",
    )
    rate_key, limit = rate_limit(principal, services.settings)
    result = await services.issuer.issue(
        project_id,
        pool_id,
        IssueRequest(
            count=data.count,
            user_id=data.user_id,
            idempotency_digest=digest,
            fingerprint=fingerprint,
            credential=principal.credential,
            rate_key=rate_key,
            rate_limit=limit,
            hold_seconds=data.hold_seconds,
        ),
    )
    raise_for_issue(result, pool_id)
    at, hold = result.assigned_time or 0.0, result.hold_expires_at
    return IssueOut(
        codes=[IssuedCode(code=c, assigned_time=at, hold_expires_at=hold) for c in result.codes],
        available=result.available,
    )


async def purchase_reward(
    services: Services,
    principal: Principal,
    project_id: str,
    reward_id: str,
    data: PurchaseIn | None,
    idempotency_key: str | None,
    path: str,
) -> Purchase:
    """One code of a reward: a user buys for themselves, an admin for ``data.user_id``.

    ``principal`` comes from the auth cache: its credential is re-checked by issue.lua.
    """
    authorize(principal, project_id, "admin", "user")
    asked_for = data.user_id if data else None
    if principal.role == "user":
        if asked_for is not None and asked_for != principal.user_id:
            raise errors.Forbidden("a user can only purchase for themselves")
        user_id = principal.user_id
    else:
        user_id = asked_for
    if not user_id:
        raise errors.BadRequest("user_id is required when an admin purchases for a user")
    hold_seconds = data.hold_seconds if data else None
    digest, fingerprint = idempotency(
        idempotency_key,
        principal,
        path,
        f"purchase\x1f{reward_id}\x1f{user_id}{_hold_part(hold_seconds)}",
    )
    rate_key, limit = rate_limit(principal, services.settings)
    return await purchase(
        services.issuer,
        services.rewards,
        project_id,
        reward_id,
        user_id,
        idempotency_digest=digest,
        fingerprint=fingerprint,
        credential=principal.credential,
        rate_key=rate_key,
        rate_limit=limit,
        hold_seconds=hold_seconds,
    )


def _hold_part(hold_seconds: int | None) -> str:
    """A hold is part of what a request asks for (the same key with another hold is
    another request); without one the fingerprint is what it was before holds."""
    return f"\x1fhold={hold_seconds}" if hold_seconds else ""
