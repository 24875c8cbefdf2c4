"""Incremental parsers that turn a code upload, fed in network chunks, into validated codes.

An upload may hold tens of millions of codes, so the body is never held whole: ``feed``
takes each chunk as it arrives and returns the codes it completed, ``close`` returns the
rest. Text and CSV work on whole blocks of complete entries with C-level bytes operations
(``translate``/``split``/``partition``) and only fall back to per-entry Python when a block
holds something unusual (non-ASCII, inner whitespace, quoting the fast path cannot prove
harmless, or a bad entry). JSON goes through ijson's C backend.

Errors are all-or-nothing for the caller: a bad entry never makes ``feed`` raise. The
parser records the first ``MAX_REPORTED_ERRORS`` bad entries with their position, counts
every one, and ``close`` raises ``InvalidCodes`` if there was any. Once a bad entry has been
seen, ``feed`` and ``close`` return no more codes (the caller discards the upload anyway)
but keep counting entries and errors over the whole body. An entry with several faults
reports the first of: invalid_utf8, control_character, whitespace, comma, too_long.
A body that is malformed as a whole (broken JSON, an unterminated CSV quote) raises
``BadRequest`` at once.

Deliberate choices: a leading UTF-8 BOM is dropped; in text/plain and CSV only blanks
(space, tab) are trimmed, any other whitespace is an error; a CSV row with an empty first
column counts as blank; JSON strings are not trimmed and ``""`` is ignored like an empty
entry (so error indexes count non-empty strings, as for the other formats).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

from codepool.codeparse_csv import CsvParser
from codepool.codeparse_json import JsonParser
from codepool.codeparse_plain import PlainParser
from codepool.errors import UnsupportedMediaType

SUPPORTED_MEDIA_TYPES: Final = ("text/plain", "text/csv", "application/json")


class CodeParser(Protocol):
    """Push parser for one upload body."""

    def feed(self, chunk: bytes) -> list[bytes]:
        """Codes completed by this chunk, in order, each already validated."""

    def close(self) -> list[bytes]:
        """The remaining codes; raises ``InvalidCodes`` if any entry was bad."""

    @property
    def entries(self) -> int:
        """Non-empty entries seen so far, valid or not."""

    @property
    def has_errors(self) -> bool:
        """Whether a bad entry was seen (``close`` will raise)."""


def parser_for(content_type: str | None) -> CodeParser:
    """A fresh parser for the upload's media type (parameters such as charset ignored)."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    factory = _PARSERS.get(media_type)
    if factory is None:
        raise UnsupportedMediaType(
            f"cannot read codes from {media_type or 'a body without Content-Type'};"
            f" use one of {', '.join(SUPPORTED_MEDIA_TYPES)}",
            supported=list(SUPPORTED_MEDIA_TYPES),
        )
    return factory()


_PARSERS: Final[dict[str, Callable[[], CodeParser]]] = {
    "text/plain": PlainParser,
    "text/csv": CsvParser,
    "application/json": JsonParser,
}
