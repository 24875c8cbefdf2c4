"""Rewards and purchases: the flash-sale path."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.params import JSONBody

from codepool import errors
from codepool.api import handouts
from codepool.api.deps import CachedCaller, Caller, Svc
from codepool.api.params import Count, IdPath, Skip
from codepool.api.responses import BODY, SECURITY, WRITE, IdempotencyKey, answers
from codepool.auth import authorize
from codepool.models import Page, Purchase, PurchaseIn, Reward, RewardIn, RewardPatch


class RewardController(Controller):
    path = "/v1/projects/{project_id:str}/rewards"
    tags = ("rewards",)
    security = SECURITY

    @post(
        "/",
        status_code=201,
        responses=answers(errors.PoolNotFound, errors.RewardExists, *BODY, *WRITE),
    )
    async def create_reward(
        self, project_id: IdPath, data: JSONBody[RewardIn], principal: Caller, services: Svc
    ) -> Reward:
        """Create a reward drawing from one of the project's pools."""
        authorize(principal, project_id, "admin")
        await services.projects.get(project_id)
        return await services.rewards.create(project_id, data)

    @get("/", responses=answers())
    async def list_rewards(
        self,
        project_id: IdPath,
        principal: Caller,
        services: Svc,
        skip: Skip = 0,
        count: Count = 20,
    ) -> Page[Reward]:
        """Admins see every reward; users only those they could buy now."""
        authorize(principal, project_id, "admin", "user")
        await services.projects.get(project_id)
        return await services.rewards.list_page(
            project_id, skip, count, visible_to_users=principal.role == "user"
        )

    @get("/{reward_id:str}", responses=answers(errors.RewardNotFound))
    async def get_reward(
        self, project_id: IdPath, reward_id: IdPath, principal: Caller, services: Svc
    ) -> Reward:
        """One reward, with its pool's available count."""
        authorize(principal, project_id, "admin", "user")
        return await services.rewards.get(project_id, reward_id)

    @patch(
        "/{reward_id:str}",
        responses=answers(errors.RewardNotFound, errors.PoolNotFound, *BODY, *WRITE),
    )
    async def patch_reward(
        self,
        project_id: IdPath,
        reward_id: IdPath,
        data: JSONBody[RewardPatch],
        principal: Caller,
        services: Svc,
    ) -> Reward:
        """Change a reward (also its pool)."""
        authorize(principal, project_id, "admin")
        return await services.rewards.patch(project_id, reward_id, data)

    @delete("/{reward_id:str}", status_code=204, responses=answers(errors.RewardNotFound))
    async def delete_reward(
        self, project_id: IdPath, reward_id: IdPath, principal: Caller, services: Svc
    ) -> None:
        """Delete a reward; codes it handed out keep their history."""
        authorize(principal, project_id, "admin")
        await services.rewards.delete(project_id, reward_id)

    @post(
        "/{reward_id:str}/purchase",
        status_code=201,
        responses=answers(
            errors.RewardNotFound,
            errors.PoolNotFound,
            errors.PoolExhausted,
            errors.PerUserLimitReached,
            errors.CodesReleased,
            errors.PoolExpired,
            errors.IdempotencyKeyReused,
            errors.NotReady,
            errors.NotReplicated,
            *BODY,
            *WRITE,
        ),
    )
    async def purchase_reward(
        self,
        project_id: IdPath,
        reward_id: IdPath,
        request: Request[Any, Any, Any],
        cached_principal: CachedCaller,
        services: Svc,
        data: JSONBody[PurchaseIn | None] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Purchase:
        """Buy one code: a user for themselves, an admin on behalf of `user_id`."""
        return await handouts.purchase_reward(
            services,
            cached_principal,
            project_id,
            reward_id,
            data,
            idempotency_key,
            request.url.path,
        )
