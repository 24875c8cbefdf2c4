"""What several client verbs share besides their context: argument types (times, JSON
objects), the --limit and --yes options, and the confirmation asked before deleting.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from codepool.client.base import Ctx
from codepool.client.http import UsageError


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


def add_limit(parser: argparse.ArgumentParser, default: int = 100) -> None:
    parser.add_argument(
        "--limit", type=int, default=default, help="most entries to list (default: %(default)s)"
    )


def add_yes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
