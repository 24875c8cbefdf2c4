"""The client verbs on rewards: list, show, create, edit, delete, purchase."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from codepool.client.base import Ctx, Subparsers, add, noun, walk
from codepool.client.http import UsageError
from codepool.client.options import add_limit, add_yes, confirm, json_object
from codepool.client.output import fields, struct_pairs, table
from codepool.models import Purchase, PurchaseIn, Reward, RewardIn, RewardPatch


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
    ctx.out.answer(reward, lambda: fields(struct_pairs(reward)))


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
    ctx.out.answer(reward, lambda: fields(struct_pairs(reward)))


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
    ctx.out.answer(reward, lambda: fields(struct_pairs(reward)))


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
    ctx.out.answer(bought, lambda: fields(struct_pairs(bought)))


def add_verbs(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    """Register ``rewards`` with its verbs."""
    rewards = noun(commands, "rewards", "list, create, edit, delete and purchase rewards")
    add_limit(add(rewards, "list", rewards_list, common, "list rewards"))
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
    add_yes(p)
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
