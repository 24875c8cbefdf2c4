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

import re
from collections.abc import Callable
from itertools import repeat
from operator import itemgetter
from typing import Any, Final, Protocol

import ijson

from codepool.errors import (
    BadRequest,
    CodepoolError,
    InvalidCodes,
    UnsupportedMediaType,
    invalid_json,
)

MAX_CODE_LENGTH: Final = 128
MAX_REPORTED_ERRORS: Final = 20
SUPPORTED_MEDIA_TYPES: Final = ("text/plain", "text/csv", "application/json")

# Reported codes are cut to this many characters.
_SHOWN_CHARS: Final = 64
# A text/plain entry still unfinished after this many bytes (leading blanks dropped, blank
# runs squeezed) can only be too long: it is reported from this head and the rest skipped,
# so a body without separators cannot grow the buffer.
_MAX_PENDING_ENTRY: Final = 1 << 16
# A CSV row may carry other columns we ignore, but not unboundedly: past this the row is
# rejected (it is almost certainly an unterminated quote).
_MAX_CSV_ROW: Final = 1 << 20
# An unfinished CSV row longer than this is re-parsed only once it has doubled, so a long
# multi-line quoted field trickling in tiny chunks costs O(n log n), not O(n^2).
_RESCAN_FLOOR: Final = 1 << 16

_BOM: Final = b"\xef\xbb\xbf"  # spreadsheet exports often start with one

# Bytes a code may consist of on the fast path: printable ASCII except comma.
_CODE_BYTES: Final = bytes(range(0x21, 0x7F)).replace(b",", b"")
_CODE_BYTES_NL: Final = _CODE_BYTES + b"\n"
_HIGH_BYTES: Final = bytes(range(0x80, 0x100))
_NOT_CSV_SYNTAX: Final = bytes(b for b in range(256) if b not in b'",\n')
_PLAIN_SEPS_TO_NL: Final = bytes.maketrans(b",\r", b"\n\n")
_COMMA_TO_NL: Final = bytes.maketrans(b",", b"\n")
_TRIM_AROUND_NL: Final = re.compile(rb"[ \t]*\n[ \t]*")
_BLANK_RUN: Final = re.compile(rb"[ \t]{2,}")
_PLAIN_ENTRY: Final = re.compile(rb"[^,\r\n]+")
_PLAIN_SEP: Final = re.compile(rb"[,\r\n]")

# Unicode White_Space (what people mean by whitespace) and the C0/C1 controls outside it.
# Python's str.isspace() also counts U+001C..U+001F, which are controls, not whitespace.
_WHITESPACE: Final = re.compile(
    r"[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
)
_CONTROL: Final = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")
# The non-ASCII part of both, for text whose ASCII part is already vetted.
_NON_ASCII_BAD: Final = re.compile(r"[\x80-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")

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


def _reason(entry: bytes) -> str | None:
    """Why ``entry`` (non-empty, trimmed) is not a valid code, or None if it is."""
    if len(entry) <= MAX_CODE_LENGTH and entry.isascii() and not entry.translate(None, _CODE_BYTES):
        return None
    try:
        text = entry.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    if _CONTROL.search(text):
        return "control_character"
    if _WHITESPACE.search(text):
        return "whitespace"
    if "," in text:
        return "comma"
    if len(text) > MAX_CODE_LENGTH:
        return "too_long"
    return None


def _fast_codes(joined: bytes, parts: list[bytes] | None = None) -> list[bytes] | None:
    """Codes of newline-joined entries, or None when the slow path must decide.

    Blanks around entries are trimmed and empty entries dropped; ``parts`` is
    ``joined.split(b"\\n")`` if the caller already has it. None means some entry may be
    invalid: an ASCII control, inner blanks, non-ASCII that is not clean UTF-8, or too long.
    """
    junk = joined.translate(None, _CODE_BYTES_NL)
    if junk:
        ascii_junk = junk.translate(None, _HIGH_BYTES)
        if ascii_junk:
            if ascii_junk.translate(None, b" \t"):
                return None
            joined = _trim_entries(joined)
            if b" " in joined or b"\t" in joined:
                return None  # blanks inside an entry: an error, reported by the slow path
            parts = None
        if len(ascii_junk) != len(junk):
            return _fast_unicode_codes(joined)
    codes = list(filter(None, joined.split(b"\n") if parts is None else parts))
    if codes and max(map(len, codes)) > MAX_CODE_LENGTH:
        return None
    return codes


def _trim_entries(joined: bytes) -> bytes:
    """Drop blanks around the newline-separated entries."""
    # One replace() covers the ", " of pasted lists far faster than a regex substitution;
    # a few more passes cover padded columns, and only deep blank runs need the regex.
    joined = joined.replace(b"\n ", b"\n").strip(b" \t")
    if b" " not in joined and b"\t" not in joined:
        return joined
    for _ in range(2):
        joined = (
            joined.replace(b"\n ", b"\n")
            .replace(b" \n", b"\n")
            .replace(b"\n\t", b"\n")
            .replace(b"\t\n", b"\n")
        )
    if b"\n " in joined or b" \n" in joined or b"\n\t" in joined or b"\t\n" in joined:
        joined = _TRIM_AROUND_NL.sub(b"\n", joined)
    return joined


def _fast_unicode_codes(joined: bytes) -> list[bytes] | None:
    """``_fast_codes`` for entries with non-ASCII characters; their ASCII part is vetted."""
    try:
        text = joined.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _NON_ASCII_BAD.search(text):
        return None
    # "\n" is the same single unit in both, so the two splits line up entry by entry.
    if max(map(len, text.split("\n"))) > MAX_CODE_LENGTH:
        return None
    return list(filter(None, joined.split(b"\n")))


def _count_lines(data: bytes, end: int | None = None) -> int:
    """Line breaks (``\\n``, ``\\r\\n`` or ``\\r``) in ``data[:end]``."""
    count = data.count(b"\n", 0, end)
    if data.find(b"\r", 0, end) >= 0:
        count += data.count(b"\r", 0, end) - data.count(b"\r\n", 0, end)
    return count


def _utf8_head(data: bytes, size: int) -> bytes:
    """``data[:size]`` without a multi-byte character cut in half at the end."""
    if len(data) <= size:
        return data
    end = size
    while end > size - 3 and data[end] & 0xC0 == 0x80:  # data[end] continues a character
        end -= 1
    return data[:end]


class _Parser:
    """What all formats share: error bookkeeping, the BOM, feed/close plumbing."""

    def __init__(self) -> None:
        self._entries = 0
        self._error_count = 0
        self._errors: list[dict[str, Any]] = []
        self._bom_done = False
        self._head = b""

    @property
    def entries(self) -> int:
        return self._entries

    @property
    def has_errors(self) -> bool:
        return self._error_count > 0

    def feed(self, chunk: bytes) -> list[bytes]:
        if not self._bom_done:
            chunk = self._skip_bom(chunk)
        if not chunk:
            return []
        codes = self._feed(chunk)
        return [] if self._error_count else codes

    def close(self) -> list[bytes]:
        codes: list[bytes] = []
        if not self._bom_done:
            self._bom_done = True
            if self._head:  # a body shorter than a BOM
                codes = self._feed(self._head)
        codes += self._finish()
        if self._error_count:
            count = self._error_count
            raise InvalidCodes(
                f"{count} invalid code{'s' if count != 1 else ''}; nothing was stored",
                errors=self._errors,
                error_count=count,
            )
        return codes

    def _skip_bom(self, chunk: bytes) -> bytes:
        data = self._head + chunk
        if len(data) < len(_BOM) and _BOM.startswith(data):
            self._head = data  # undecided until three bytes are in
            return b""
        self._bom_done = True
        self._head = b""
        return data[len(_BOM) :] if data.startswith(_BOM) else data

    def _check(self, entry: bytes, codes: list[bytes], data: bytes | None, offset: int) -> None:
        """Count a non-empty entry; keep it if valid, else record why not.

        ``data[offset]`` is where the entry's line starts being counted from (text formats);
        None for JSON, which reports no lines.
        """
        index = self._entries
        self._entries = index + 1
        reason = _reason(entry)
        if reason is None:
            codes.append(entry)
        else:
            self._record(index, entry, reason, data, offset)

    def _record(
        self, index: int, entry: bytes, reason: str, data: bytes | None, offset: int
    ) -> None:
        self._error_count += 1
        if len(self._errors) >= MAX_REPORTED_ERRORS:
            return  # counted only: positions past the cap are not worth computing
        error: dict[str, Any] = {"index": index}
        if data is not None:
            error["line"] = self._line(data, offset)
        error["code"] = entry.decode("utf-8", "backslashreplace")[:_SHOWN_CHARS]
        error["reason"] = reason
        self._errors.append(error)

    def _line(self, data: bytes, offset: int) -> int:
        raise NotImplementedError

    def _feed(self, chunk: bytes) -> list[bytes]:
        raise NotImplementedError

    def _finish(self) -> list[bytes]:
        raise NotImplementedError


class _TextParser(_Parser):
    """Line bookkeeping shared by text/plain and CSV."""

    def __init__(self) -> None:
        super().__init__()
        self._tail = bytearray()  # the unfinished entry or row after the last complete one
        self._lines = 0  # line breaks before the current block
        self._pending_lf = False  # the last block ended in "\r": a leading "\n" completes it

    def _take_lf(self, chunk: bytes) -> bytes:
        # "\r\n" split across chunks: the "\r" already ended the line, so drop the "\n"
        # rather than count a second line break.
        self._pending_lf = False
        return chunk[1:] if chunk[0] == 0x0A else chunk

    def _line(self, data: bytes, offset: int) -> int:
        """1-based line of ``data[offset]``, ``data`` being the block now being parsed."""
        return self._lines + 1 + _count_lines(data, offset)


class PlainParser(_TextParser):
    """``text/plain``: entries separated by commas and/or line breaks, blanks trimmed."""

    def __init__(self) -> None:
        super().__init__()
        self._skipping = False  # inside an over-long entry already reported

    def _feed(self, chunk: bytes) -> list[bytes]:
        if self._pending_lf:
            chunk = self._take_lf(chunk)
        if self._skipping:
            match = _PLAIN_SEP.search(chunk)
            if match is None:
                return []
            self._skipping = False
            chunk = chunk[match.start() :]
        cut = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"), chunk.rfind(b",")) + 1
        if not cut:
            self._tail += chunk
            if len(self._tail) > _MAX_PENDING_ENTRY:
                self._overflow()
            return []
        block = bytes(self._tail) + chunk[:cut] if self._tail else chunk[:cut]
        self._tail = bytearray(chunk[cut:])
        self._pending_lf = cut == len(chunk) and chunk[-1] == 0x0D
        return self._block(block)

    def _finish(self) -> list[bytes]:
        if not self._tail:
            return []
        block = bytes(self._tail) + b"\n"
        self._tail = bytearray()
        return self._block(block)

    def _block(self, block: bytes) -> list[bytes]:
        """Codes of a block of complete entries (it ends at a separator)."""
        codes = _fast_codes(block.translate(_PLAIN_SEPS_TO_NL))
        if codes is None:
            codes = []
            for match in _PLAIN_ENTRY.finditer(block):
                entry = match.group().strip(b" \t")
                if entry:
                    self._check(entry, codes, block, match.start())
        else:
            self._entries += len(codes)
        self._lines += _count_lines(block)
        return codes

    def _overflow(self) -> None:
        # Leading blanks are trimmed anyway and a run of blanks matters only as "there is
        # whitespace here", so both can be squeezed without changing the verdict.
        tail = _BLANK_RUN.sub(b" ", bytes(self._tail).lstrip(b" \t"))
        if len(tail) <= _MAX_PENDING_ENTRY:
            self._tail = bytearray(tail)
            return
        head = _utf8_head(tail, _MAX_PENDING_ENTRY)
        index = self._entries
        self._entries += 1
        self._record(index, head, _reason(head) or "too_long", b"", 0)
        self._tail = bytearray()
        self._skipping = True


class CsvParser(_TextParser):
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
        self._lines += _count_lines(block)
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
        self._lines += _count_lines(data, pos)
        return codes, pos

    def _firsts(self, firsts: list[bytes], starts: list[int], data: bytes) -> list[bytes]:
        """Vet untrimmed first columns, all at once unless one of them needs a closer look."""
        if not firsts:
            return []
        joined = b"\n".join(firsts)
        # A line break inside a quoted first column would shift the entries: go one by one.
        codes = _fast_codes(joined, firsts) if joined.count(b"\n") == len(firsts) - 1 else None
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
    return _fast_codes(joined, firsts)


class JsonParser(_Parser):
    """``application/json``: exactly ``{"codes": [str, ...]}``, strings taken as they are."""

    def __init__(self) -> None:
        super().__init__()
        self._events: list[tuple[str, str, Any]] = ijson.sendable_list()
        self._coro = ijson.parse_coro(self._events)
        self._position = 0  # array index of the next item, for messages
        self._state = "start"  # start -> object -> key -> array -> after -> done
        self._blank = True  # nothing but whitespace so far

    def _feed(self, chunk: bytes) -> list[bytes]:
        if self._blank and chunk.strip():
            self._blank = False
        try:
            self._coro.send(chunk)
        except ijson.JSONError as exc:
            raise _malformed(exc) from None
        return self._drain()

    def _finish(self) -> list[bytes]:
        if self._blank:
            raise BadRequest('the body is empty; expected {"codes": [...]}')
        try:
            self._coro.close()
        except ijson.JSONError as exc:
            raise _malformed(exc) from None
        codes = self._drain()
        if self._state != "done":
            raise BadRequest('malformed JSON: the body must be {"codes": [...]}')
        return codes

    def _drain(self) -> list[bytes]:
        events = self._events
        if not events:
            return []
        strings: list[str] = [v for p, e, v in events if e == "string" and p == "codes.item"]
        if len(strings) != len(events):  # the few events that are not array items
            strings = []
            for prefix, event, value in events:
                if prefix == "codes.item" and event == "string":
                    strings.append(value)
                else:
                    self._structure(prefix, event, value, self._position + len(strings))
        del events[:]
        return self._codes(strings)

    def _structure(self, prefix: str, event: str, value: Any, position: int) -> None:
        """Follow the one allowed shape; anything else is a 400."""
        state = self._state
        if prefix == "codes.item":
            raise BadRequest(f"codes[{position}] is not a string", index=position)
        if prefix == "" and event == "start_map" and state == "start":
            self._state = "object"
        elif prefix == "" and event == "map_key" and state in ("object", "after"):
            if value != "codes":
                raise BadRequest(
                    f'unexpected key {value!r}; the body must be {{"codes": [...]}}', key=value
                )
            if state == "after":
                raise BadRequest('duplicate key "codes"', key=value)
            self._state = "key"
        elif prefix == "codes" and event == "start_array" and state == "key":
            self._state = "array"
        elif prefix == "codes" and event == "end_array" and state == "array":
            self._state = "after"
        elif prefix == "" and event == "end_map" and state in ("object", "after"):
            if state == "object":
                raise BadRequest('missing key "codes"; the body must be {"codes": [...]}')
            self._state = "done"
        elif prefix == "codes":
            raise BadRequest('"codes" must be an array of strings')
        else:
            raise BadRequest('the body must be a JSON object {"codes": [...]}')

    def _codes(self, strings: list[str]) -> list[bytes]:
        self._position += len(strings)
        strings = list(filter(None, strings))  # "" is an empty entry, ignored as elsewhere
        if not strings:
            return []
        joined = "\n".join(strings)
        if joined.isascii() and joined.count("\n") == len(strings) - 1:
            raw = joined.encode()
            if not raw.translate(None, _CODE_BYTES_NL):
                codes = raw.split(b"\n")
                if max(map(len, codes)) <= MAX_CODE_LENGTH:
                    self._entries += len(codes)
                    return codes
        codes = []
        for string in strings:
            # surrogatepass: a lone surrogate becomes bytes that fail as invalid_utf8
            self._check(string.encode("utf-8", "surrogatepass"), codes, None, 0)
        return codes


def _malformed(exc: Exception) -> CodepoolError:
    detail = exc.args[0] if exc.args else str(exc)
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    first_line = str(detail).strip().splitlines()[0] if str(detail).strip() else "invalid JSON"
    return invalid_json(first_line)


_PARSERS: Final[dict[str, Callable[[], CodeParser]]] = {
    "text/plain": PlainParser,
    "text/csv": CsvParser,
    "application/json": JsonParser,
}
