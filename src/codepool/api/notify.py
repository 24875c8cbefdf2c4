"""The project webhook, and the deliveries that gave up (dead letters)."""

from __future__ import annotations

import time

from litestar import Controller, delete, get, post, put
from litestar.params import JSONBody

from codepool import errors
from codepool.api.deps import Caller, Svc
from codepool.api.params import Count, DeliveryPath, IdPath, Skip
from codepool.api.responses import BODY, SECURITY, WRITE, answers
from codepool.auth import authorize
from codepool.models import DeadDelivery, Page, WebhookConfig, WebhookIn
from codepool.notify.destinations import check_urls


class NotifyController(Controller):
    path = "/v1/projects/{project_id:str}"
    tags = ("notifications",)
    security = SECURITY

    @put(
        "/webhook",
        status_code=200,
        responses=answers(errors.WebhookUrlNotAllowed, *BODY, *WRITE),
    )
    async def put_webhook(
        self, project_id: IdPath, data: JSONBody[WebhookIn], principal: Caller, services: Svc
    ) -> WebhookConfig:
        """Set the project webhook: every event of these types is POSTed there, signed."""
        authorize(principal, project_id, "admin")
        await services.projects.get(project_id)
        await check_urls([data.url], services.settings.webhook_allow_private)
        return await services.deliveries.put_webhook(project_id, data)

    @get("/webhook", responses=answers(errors.WebhookNotFound))
    async def get_webhook(
        self, project_id: IdPath, principal: Caller, services: Svc
    ) -> WebhookConfig:
        """The project webhook; 404 when none is set."""
        authorize(principal, project_id, "admin")
        await services.projects.get(project_id)
        return await services.deliveries.get_webhook(project_id)

    @delete("/webhook", status_code=204, responses=answers(errors.WebhookNotFound))
    async def delete_webhook(self, project_id: IdPath, principal: Caller, services: Svc) -> None:
        """Stop sending events to the project webhook (deliveries already queued still go)."""
        authorize(principal, project_id, "admin")
        await services.projects.get(project_id)
        await services.deliveries.delete_webhook(project_id)

    @get("/deliveries/dead", responses=answers())
    async def list_dead(
        self,
        project_id: IdPath,
        principal: Caller,
        services: Svc,
        skip: Skip = 0,
        count: Count = 20,
    ) -> Page[DeadDelivery]:
        """Deliveries that gave up, newest first, with their last error."""
        authorize(principal, project_id, "admin")
        await services.projects.get(project_id)
        return await services.deliveries.dead_page(project_id, skip, count)

    @post(
        "/deliveries/dead/{delivery_id:str}/retry",
        status_code=204,
        responses=answers(errors.DeliveryNotFound, *WRITE),
    )
    async def retry_dead(
        self, project_id: IdPath, delivery_id: DeliveryPath, principal: Caller, services: Svc
    ) -> None:
        """Queue a dead delivery again, due now, with a fresh count of attempts."""
        authorize(principal, project_id, "admin")
        await services.projects.get(project_id)
        await services.deliveries.requeue(project_id, delivery_id, int(time.time() * 1000))
