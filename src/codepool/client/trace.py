"""The client verbs on the trace: ``events`` (or ``--follow`` them) and a user's
``vouchers``."""

from __future__ import annotations

import argparse
import sys
import time

import msgspec

from codepool.client.base import PAGE, Ctx, Subparsers, add, walk
from codepool.client.options import add_limit
from codepool.client.output import table, when
from codepool.models import Event, Page, Voucher

_EVENT_COLUMNS = ("TIME", "TYPE", "POOL", "REWARD", "USER", "CODE", "ID")


def _event_row(e: Event) -> tuple[object, ...]:
    return (when(e.time), e.type, e.pool_id, e.reward_id, e.user_id, e.code, e.id)


def events(ctx: Ctx) -> None:
    a = ctx.args
    params: dict[str, str | int | float] = {}
    if a.type:
        params["type"] = a.type
    if a.user:
        params["user_id"] = a.user
    if a.follow:
        follow(ctx, params, a.after or repr(time.time()))
        return
    if a.after:
        params["after"] = a.after
    found = walk(ctx, ctx.path("events"), Event, a.limit, params)
    ctx.out.answer(found, lambda: table(_EVENT_COLUMNS, [_event_row(e) for e in found]))


def follow(ctx: Ctx, params: dict[str, str | int | float], after: str) -> None:
    """Print new events as they come (one JSON line each with --json), until Ctrl-C."""
    out = ctx.out
    if not (out.json or out.field):
        out.show(table(_EVENT_COLUMNS, []))
    while True:
        page = ctx.api.call(
            "GET", ctx.path("events"), Page[Event], params={**params, "after": after, "count": PAGE}
        )
        for event in page.data:
            if out.field:
                out.answer(event, lambda: None)
            elif out.json:
                # One line per event, even on a terminal: a stream of JSON lines.
                print(msgspec.json.encode(event).decode())
            else:
                out.console.print(
                    "  ".join("-" if c is None else str(c) for c in _event_row(event))
                )
            after = event.id
        sys.stdout.flush()
        if len(page.data) < PAGE:
            time.sleep(ctx.args.interval)


def vouchers(ctx: Ctx) -> None:
    found = walk(ctx, ctx.path("users", ctx.args.user, "vouchers"), Voucher, ctx.args.limit, {})
    ctx.out.answer(
        found,
        lambda: table(
            ("CODE", "STATUS", "POOL", "REWARD", "ASSIGNED", "REDEEMED"),
            [
                (
                    v.code,
                    v.status,
                    v.pool_id,
                    v.reward_id,
                    when(v.assigned_time),
                    when(v.redeemed_time) if v.redeemed_time else None,
                )
                for v in found
            ],
        ),
    )


def add_verbs(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    """Register ``events`` and ``vouchers``."""
    p = add(commands, "events", events, common, "the trace: events, oldest first, or --follow")
    p.add_argument("--type", help="only this type (REDEEMED_VOUCHER, VOUCHER_USED, POOL_LOW, ...)")
    p.add_argument("--user", help="only this user's")
    p.add_argument("--after", metavar="ID|TIME", help="only after this event id or Unix time")
    p.add_argument("-f", "--follow", action="store_true", help="print new events as they come")
    p.add_argument(
        "--interval", type=float, default=1.0, help="seconds between polls with --follow"
    )
    add_limit(p)

    p = add(commands, "vouchers", vouchers, common, "the codes a user holds")
    p.add_argument("user", metavar="USER")
    add_limit(p)
