"""The ``text/csv`` upload parser: one code per row in the first column."""

from __future__ import annotations

import re
from itertools import repeat
from operator import itemgetter
from typing import Final

from codepool.codecheck import fast_codes
from codepool.codeparse_base import TextParser, count_lines
from codepool.errors import BadRequest

# A CSV row may carry other columns we ignore, but not unboundedly: past this the row is
# rejected (it is almost certainly an unterminated quote).
_MAX_CSV_ROW: Final = 1 << 20
# An unfinished CSV row longer than this is re-parsed only once it has doubled, so a long
# multi-line quoted field trickling in tiny chunks costs O(n log n), not O(n^2).
_RESCAN_FLOOR: Final = 1 << 16

_NOT_CSV_SYNTAX: Final = bytes(b for b in range(256) if b not in b'",\n')
_COMMA_TO_NL: Final = bytes.maketrans(b",", b"\n")

# One CSV row (RFC 4180 quoting; a quote opens a field only at its start, blanks allowed
# before it). Groups: 1 = a quoted first column (``""`` still escaped), 2 = a quoted first
# column followed by more text before the comma (an error), 3 = an unquoted one. Other
# fields are only skipped, leniently like Python's csv module: after a comma comes either
# a quoted field or a run of anything up to the next comma. Possessive quantifiers keep a
# long unterminated quote from backtracking, and no alternative can take the opening
# quote of an unfinished field as text, so an unfinished row never matches.
_QUOTED: Final = rb'"[^"]*+(?:""[^"]*+)*+"'
_CSV_ROW: Final = re.compile(
    rb"[ \t]*+(?:"
    rb'"([^"]*+(?:""[^"]*+)*+)"[ \t]*+'
    rb"|(" + _QUOTED + rb'(?:[ \t]++[^,\r\n \t]|[^,\r\n" \t])[^,\r\n]*+)'
    rb'|([^,\r\n" \t][^,\r\n]*+)'
    rb")?"
    rb"(?:(?:,[ \t]*+" + _QUOTED + rb'|,(?![ \t]*+"))'
    rb"(?:,[ \t]*+" + _QUOTED + rb'|[^,\r\n]++|,(?![ \t]*+"))*+)?'
    rb"(?:\r\n|\n|\r)"
)

_first_item = itemgetter(0)


class CsvParser(TextParser):
    """``text/csv``: one code per row in the first column, optional ``code`` header row."""

    def __init__(self) -> None:
        super().__init__()
        self._header_done = False  # the first non-empty first column was seen
        self._rescan_at = 0  # buffered size at which to try parsing again

    def _feed(self, chunk: bytes) -> list[bytes]:
        if self._pending_lf:
            chunk = self._take_lf(chunk)
            if not chunk:
                return []
        cut = max(chunk.rfind(b"\n"), chunk.rfind(b"\r")) + 1
        if not cut or len(self._tail) + len(chunk) < self._rescan_at:
            self._tail += chunk  # no row can end in this chunk, or not worth looking yet
            self._check_row_size()
            return []
        data = bytes(self._tail) + chunk if self._tail else chunk
        cut += len(data) - len(chunk)
        block = data[:cut]
        codes = _simple_csv_codes(block)
        if codes is not None:
            codes = self._accept(codes, block)
            rest = cut
        else:
            # Quotes may hide line breaks, so the last one need not end a row: parse
            # row by row as far as rows are complete.
            codes, rest = self._rows(data)
        self._tail = bytearray(data[rest:])
        self._pending_lf = rest == len(data) and data[-1] == 0x0D
        self._check_row_size()
        self._rescan_at = 2 * len(self._tail) if len(self._tail) > _RESCAN_FLOOR else 0
        return codes

    def _finish(self) -> list[bytes]:
        if not self._tail:
            return []
        data = bytes(self._tail) + b"\n"
        self._tail = bytearray()
        codes, rest = self._rows(data)
        if rest < len(data):
            raise BadRequest(
                f"malformed CSV: unterminated quoted field on line {self._lines + 1}",
                line=self._lines + 1,
            )
        return codes

    def _check_row_size(self) -> None:
        if len(self._tail) > _MAX_CSV_ROW:
            line = self._lines + 1
            raise BadRequest(
                f"malformed CSV: the row on line {line} is longer than {_MAX_CSV_ROW} bytes"
                " (an unterminated quoted field?)",
                line=line,
            )

    def _header(self, first: bytes) -> bool:
        """Whether the first non-empty first column is the ``code`` header."""
        self._header_done = True
        return first.lower() == b"code"

    def _accept(self, codes: list[bytes], block: bytes) -> list[bytes]:
        """Book the codes ``_simple_csv_codes`` found in ``block``."""
        if codes and not self._header_done and self._header(codes[0]):
            del codes[0]
        self._entries += len(codes)
        self._lines += count_lines(block)
        return codes

    def _rows(self, data: bytes) -> tuple[list[bytes], int]:
        """Codes of the complete rows at the start of ``data``, and where they end."""
        firsts: list[bytes] = []
        starts: list[int] = []
        pos = 0
        end = len(data)
        match = _CSV_ROW.match
        while pos < end:
            row = match(data, pos)
            if row is None:
                break  # an unfinished row (or, at close, an unterminated quote)
            quoted, junk, first = row.groups()
            if quoted is not None:
                first = quoted.replace(b'""', b'"') if b'"' in quoted else quoted
            elif junk is not None:
                line = self._line(data, pos)
                raise BadRequest(
                    f"malformed CSV: text after the closing quote in the first column, line {line}",
                    line=line,
                )
            if first:
                firsts.append(first)
                starts.append(pos)
            pos = row.end()
        codes = self._firsts(firsts, starts, data)
        self._lines += count_lines(data, pos)
        return codes, pos

    def _firsts(self, firsts: list[bytes], starts: list[int], data: bytes) -> list[bytes]:
        """Vet untrimmed first columns, all at once unless one of them needs a closer look."""
        if not firsts:
            return []
        joined = b"\n".join(firsts)
        # A line break inside a quoted first column would shift the entries: go one by one.
        codes = fast_codes(joined, firsts) if joined.count(b"\n") == len(firsts) - 1 else None
        if codes is not None:
            if codes and not self._header_done and self._header(codes[0]):
                del codes[0]
            self._entries += len(codes)
            return codes
        codes = []
        for raw, start in zip(firsts, starts, strict=True):
            first = raw.strip(b" \t")
            if first and (self._header_done or not self._header(first)):
                self._check(first, codes, data, start)
        return codes


def _simple_csv_codes(block: bytes) -> list[bytes] | None:
    """First columns of complete rows as codes, or None when the slow path must decide.

    Works on the whole block with bytes operations when its quoting cannot change the
    rows or fields: splitting at every comma and line break gives tokens, and as long as
    each token holds an even number of quotes, no quoted field spans a separator (its
    opening quote would leave an odd count in the token where it starts).
    """
    norm = block
    if b"\r" in norm:
        norm = norm.replace(b"\r\n", b"\n")
        if b"\r" in norm:  # old Mac line ends, rare: spare the common case this pass
            norm = norm.replace(b"\r", b"\n")
    syntax = norm.translate(None, _NOT_CSV_SYNTAX)  # just the quotes, commas and newlines
    if b'"' in syntax:
        # Tokens' quotes sit next to each other here; pairs cancel, an odd one remains.
        if b'"' in syntax.replace(b'""', b""):
            return None
        syntax = syntax.replace(b'"', b"")
    if len(syntax) == syntax.count(b"\n"):
        firsts = None  # a single column
        joined = norm
    else:
        per_row = syntax.find(b"\n") + 1
        if syntax == syntax[:per_row] * (len(syntax) // per_row):
            # Every row has the same columns: take every per_row-th token.
            firsts = norm.translate(_COMMA_TO_NL).split(b"\n")[::per_row]
        else:
            lines = norm.split(b"\n")
            firsts = list(map(_first_item, map(bytes.partition, lines, repeat(b","))))
        joined = b"\n".join(firsts)
    if b'"' in joined:
        # Unquote only the plain case: every quoted first column is exactly "X" (its
        # quotes even in count, so one at each end accounts for all of them iff the
        # quotes counted equal those at entry starts plus those at entry ends).
        quotes = joined.count(b'"')
        starts = joined.count(b'\n"') + joined.startswith(b'"')
        ends = joined.count(b'"\n') + joined.endswith(b'"')
        if quotes != starts + ends:
            return None
        joined = joined.replace(b'"', b"")
        firsts = None
    return fast_codes(joined, firsts)
