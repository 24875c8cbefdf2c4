"""The client verbs on pools: create, list, show, edit, delete."""

from __future__ import annotations

import argparse
from typing import Any

from codepool.client.base import Ctx, Subparsers, add, noun, walk
from codepool.client.http import UsageError
from codepool.client.options import add_limit, add_yes, confirm, unix_time
from codepool.client.output import fields, table, when
from codepool.models import Notify, Pool, PoolIn, PoolPatch, PoolSummary


def _pool_view(pool: Pool) -> Any:
    return fields(
        [
            ("id", pool.id),
            ("name", pool.name),
            ("total", f"{pool.total:,}"),
            ("available", f"{pool.available:,}"),
            ("assigned", f"{pool.assigned:,}"),
            ("redeemed", f"{pool.redeemed:,}"),
            ("used by", ", ".join(pool.used_by) or None),
            ("low stock at", ", ".join(map(str, pool.low_stock_thresholds)) or None),
            ("emails", ", ".join(pool.notify.emails) or None),
            ("webhook", pool.notify.webhook_url),
            ("expires", when(pool.expires_at) if pool.expires_at else None),
            ("created", when(pool.created_at)),
        ]
    )


def pools_create(ctx: Ctx) -> None:
    a = ctx.args
    body = PoolIn(
        name=a.name,
        low_stock_thresholds=a.low_stock or [],
        notify=Notify(emails=a.email or [], webhook_url=a.webhook),
        expires_at=a.expires_at,
    )
    pool = ctx.api.call("POST", ctx.path("pools"), Pool, body=body)
    ctx.out.answer(pool, lambda: _pool_view(pool))


def pools_list(ctx: Ctx) -> None:
    found = walk(ctx, ctx.path("pools"), PoolSummary, ctx.args.limit, {})
    ctx.out.answer(
        found,
        lambda: table(
            ("ID", "NAME", "TOTAL", "AVAILABLE"),
            [(p.id, p.name, f"{p.total:,}", f"{p.available:,}") for p in found],
        ),
    )


def pools_show(ctx: Ctx) -> None:
    pool = ctx.api.call("GET", ctx.path("pools", ctx.pool(ctx.args.pool)), Pool)
    ctx.out.answer(pool, lambda: _pool_view(pool))


def pools_edit(ctx: Ctx) -> None:
    a = ctx.args
    pool_id = ctx.pool(a.pool)
    patch = PoolPatch()
    if a.name is not None:
        patch.name = a.name
    if a.low_stock is not None:
        patch.low_stock_thresholds = a.low_stock
    if a.no_expiry:
        patch.expires_at = None
    elif a.expires_at is not None:
        patch.expires_at = a.expires_at
    if a.email is not None or a.webhook is not None:
        # notify is replaced as a whole: keep what was not given.
        now = ctx.api.call("GET", ctx.path("pools", pool_id), Pool).notify
        patch.notify = Notify(
            emails=now.emails if a.email is None else [e for e in a.email if e],
            webhook_url=now.webhook_url if a.webhook is None else (a.webhook or None),
        )
    if patch == PoolPatch():
        raise UsageError("nothing to change: give --name, --low-stock, --email, ...")
    pool = ctx.api.call("PATCH", ctx.path("pools", pool_id), Pool, body=patch)
    ctx.out.answer(pool, lambda: _pool_view(pool))


def pools_delete(ctx: Ctx) -> None:
    pool_id = ctx.pool(ctx.args.pool)
    confirm(ctx, f"Delete pool {pool_id} and all its codes?")
    ctx.api.delete(ctx.path("pools", pool_id))
    ctx.out.answer({"deleted": pool_id}, lambda: f"Deleted pool {pool_id}.")


def add_verbs(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    """Register ``pools`` with its verbs."""
    pools = noun(commands, "pools", "create, list, show, edit and delete pools")
    p = add(pools, "create", pools_create, common, "create a pool")
    p.add_argument("name", help="its name, unique in the project")
    _pool_options(p)
    add_limit(add(pools, "list", pools_list, common, "list pools with their counts"))
    p = add(pools, "show", pools_show, common, "a pool with its exact counters")
    p.add_argument("pool", metavar="POOL", help="pool id or name")
    p = add(pools, "edit", pools_edit, common, "change a pool's name, thresholds, notify or expiry")
    p.add_argument("pool", metavar="POOL", help="pool id or name")
    p.add_argument("--name", help="new name")
    _pool_options(p)
    p.add_argument("--no-expiry", action="store_true", help="remove the expiry")
    p = add(pools, "delete", pools_delete, common, "delete a pool and its codes")
    p.add_argument("pool", metavar="POOL", help="pool id or name")
    add_yes(p)


def _pool_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--low-stock", type=int, nargs="+", metavar="N", help="alert when available falls to N"
    )
    p.add_argument(
        "--email", action="append", metavar="ADDRESS", help="alert this address (repeat)"
    )
    p.add_argument("--webhook", metavar="URL", help="alert this webhook URL ('' removes it)")
    p.add_argument("--expires-at", type=unix_time, metavar="TIME", help="Unix seconds or ISO 8601")
