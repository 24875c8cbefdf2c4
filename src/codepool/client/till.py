"""The till's client verbs on a code: validate, redeem, release."""

from __future__ import annotations

import argparse

from codepool.client.base import Ctx, Subparsers, add
from codepool.client.http import Exit
from codepool.client.output import fields, struct_pairs
from codepool.models import CodeIn, CodeInstance, Validation


def validate(ctx: Ctx) -> Exit:
    answer = ctx.api.call(
        "POST", ctx.path("codes", "validate"), Validation, body=CodeIn(code=ctx.args.code)
    )
    ctx.out.answer(answer, lambda: fields(struct_pairs(answer)))
    return Exit.OK if answer.valid else Exit.NO


def redeem(ctx: Ctx) -> None:
    done = ctx.api.call(
        "POST", ctx.path("codes", "redeem"), CodeInstance, body=CodeIn(code=ctx.args.code)
    )
    ctx.out.answer(done, lambda: fields(struct_pairs(done)))


def release(ctx: Ctx) -> None:
    done = ctx.api.call(
        "POST", ctx.path("codes", "release"), CodeInstance, body=CodeIn(code=ctx.args.code)
    )
    ctx.out.answer(done, lambda: fields(struct_pairs(done)))


def add_verbs(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    """Register ``validate``, ``redeem`` and ``release``."""
    for name, verb, text in (
        ("validate", validate, "check a code at a till (changes nothing); exit 6 when not valid"),
        ("redeem", redeem, "use a handed-out code (a till)"),
        ("release", release, "put a handed-out, unused code back (a failed checkout)"),
    ):
        p = add(commands, name, verb, common, text)
        p.add_argument("code", metavar="CODE")
