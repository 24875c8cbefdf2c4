"""The client verbs on the project webhook and the dead deliveries (alerts and webhooks
that gave up)."""

from __future__ import annotations

import argparse

from codepool.client.base import Ctx, Subparsers, add, noun, walk
from codepool.client.options import add_limit
from codepool.client.output import fields, struct_pairs, table, when
from codepool.models import DeadDelivery, WebhookConfig, WebhookIn


def webhook_set(ctx: Ctx) -> None:
    body = WebhookIn(url=ctx.args.hook_url, events=ctx.args.events)
    config = ctx.api.call("PUT", ctx.path("webhook"), WebhookConfig, body=body)
    ctx.out.answer(config, lambda: fields(struct_pairs(config)))


def webhook_show(ctx: Ctx) -> None:
    config = ctx.api.call("GET", ctx.path("webhook"), WebhookConfig)
    ctx.out.answer(config, lambda: fields(struct_pairs(config)))


def webhook_delete(ctx: Ctx) -> None:
    ctx.api.delete(ctx.path("webhook"))
    ctx.out.answer({"deleted": "webhook"}, lambda: "Deleted the project webhook.")


def deliveries_list(ctx: Ctx) -> None:
    found = walk(ctx, ctx.path("deliveries", "dead"), DeadDelivery, ctx.args.limit, {})
    ctx.out.answer(
        found,
        lambda: table(
            ("ID", "KIND", "TO", "EVENT", "ATTEMPTS", "DIED", "ERROR"),
            [
                (
                    d.id,
                    d.kind,
                    d.url or ", ".join(d.to),
                    d.event.type,
                    d.attempts,
                    when(d.died_at),
                    d.error,
                )
                for d in found
            ],
        ),
    )


def deliveries_retry(ctx: Ctx) -> None:
    ctx.api.empty("POST", ctx.path("deliveries", "dead", ctx.args.delivery, "retry"))
    ctx.out.answer({"requeued": ctx.args.delivery}, lambda: f"Queued {ctx.args.delivery} again.")


def add_verbs(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    """Register ``webhook`` and ``deliveries`` with their verbs."""
    webhook = noun(commands, "webhook", "the project webhook: set, show, delete")
    p = add(webhook, "set", webhook_set, common, "POST every event of these types to URL")
    p.add_argument("hook_url", metavar="URL")  # (not "url": that is the service's)
    p.add_argument("--events", nargs="+", required=True, metavar="TYPE", help="event types")
    add(webhook, "show", webhook_show, common, "the project webhook")
    add(webhook, "delete", webhook_delete, common, "stop sending events to the webhook")
    deliveries = noun(commands, "deliveries", "alerts and webhooks that gave up (dead letters)")
    add_limit(add(deliveries, "list", deliveries_list, common, "deliveries that gave up"))
    p = add(deliveries, "retry", deliveries_retry, common, "queue a dead delivery again")
    p.add_argument("delivery", metavar="DELIVERY_ID")
