"""What every client verb shares: its common options, its context, its error handling.

A verb is a function ``(Ctx) -> Exit | None``; ``handler`` turns it into the
``(args, settings) -> exit code`` that cli.py's subcommands are, printing a failure as
one line ``error: <code>: <message>`` on stderr and exiting with its code.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeAlias, TypeVar

from codepool.client.http import Api, CliError, Exit, UsageError, read_key, segment
from codepool.client.output import Output
from codepool.models import Page, PoolSummary
from codepool.settings import Settings

# Answers per page when a verb walks a whole list (the API's maximum).
PAGE = 1000

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
T = TypeVar("T")


def common_options() -> argparse.ArgumentParser:
    """The options every client verb takes (an argparse parent parser)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection and output")
    group.add_argument(
        "-p",
        "--project",
        help="project id (default: $CODEPOOL_PROJECT)",
    )
    group.add_argument(
        "--url", help="the service (default: $CODEPOOL_URL or http://127.0.0.1:8000)"
    )
    group.add_argument(
        "--key-file",
        type=Path,
        metavar="FILE",
        help="read the API key from FILE (default: $CODEPOOL_API_KEY; never on the command line)",
    )
    group.add_argument("--json", action="store_true", help="print the answer as JSON")
    group.add_argument(
        "--field",
        metavar="NAME",
        help="print only this field of the answer (a dotted path: id, codes.0.code)",
    )
    return common


class Ctx:
    """One verb's run: its arguments, settings, output and (on first use) its client."""

    def __init__(self, args: argparse.Namespace, settings: Settings) -> None:
        self.args = args
        self.settings = settings
        self.out = Output(json=args.json, field=args.field)
        self._stack = contextlib.ExitStack()
        self._api: Api | None = None

    @property
    def api(self) -> Api:
        if self._api is None:
            key = read_key(self.settings, self.args.key_file)
            self._api = self._stack.enter_context(Api(self.args.url or self.settings.url, key))
        return self._api

    @property
    def project(self) -> str:
        project: str = self.args.project or self.settings.project
        if not project:
            raise UsageError("no project: give --project ID or set CODEPOOL_PROJECT")
        return project

    def path(self, *parts: str) -> str:
        """``/v1/projects/<project>/<parts...>``, each part one path segment."""
        return "/".join(["/v1/projects", segment(self.project), *map(segment, parts)])

    def pool(self, given: str) -> str:
        """A pool id from ``given``, a pool's id or its name (names are unique)."""
        skip = 0
        named = ""
        while True:
            try:
                page = self.api.call(
                    "GET",
                    self.path("pools"),
                    Page[PoolSummary],
                    params={"skip": skip, "count": PAGE},
                )
            except CliError as exc:
                if exc.exit_code != Exit.AUTH:
                    raise
                # A key that may not list pools: it can only mean an id.
                return given
            for pool in page.data:
                if given == pool.id:
                    return pool.id
                if given == pool.name:
                    named = pool.id
            skip += len(page.data)
            if not page.data or skip >= page.matched:
                # An id wins over a name; neither: the service answers (404 pool_not_found).
                return named or given

    def close(self) -> None:
        self._stack.close()


def walk(
    ctx: Ctx, path: str, item: type[T], limit: int, params: dict[str, str | int | float]
) -> list[T]:
    """Up to ``limit`` items of a list endpoint, page after page; says on stderr when
    more matched than were fetched."""
    items: list[T] = []
    while len(items) < limit:
        page = ctx.api.call(
            "GET",
            path,
            Page[item],  # type: ignore[valid-type]
            params={**params, "skip": len(items), "count": min(PAGE, limit - len(items))},
        )
        items.extend(page.data)
        if not page.data or len(items) >= page.matched:
            return items
    ctx.out.note(f"(the first {len(items):,}; --limit N shows more)")
    return items


Verb = Callable[[Ctx], Exit | None]


def handler(verb: Verb) -> Callable[[argparse.Namespace, Settings], int]:
    """cli.py's handler for ``verb``: exit code from the outcome, errors as one line."""

    def run(args: argparse.Namespace, settings: Settings) -> int:
        ctx = Ctx(args, settings)
        try:
            with _pipe_closed_quietly():
                return int(verb(ctx) or Exit.OK)
        except CliError as exc:
            print(exc.line(), file=sys.stderr)
            return int(exc.exit_code)
        finally:
            ctx.close()

    return run


@contextlib.contextmanager
def _pipe_closed_quietly() -> Iterator[None]:
    """``codepool codes export POOL | head``: the reader left; stop without a trace."""
    try:
        yield
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(128 + 13) from None


def add(
    nouns: Subparsers,
    name: str,
    verb: Verb,
    common: argparse.ArgumentParser,
    help_text: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand ``name`` running ``verb``, with the common options."""
    parser: argparse.ArgumentParser = nouns.add_parser(
        name, parents=[common], help=help_text, description=description or help_text
    )
    parser.set_defaults(handler=handler(verb))
    return parser


def noun(commands: Subparsers, name: str, help_text: str) -> Subparsers:
    """A noun (``pools``) whose verbs (``list``, ``create``...) are its subcommands."""
    parser = commands.add_parser(name, help=help_text, description=help_text)
    verbs: Subparsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    return verbs
