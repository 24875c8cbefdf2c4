"""What a command prints: a table or a few lines for people, JSON for scripts.

``--json`` prints the answer as the API gave it (decoded and encoded again with the
service's Structs); ``--field NAME`` prints one field of it as plain text, for
``$(...)`` in a shell script. Tables go to stdout through rich; on a pipe rich prints
them without colour, and as wide as they need.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from msgspec import UNSET
from rich.console import Console, RenderableType
from rich.table import Table

from codepool.client.http import UsageError


def when(value: float | None) -> str:
    """A Unix time for people: UTC, to the second."""
    if value is None:
        return "-"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def stdout_console() -> Console:
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        # A pipe or file: no 80-column default that would cut columns short.
        console = Console(highlight=False, width=1000, no_color=True)
    return console


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


class Output:
    """How one command prints its answer (``--json``, ``--field`` or for people)."""

    def __init__(self, *, json: bool = False, field: str | None = None) -> None:
        self.json = json
        self.field = field
        self.console = stdout_console()

    def answer(self, value: Any, people: Callable[[], RenderableType | None]) -> None:
        """Print ``value`` (a Struct, a list of them, or builtins); ``people`` renders it
        for a person when neither --json nor --field was given."""
        if self.field is not None:
            print(_text(_pick(msgspec.to_builtins(value), self.field)))
        elif self.json:
            self.print_json(value)
        else:
            rendered = people()
            if rendered is not None:
                self.show(rendered)

    def show(self, rendered: RenderableType) -> None:
        """Print for people, without the blanks rich pads table rows with."""
        with self.console.capture() as captured:
            self.console.print(rendered)
        lines = captured.get().splitlines()
        sys.stdout.write("".join(line.rstrip() + "\n" for line in lines))
        sys.stdout.flush()

    def print_json(self, value: Any) -> None:
        data = msgspec.json.encode(value)
        if self.console.is_terminal:
            data = msgspec.json.format(data, indent=2)
        sys.stdout.write(data.decode() + "\n")
        sys.stdout.flush()

    def note(self, text: str) -> None:
        """A remark for the person at the terminal (stderr, never in --json output)."""
        if not (self.json or self.field):
            stderr_console().print(text)


def table(
    columns: Sequence[str], rows: Sequence[Sequence[object]], title: str = "", header: bool = True
) -> Table:
    """A plain table; ``None`` cells print as ``-``."""
    grid = Table(
        *columns,
        title=title or None,
        box=None,
        header_style="bold",
        pad_edge=False,
        show_header=header,
    )
    for row in rows:
        grid.add_row(*(_cell(cell) for cell in row))
    return grid


def fields(pairs: Sequence[tuple[str, object]]) -> Table:
    """One object as ``name  value`` lines."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for name, value in pairs:
        grid.add_row(name, _cell(value))
    return grid


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _pick(data: Any, path: str) -> Any:
    """``data``'s field at a dotted path (``key``, ``codes.0.code``)."""
    found = data
    for part in path.split("."):
        if isinstance(found, dict) and part in found:
            found = found[part]
        elif isinstance(found, list) and part.isdigit() and int(part) < len(found):
            found = found[int(part)]
        elif isinstance(found, list) and all(isinstance(item, dict) for item in found):
            # A list of objects: the field of each, one per line (`--field id` on a list).
            found = [item.get(part) for item in found]
        else:
            raise UsageError(f"the answer has no field {path!r}")
    return found


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return "\n".join(str(v) for v in value)
    if isinstance(value, dict | list):
        return msgspec.json.encode(value).decode()
    return str(value)


def struct_pairs(value: msgspec.Struct) -> list[tuple[str, object]]:
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
