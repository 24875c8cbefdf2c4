"""The client verbs on projects, keys, pools, rewards, the till, the trace and stats.

The code verbs (upload, export, generate, issue) are in client/codes.py. Each verb is
a small function over a ``Ctx``: one or two API calls, then a table for people or the
answer itself for ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from msgspec import UNSET

from codepool.client import codes
from codepool.client.base import PAGE, Ctx, Subparsers, add, common_options, noun, walk
from codepool.client.http import Exit, UsageError
from codepool.client.output import fields, table, when
from codepool.models import (
    CodeIn,
    CodeInstance,
    DeadDelivery,
    Event,
    KeyCreated,
    KeyIn,
    KeyInfo,
    Notify,
    Page,
    Pool,
    PoolIn,
    PoolPatch,
    PoolStats,
    PoolSummary,
    Project,
    ProjectIn,
    ProjectSummary,
    Purchase,
    PurchaseIn,
    Reward,
    RewardIn,
    RewardPatch,
    SecretRotateIn,
    Validation,
    Voucher,
    WebhookConfig,
    WebhookIn,
)


def unix_time(text: str) -> float:
    """A time as argparse takes it: Unix seconds, or ISO 8601 (UTC unless it says)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither Unix seconds nor an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("not a JSON object")
    return value


def confirm(ctx: Ctx, question: str) -> None:
    """Ask before deleting; without a terminal, --yes must say it."""
    if ctx.args.yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{question} Give --yes to confirm without a terminal.")
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in {"y", "yes"}:
        raise UsageError("not confirmed; nothing was changed")


# -- projects and keys --------------------------------------------------------------


def projects_create(ctx: Ctx) -> None:
    body = ProjectIn(name=ctx.args.name, id=ctx.args.id)
    project = ctx.api.call("POST", "/v1/projects", Project, body=body)
    ctx.out.answer(project, lambda: fields(_pairs(project)))
    ctx.out.note("The two secrets are shown only now: keep them.")


def projects_list(ctx: Ctx) -> None:
    found = walk(ctx, "/v1/projects", ProjectSummary, ctx.args.limit, {})
    ctx.out.answer(
        found,
        lambda: table(
            ("ID", "NAME", "CREATED"), [(p.id, p.name, when(p.created_at)) for p in found]
        ),
    )


def keys_create(ctx: Ctx) -> None:
    body = KeyIn(role=ctx.args.role, name=ctx.args.name)
    created = ctx.api.call("POST", ctx.path("keys"), KeyCreated, body=body)
    ctx.out.answer(created, lambda: fields(_pairs(created)))
    ctx.out.note("The key is shown only now: keep it (only its hash is stored).")


def keys_list(ctx: Ctx) -> None:
    found = ctx.api.call("GET", ctx.path("keys"), list[KeyInfo])
    ctx.out.answer(
        found,
        lambda: table(
            ("ID", "ROLE", "NAME", "CREATED"),
            [(k.id, k.role, k.name, when(k.created_at)) for k in found],
        ),
    )


def keys_revoke(ctx: Ctx) -> None:
    ctx.api.delete(ctx.path("keys", ctx.args.key_id))
    ctx.out.answer({"revoked": ctx.args.key_id}, lambda: f"Revoked key {ctx.args.key_id}.")


def projects_rotate(ctx: Ctx) -> None:
    body = SecretRotateIn(secret=ctx.args.secret)
    project = ctx.api.call("POST", ctx.path("secrets", "rotate"), Project, body=body)
    ctx.out.answer(project, lambda: fields(_pairs(project)))
    ctx.out.note("The new secret is shown only now; tokens signed with the old one stop working.")


def webhook_set(ctx: Ctx) -> None:
    body = WebhookIn(url=ctx.args.hook_url, events=ctx.args.events)
    config = ctx.api.call("PUT", ctx.path("webhook"), WebhookConfig, body=body)
    ctx.out.answer(config, lambda: fields(_pairs(config)))


def webhook_show(ctx: Ctx) -> None:
    config = ctx.api.call("GET", ctx.path("webhook"), WebhookConfig)
    ctx.out.answer(config, lambda: fields(_pairs(config)))


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


# -- pools ----------------------------------------------------------------------------


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


# -- rewards --------------------------------------------------------------------------


def _reward_rows(rewards: Sequence[Reward]) -> Any:
    return table(
        ("ID", "NAME", "POOL", "AVAILABLE", "PER USER", "HIDE CODE"),
        [
            (r.id, r.name, r.pool_id, f"{r.available:,}", r.per_user_limit, r.hide_code)
            for r in rewards
        ],
    )


def rewards_list(ctx: Ctx) -> None:
    found = walk(ctx, ctx.path("rewards"), Reward, ctx.args.limit, {})
    ctx.out.answer(found, lambda: _reward_rows(found))


def rewards_show(ctx: Ctx) -> None:
    reward = ctx.api.call("GET", ctx.path("rewards", ctx.args.reward), Reward)
    ctx.out.answer(reward, lambda: fields(_pairs(reward)))


def rewards_create(ctx: Ctx) -> None:
    a = ctx.args
    body = RewardIn(
        name=a.name,
        pool_id=ctx.pool(a.pool),
        hide_code=a.hide_code,
        per_user_limit=a.per_user_limit,
        metadata=a.metadata or {},
        id=a.id,
    )
    reward = ctx.api.call("POST", ctx.path("rewards"), Reward, body=body)
    ctx.out.answer(reward, lambda: fields(_pairs(reward)))


def rewards_edit(ctx: Ctx) -> None:
    a = ctx.args
    patch = RewardPatch()
    if a.name is not None:
        patch.name = a.name
    if a.pool is not None:
        patch.pool_id = ctx.pool(a.pool)
    if a.hide_code is not None:
        patch.hide_code = a.hide_code
    if a.no_per_user_limit:
        patch.per_user_limit = None
    elif a.per_user_limit is not None:
        patch.per_user_limit = a.per_user_limit
    if a.metadata is not None:
        patch.metadata = a.metadata
    if patch == RewardPatch():
        raise UsageError("nothing to change: give --name, --pool, --per-user-limit, ...")
    reward = ctx.api.call("PATCH", ctx.path("rewards", a.reward), Reward, body=patch)
    ctx.out.answer(reward, lambda: fields(_pairs(reward)))


def rewards_delete(ctx: Ctx) -> None:
    confirm(ctx, f"Delete reward {ctx.args.reward}?")
    ctx.api.delete(ctx.path("rewards", ctx.args.reward))
    ctx.out.answer({"deleted": ctx.args.reward}, lambda: f"Deleted reward {ctx.args.reward}.")


def rewards_purchase(ctx: Ctx) -> None:
    a = ctx.args
    headers = {"Idempotency-Key": a.idempotency_key} if a.idempotency_key else {}
    body = PurchaseIn(user_id=a.user) if a.user else None
    bought = ctx.api.call(
        "POST", ctx.path("rewards", a.reward, "purchase"), Purchase, body=body, headers=headers
    )
    ctx.out.answer(bought, lambda: fields(_pairs(bought)))


# -- the till ---------------------------------------------------------------------------


def validate(ctx: Ctx) -> Exit:
    answer = ctx.api.call(
        "POST", ctx.path("codes", "validate"), Validation, body=CodeIn(code=ctx.args.code)
    )
    ctx.out.answer(answer, lambda: fields(_pairs(answer)))
    return Exit.OK if answer.valid else Exit.NO


def redeem(ctx: Ctx) -> None:
    done = ctx.api.call(
        "POST", ctx.path("codes", "redeem"), CodeInstance, body=CodeIn(code=ctx.args.code)
    )
    ctx.out.answer(done, lambda: fields(_pairs(done)))


def release(ctx: Ctx) -> None:
    done = ctx.api.call(
        "POST", ctx.path("codes", "release"), CodeInstance, body=CodeIn(code=ctx.args.code)
    )
    ctx.out.answer(done, lambda: fields(_pairs(done)))


# -- the trace -------------------------------------------------------------------------

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


# -- stats ----------------------------------------------------------------------------

_BARS = " ▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int]) -> str:
    """One character per value, its height relative to the largest."""
    top = max(values, default=0)
    if top == 0:
        return _BARS[1] * len(values)
    return "".join(_BARS[max(1 if v else 0, round(v / top * 8))] for v in values)


def stats(ctx: Ctx) -> None:
    pool_id = ctx.pool(ctx.args.pool)
    answer = ctx.api.call(
        "GET", ctx.path("pools", pool_id, "stats"), PoolStats, params={"minutes": ctx.args.minutes}
    )

    def people() -> Any:
        series = answer.series
        rows: list[tuple[str, object]] = [
            ("pool", answer.pool_id),
            ("available", f"{answer.available:,}"),
            ("rate", f"{answer.rate_per_minute:,.1f} codes/min"),
            ("empty at", when(answer.empty_at) if answer.empty_at else "never at this rate"),
        ]
        start = when(series[0].t) if series else "-"
        for name in ("issued", "redeemed", "released"):
            counts = [getattr(point, name) for point in series]
            rows.append(
                (name, f"{sparkline(counts)}  {sum(counts):,} (max {max(counts, default=0):,}/min)")
            )
        rows.append(("minutes", f"{len(series)} from {start}, one character each"))
        return fields(rows)

    ctx.out.answer(answer, people)


def _pairs(value: msgspec.Struct) -> list[tuple[str, object]]:
    """A Struct's fields as (name, printable value); times for people."""
    pairs: list[tuple[str, object]] = []
    for name, item in msgspec.structs.asdict(value).items():
        shown: object = item
        if item is UNSET:
            continue
        if isinstance(item, bool):
            shown = str(item).lower()
        elif name.endswith(("_time", "_at")) and isinstance(item, float):
            shown = when(item)
        elif isinstance(item, msgspec.Struct | dict | list):
            shown = msgspec.json.encode(item).decode()
        pairs.append((name, shown))
    return pairs


# -- the parser -----------------------------------------------------------------------


def _limit(parser: argparse.ArgumentParser, default: int = 100) -> None:
    parser.add_argument(
        "--limit", type=int, default=default, help="most entries to list (default: %(default)s)"
    )


def _yes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")


def add_verbs(commands: Subparsers) -> None:
    """Register every client verb as a subcommand of ``codepool``."""
    common = common_options()

    projects = noun(commands, "projects", "create and list projects (root key)")
    p = add(
        projects, "create", projects_create, common, "create a project; prints its secrets once"
    )
    p.add_argument("name", help="its name")
    p.add_argument("--id", help="its id (default: chosen by the service)")
    _limit(add(projects, "list", projects_list, common, "list projects"))
    p = add(
        projects,
        "rotate-secret",
        projects_rotate,
        common,
        "replace the project's user-token or webhook secret; prints it once",
    )
    p.add_argument("secret", choices=("user_token_secret", "webhook_secret"))

    keys = noun(commands, "keys", "create, list and revoke a project's API keys")
    p = add(keys, "create", keys_create, common, "create an API key; prints it once")
    p.add_argument(
        "role", choices=("admin", "pos"), help="admin: everything; pos: validate and redeem"
    )
    p.add_argument("name", help="what it is for (e.g. 'till 1')")
    add(keys, "list", keys_list, common, "list API keys (never their secrets)")
    p = add(keys, "revoke", keys_revoke, common, "revoke an API key; it stops working at once")
    p.add_argument("key_id", metavar="KEY_ID")

    _pool_verbs(commands, common)
    _notify_verbs(commands, common)
    codes.add_verbs(
        commands, noun(commands, "codes", "upload, list, export and generate codes"), common
    )
    _reward_verbs(commands, common)
    _other_verbs(commands, common)


def _notify_verbs(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    webhook = noun(commands, "webhook", "the project webhook: set, show, delete")
    p = add(webhook, "set", webhook_set, common, "POST every event of these types to URL")
    p.add_argument("hook_url", metavar="URL")  # (not "url": that is the service's)
    p.add_argument("--events", nargs="+", required=True, metavar="TYPE", help="event types")
    add(webhook, "show", webhook_show, common, "the project webhook")
    add(webhook, "delete", webhook_delete, common, "stop sending events to the webhook")
    deliveries = noun(commands, "deliveries", "alerts and webhooks that gave up (dead letters)")
    _limit(add(deliveries, "list", deliveries_list, common, "deliveries that gave up"))
    p = add(deliveries, "retry", deliveries_retry, common, "queue a dead delivery again")
    p.add_argument("delivery", metavar="DELIVERY_ID")


def _pool_verbs(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    pools = noun(commands, "pools", "create, list, show, edit and delete pools")
    p = add(pools, "create", pools_create, common, "create a pool")
    p.add_argument("name", help="its name, unique in the project")
    _pool_options(p)
    _limit(add(pools, "list", pools_list, common, "list pools with their counts"))
    p = add(pools, "show", pools_show, common, "a pool with its exact counters")
    p.add_argument("pool", metavar="POOL", help="pool id or name")
    p = add(pools, "edit", pools_edit, common, "change a pool's name, thresholds, notify or expiry")
    p.add_argument("pool", metavar="POOL", help="pool id or name")
    p.add_argument("--name", help="new name")
    _pool_options(p)
    p.add_argument("--no-expiry", action="store_true", help="remove the expiry")
    p = add(pools, "delete", pools_delete, common, "delete a pool and its codes")
    p.add_argument("pool", metavar="POOL", help="pool id or name")
    _yes(p)


def _reward_verbs(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    rewards = noun(commands, "rewards", "list, create, edit, delete and purchase rewards")
    _limit(add(rewards, "list", rewards_list, common, "list rewards"))
    p = add(rewards, "show", rewards_show, common, "one reward")
    p.add_argument("reward", metavar="REWARD", help="reward id")
    p = add(rewards, "create", rewards_create, common, "create a reward drawing from a pool")
    p.add_argument("name")
    p.add_argument("--pool", required=True, help="pool id or name it draws from")
    p.add_argument("--id", help="its id (default: chosen by the service)")
    p.add_argument("--hide-code", action="store_true", help="users never see the code")
    p.add_argument("--per-user-limit", type=int, metavar="N", help="most codes one user may hold")
    p.add_argument(
        "--metadata", type=json_object, metavar="JSON", help="a JSON object kept with it"
    )
    p = add(rewards, "edit", rewards_edit, common, "change a reward")
    p.add_argument("reward", metavar="REWARD", help="reward id")
    p.add_argument("--name")
    p.add_argument("--pool", help="pool id or name it draws from")
    p.add_argument("--hide-code", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--per-user-limit", type=int, metavar="N")
    p.add_argument("--no-per-user-limit", action="store_true", help="remove the per-user limit")
    p.add_argument("--metadata", type=json_object, metavar="JSON")
    p = add(rewards, "delete", rewards_delete, common, "delete a reward")
    p.add_argument("reward", metavar="REWARD", help="reward id")
    _yes(p)
    p = add(
        rewards,
        "purchase",
        rewards_purchase,
        common,
        "buy one code: a user key for themselves, an admin key for --user",
    )
    p.add_argument("reward", metavar="REWARD", help="reward id")
    p.add_argument("--user", help="the user it is for (admin keys)")
    p.add_argument(
        "--idempotency-key", metavar="KEY", help="a retry with the same key gets the same code"
    )


def _other_verbs(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    for name, verb, text in (
        ("validate", validate, "check a code at a till (changes nothing); exit 6 when not valid"),
        ("redeem", redeem, "use a handed-out code (a till)"),
        ("release", release, "put a handed-out, unused code back (a failed checkout)"),
    ):
        p = add(commands, name, verb, common, text)
        p.add_argument("code", metavar="CODE")

    p = add(commands, "events", events, common, "the trace: events, oldest first, or --follow")
    p.add_argument("--type", help="only this type (REDEEMED_VOUCHER, VOUCHER_USED, POOL_LOW, ...)")
    p.add_argument("--user", help="only this user's")
    p.add_argument("--after", metavar="ID|TIME", help="only after this event id or Unix time")
    p.add_argument("-f", "--follow", action="store_true", help="print new events as they come")
    p.add_argument(
        "--interval", type=float, default=1.0, help="seconds between polls with --follow"
    )
    _limit(p)

    p = add(commands, "vouchers", vouchers, common, "the codes a user holds")
    p.add_argument("user", metavar="USER")
    _limit(p)

    p = add(commands, "stats", stats, common, "a pool's hand-outs per minute, rate and forecast")
    p.add_argument("pool", metavar="POOL", help="pool id or name")
    p.add_argument("--minutes", type=int, default=60, help="minutes back (1-10080; default 60)")


def _pool_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--low-stock", type=int, nargs="+", metavar="N", help="alert when available falls to N"
    )
    p.add_argument(
        "--email", action="append", metavar="ADDRESS", help="alert this address (repeat)"
    )
    p.add_argument("--webhook", metavar="URL", help="alert this webhook URL ('' removes it)")
    p.add_argument("--expires-at", type=unix_time, metavar="TIME", help="Unix seconds or ISO 8601")
