"""The client verbs on projects (create, list, rotate a secret) and their API keys."""

from __future__ import annotations

import argparse

from codepool.client.base import Ctx, Subparsers, add, noun, walk
from codepool.client.options import add_limit
from codepool.client.output import fields, struct_pairs, table, when
from codepool.models import (
    KeyCreated,
    KeyIn,
    KeyInfo,
    Project,
    ProjectIn,
    ProjectSummary,
    SecretRotateIn,
)


def projects_create(ctx: Ctx) -> None:
    body = ProjectIn(name=ctx.args.name, id=ctx.args.id)
    project = ctx.api.call("POST", "/v1/projects", Project, body=body)
    ctx.out.answer(project, lambda: fields(struct_pairs(project)))
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
    ctx.out.answer(created, lambda: fields(struct_pairs(created)))
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
    ctx.out.answer(project, lambda: fields(struct_pairs(project)))
    ctx.out.note("The new secret is shown only now; tokens signed with the old one stop working.")


def add_verbs(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    """Register ``projects`` and ``keys`` with their verbs."""
    projects = noun(commands, "projects", "create and list projects (root key)")
    p = add(
        projects, "create", projects_create, common, "create a project; prints its secrets once"
    )
    p.add_argument("name", help="its name")
    p.add_argument("--id", help="its id (default: chosen by the service)")
    add_limit(add(projects, "list", projects_list, common, "list projects"))
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
