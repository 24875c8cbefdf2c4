"""A purchase: the user's one code from a reward's pool, through the coalescing issuer."""

from __future__ import annotations

import math

from codepool import errors
from codepool.auth import Credential
from codepool.issuer import Issuer
from codepool.models import Purchase
from codepool.scripts import Status
from codepool.store.base import new_id
from codepool.store.issuing import IssueRequest, IssueResult
from codepool.store.rewards import RewardStore


def raise_for_issue(result: IssueResult, pool_id: str, reward_id: str | None = None) -> None:
    """Turn a failed issue status into its API error."""
    match result.status:
        case Status.OK | Status.REPLAYED:
            return
        case Status.EXHAUSTED:
            raise errors.PoolExhausted(pool_id=pool_id, available=result.available)
        case Status.EXPIRED:
            raise errors.PoolExpired(pool_id=pool_id)
        case Status.PER_USER_LIMIT:
            raise errors.PerUserLimitReached(reward_id=reward_id)
        case Status.IDEMPOTENCY_MISMATCH:
            raise errors.IdempotencyKeyReused()
        case Status.GIVEN_BACK:
            raise errors.CodesReleased()
        case Status.NO_POOL:
            raise errors.PoolNotFound(id=pool_id)
        case Status.RATE_LIMITED:
            raise errors.RateLimited(retry_after=max(1, math.ceil(result.retry_after_ms / 1000)))
        case Status.STALE_CREDENTIAL:
            raise errors.Unauthorized("the API key was revoked or the user-token secret rotated")
        case _:
            raise errors.RewardNotFound(id=reward_id)


async def purchase(
    issuer: Issuer,
    rewards: RewardStore,
    project_id: str,
    reward_id: str,
    user_id: str,
    *,
    idempotency_digest: str | None,
    fingerprint: str | None,
    credential: Credential | None = None,
    rate_key: str | None = None,
    rate_limit: float = 0.0,
    hold_seconds: int | None = None,
) -> Purchase:
    purchase_id = new_id()
    fresh = False
    while True:
        pool_id = await rewards.pool_of(project_id, reward_id, fresh=fresh)
        result = await issuer.issue(
            project_id,
            pool_id,
            IssueRequest(
                count=1,
                user_id=user_id,
                reward_id=reward_id,
                idempotency_digest=idempotency_digest,
                fingerprint=fingerprint,
                purchase_id=purchase_id,
                credential=credential,
                rate_key=rate_key,
                rate_limit=rate_limit,
                hold_seconds=hold_seconds,
            ),
        )
        # The cached route was stale (the reward moved pools): read it again, once.
        if result.status in (Status.REWARD_MOVED, Status.NO_POOL) and not fresh:
            fresh = True
            continue
        raise_for_issue(result, pool_id, reward_id)
        return Purchase(
            purchase_id=result.purchase_id or purchase_id,
            reward_id=reward_id,
            user_id=user_id,
            code=None if result.hide_code else result.codes[0],
            assigned_time=result.assigned_time or 0.0,
            hold_expires_at=result.hold_expires_at,
        )
