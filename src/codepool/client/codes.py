"""The code verbs: upload, list, export, generate, and issue.

Uploads and exports are streamed (a 20M-code file is never in memory) with a progress
bar on stderr when it is a terminal; see client/upload.py for the Idempotency-Key an
upload carries.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from codepool.client.base import Ctx, Subparsers, add, walk
from codepool.client.http import ApiError, CliError, Exit, UsageError
from codepool.client.output import table, when
from codepool.client.progress import Transfer
from codepool.client.upload import (
    MEDIA_TYPES,
    body,
    format_of,
    idempotency_key,
    open_source,
)
from codepool.models import (
    CodeEntry,
    Generated,
    GenerateIn,
    IssuedCode,
    IssueIn,
    IssueOut,
    Pool,
    UploadResult,
)

# The most codes one `POST .../issue` hands out (models.Count).
ISSUE_MAX = 1000


def upload(ctx: Ctx) -> None:
    a = ctx.args
    if a.files.count("-") > 1:
        raise UsageError("standard input (-) can be given once")
    pool_id = ctx.pool(a.pool)
    for index, name in enumerate(a.files):
        fmt = format_of(name, a.format)
        media = MEDIA_TYPES[fmt]
        with open_source(name, digest_needed=not a.idempotency_key) as source:
            if a.idempotency_key:
                key = a.idempotency_key if len(a.files) == 1 else f"{a.idempotency_key}.{index}"
            else:
                key = idempotency_key(source, ctx.project, pool_id, media, a.duplicates)
            headers = {
                "Content-Type": media,
                # Known size: sent as one body (no chunked encoding), and a body over the
                # service's limit is refused before it is sent.
                "Content-Length": str(source.size),
                "Idempotency-Key": key,
            }
            with Transfer(source.label, source.size) as progress:
                result = ctx.api.send(
                    ctx.path("pools", pool_id, "codes"),
                    body(source, fmt, progress),
                    UploadResult,
                    headers=headers,
                    params={"duplicates": a.duplicates},
                )
        ctx.out.answer(
            result,
            lambda name=name, r=result: (  # type: ignore[misc]
                f"{name}: added {r.added:,}, skipped {r.skipped:,}; "
                f"the pool holds {r.total:,} ({r.available:,} available)"
            ),
        )


def list_codes(ctx: Ctx) -> None:
    params: dict[str, str | int | float] = {"status": ctx.args.status} if ctx.args.status else {}
    pool_id = ctx.pool(ctx.args.pool)
    found = walk(ctx, ctx.path("pools", pool_id, "codes"), CodeEntry, ctx.args.limit, params)
    ctx.out.answer(
        found,
        lambda: table(
            ("CODE", "STATUS", "ASSIGNED", "REDEEMED", "USER", "REWARD"),
            [
                (
                    c.code,
                    c.status,
                    when(c.assigned_time) if c.assigned_time else None,
                    when(c.redeemed_time) if c.redeemed_time else None,
                    c.user_id,
                    c.reward_id,
                )
                for c in found
            ],
        ),
    )


def export(ctx: Ctx) -> None:
    a = ctx.args
    pool_id = ctx.pool(a.pool)
    pool = ctx.api.call("GET", ctx.path("pools", pool_id), Pool)
    expected = pool.total if a.status is None else getattr(pool, a.status)
    params = {"status": a.status} if a.status else None
    rows = 0
    header_seen = False
    with (
        _target(a.output) as target,
        ctx.api.stream(ctx.path("pools", pool_id, "codes.csv"), params) as response,
        Transfer(f"{pool.name}.csv", expected, rows=True) as progress,
    ):
        for chunk in response.iter_raw():
            target.write(chunk)
            lines = chunk.count(b"\n")
            if lines and not header_seen:  # the header is not a code
                lines -= 1
                header_seen = True
            rows += lines
            progress.advance(len(chunk), lines)
    if a.output is not None:
        ctx.out.note(f"{rows:,} codes written to {a.output}")


@contextlib.contextmanager
def _target(output: Path | None) -> Iterator[IO[bytes]]:
    """stdout, or ``output`` written as ``<output>.part`` and renamed once complete."""
    if output is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    part = output.with_name(output.name + ".part")
    try:
        with part.open("wb") as file:
            yield file
        part.replace(output)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()


def generate(ctx: Ctx) -> None:
    a = ctx.args
    pool_id = ctx.pool(a.pool)
    request = GenerateIn(count=a.count, pattern=a.pattern, check_character=a.check_character)
    if a.charset is not None:
        request.charset = a.charset
    if a.max_guess_probability is not None:
        request.max_guess_probability = a.max_guess_probability
    headers = {"Idempotency-Key": a.idempotency_key} if a.idempotency_key else {}
    made = ctx.api.call(
        "POST",
        ctx.path("pools", pool_id, "codes", "generate"),
        Generated,
        body=request,
        headers=headers,
        wait=None,
    )
    ctx.out.answer(
        made,
        lambda: (
            f"generated {made.added:,} codes; the pool holds {made.total:,} "
            f"({made.available:,} available); pattern space {made.space:,.0f}, "
            f"a random guess hits a live code with probability {made.guess_probability:.3g}"
        ),
    )


def issue(ctx: Ctx) -> None:
    """Up to ISSUE_MAX codes in one hand-out (all or nothing); more in several.

    With --idempotency-key KEY, hand-out n uses ``KEY.n``: the command run again gets
    the same codes back, and after a shortage (the codes handed out so far are printed
    with the error) it gets them again plus the rest once the pool is refilled.
    """
    a = ctx.args
    pool_id = ctx.pool(a.pool)
    path = ctx.path("pools", pool_id, "issue")
    if a.count > ISSUE_MAX and not a.idempotency_key:
        # Several hand-outs that cannot be asked again: check first that all can be
        # served. (With a key, a rerun's hand-outs are the first ones again, so the
        # pool may rightly hold fewer than COUNT now.)
        available = ctx.api.call("GET", ctx.path("pools", pool_id), Pool).available
        if available < a.count:
            raise CliError(
                "pool_exhausted",
                f"the pool has {available:,} codes available, fewer than {a.count:,}; "
                "nothing was handed out",
                Exit.API_ERROR,
            )
    handed: list[IssuedCode] = []
    left = 0
    while len(handed) < a.count:
        count = min(ISSUE_MAX, a.count - len(handed))
        key = a.idempotency_key
        if key and a.count > ISSUE_MAX:
            key = f"{key}.{len(handed) // ISSUE_MAX}"
        headers = {"Idempotency-Key": key} if key else {}
        try:
            answer = ctx.api.call(
                "POST", path, IssueOut, body=IssueIn(count=count, user_id=a.user), headers=headers
            )
        except ApiError as exc:
            if not handed:
                raise
            # Codes were handed out: the operator must have them, then the error.
            _show_issued(ctx, IssueOut(codes=handed, available=left))
            again = " (run again with the same key for them and the rest)" if key else ""
            raise CliError(
                exc.code,
                f"{exc.message}; {len(handed):,} of {a.count:,} codes were handed out, "
                f"printed above{again}",
                exc.exit_code,
            ) from exc
        handed.extend(answer.codes)
        left = answer.available
    _show_issued(ctx, IssueOut(codes=handed, available=left))


def _show_issued(ctx: Ctx, result: IssueOut) -> None:
    ctx.out.answer(
        result,
        lambda: table(
            ("CODE", "ASSIGNED"),
            [(c.code, when(c.assigned_time)) for c in result.codes],
            title=f"{len(result.codes):,} codes handed out; {result.available:,} left",
        ),
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def add_verbs(commands: Subparsers, codes: Subparsers, common: argparse.ArgumentParser) -> None:
    p = add(
        codes,
        "upload",
        upload,
        common,
        "upload (append) codes from files or stdin, streamed, with a progress bar",
        description="Upload codes into POOL from each FILE (- for standard input), one "
        "upload each, all or nothing. Format by extension (.csv, .json, else text: codes "
        "separated by commas or newlines) or --format. Each upload carries an "
        "Idempotency-Key derived from the content, pool and options: running the same "
        "command again never adds the codes twice.",
    )
    p.add_argument("pool", metavar="POOL", help="pool id or name")
    p.add_argument("files", metavar="FILE", nargs="+", help="a file of codes, or - for stdin")
    p.add_argument("--format", choices=tuple(MEDIA_TYPES), help="text, csv or json")
    p.add_argument(
        "--duplicates",
        choices=("allow", "skip"),
        default="allow",
        help="skip: a code already in the pool (or repeated) is skipped (default: allow)",
    )
    p.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="use KEY instead of the derived one (a new KEY uploads the same file again)",
    )

    p = add(codes, "list", list_codes, common, "list a pool's codes")
    p.add_argument("pool", metavar="POOL", help="pool id or name")
    p.add_argument("--status", choices=("available", "assigned", "redeemed"))
    p.add_argument("--limit", type=int, default=100, help="most codes to list (default: 100)")

    p = add(
        codes,
        "export",
        export,
        common,
        "export a pool's codes as CSV (streamed; progress on stderr)",
    )
    p.add_argument("pool", metavar="POOL", help="pool id or name")
    p.add_argument("--status", choices=("available", "assigned", "redeemed"))
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE, not stdout")

    p = add(codes, "generate", generate, common, "make new random codes in a pool")
    p.add_argument("pool", metavar="POOL", help="pool id or name")
    p.add_argument(
        "--pattern", required=True, help="e.g. SALE-####-####: each # a random character"
    )
    p.add_argument("--count", type=_positive, required=True, help="how many (1-10,000,000)")
    p.add_argument(
        "--charset", help="unambiguous (default), alphanumeric, digits, letters, or the characters"
    )
    p.add_argument("--check-character", action="store_true", help="append a Luhn mod N character")
    p.add_argument(
        "--max-guess-probability",
        type=float,
        metavar="P",
        help="refuse when a random guess would hit a live code more often (default 0.001)",
    )
    p.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="a retry with the same KEY (and the same options) generates nothing twice",
    )

    p = add(
        commands,
        "issue",
        issue,
        common,
        "hand out codes from a pool (partner fulfilment)",
        description="Hand out COUNT codes from POOL, all or nothing. Above 1000, in "
        "hand-outs of 1000 (each all or nothing; the pool is checked first).",
    )
    p.add_argument("pool", metavar="POOL", help="pool id or name")
    p.add_argument("-n", "--count", type=_positive, default=1, help="how many (default: 1)")
    p.add_argument("--user", help="the user (or partner) they are for")
    p.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="a retry with the same KEY gets the same codes",
    )
