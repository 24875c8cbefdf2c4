"""What the delivery side keeps: outbox entries become deliveries, failed ones dead letters."""

from __future__ import annotations

import logging
from typing import Literal

import msgspec

from codepool.models import Notify, WebhookEvent, event_optionals

log = logging.getLogger("codepool.notify")

_notify_decoder = msgspec.json.Decoder(Notify)


class Delivery(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One event to one destination: a webhook URL, or one email to a list of recipients."""

    id: str  # "<event id>.<n>": unique, and the same if the entry is fanned out again
    kind: Literal["webhook", "email"]
    url: str = ""
    to: list[str] = []
    event: WebhookEvent
    created_at: float


class DeadInfo(msgspec.Struct, kw_only=True):
    """Why and when a delivery gave up."""

    attempts: int
    error: str
    died_at: float


def event_of(project_id: str, fields: dict[str, str]) -> WebhookEvent:
    """The event an outbox entry carries, as webhooks send it."""
    return WebhookEvent(
        id=fields["event_id"],
        type=fields["type"],
        time=float(fields["time"]),
        project_id=project_id,
        pool_name=fields.get("pool_name") or None,
        **event_optionals(fields),
    )


def plan(project_id: str, raw: dict[bytes, bytes], now: float) -> list[Delivery]:
    """The deliveries one outbox entry fans out into: the project webhook (when it takes
    this event type), the pool's webhook, one email to the pool's recipients. A URL
    named twice is sent to once."""
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    event = event_of(project_id, fields)
    urls: list[str] = []
    emails: list[str] = []
    if fields.get("hook"):
        urls.append(fields["hook"])
    if fields.get("notify"):
        try:
            notify = _notify_decoder.decode(fields["notify"])
        except msgspec.DecodeError:
            # Written by the store from a validated Notify; unreadable means a bug.
            log.error("project %s event %s: unreadable pool notify", project_id, event.id)
        else:
            if notify.webhook_url and notify.webhook_url not in urls:
                urls.append(notify.webhook_url)
            emails = list(dict.fromkeys(notify.emails))
    deliveries = [
        Delivery(id=f"{event.id}.{n}", kind="webhook", url=url, event=event, created_at=now)
        for n, url in enumerate(urls)
    ]
    if emails:
        deliveries.append(
            Delivery(
                id=f"{event.id}.{len(urls)}", kind="email", to=emails, event=event, created_at=now
            )
        )
    return deliveries
