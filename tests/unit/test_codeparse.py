"""Tests for codepool.codeparse: the streaming upload parsers.

Besides example-based tests, the text formats are checked against a deliberately naive
byte-by-byte reference implementation (below) on seeded random bodies, fed whole and in
small chunks, so the block-level fast paths and the per-row slow paths must both agree
with it.
"""

from __future__ import annotations

import json
import random
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from codepool.codecheck import MAX_CODE_LENGTH
from codepool.codeparse import SUPPORTED_MEDIA_TYPES, CodeParser, parser_for
from codepool.codeparse_base import MAX_REPORTED_ERRORS
from codepool.errors import BadRequest, CodepoolError, InvalidCodes, UnsupportedMediaType

PLAIN = "text/plain"
CSV = "text/csv"
JSON = "application/json"
CHUNK_SIZES = [1, 2, 3, 7, 64, 65536]
BOM = b"\xef\xbb\xbf"


# --- helpers -----------------------------------------------------------------------------


@dataclass
class Outcome:
    """Everything observable about one parse, comparable across chunkings."""

    kind: str  # "ok", "invalid" or "bad_request"
    codes: list[bytes] = field(default_factory=list)
    entries: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0
    line: int | None = None  # for bad_request, when given


def chunked(body: bytes, size: int | None) -> Iterator[bytes]:
    if size is None:
        yield body
        return
    for start in range(0, len(body), size):
        yield body[start : start + size]


def run(content_type: str, chunks: Iterable[bytes]) -> Outcome:
    parser = parser_for(content_type)
    codes: list[bytes] = []
    try:
        for chunk in chunks:
            codes += parser.feed(chunk)
        codes += parser.close()
    except InvalidCodes as exc:
        assert parser.has_errors
        # Codes returned before the first error depend on chunking; the caller drops them.
        return Outcome(
            "invalid",
            [],
            parser.entries,
            exc.details["errors"],
            exc.details["error_count"],
        )
    except BadRequest as exc:
        return Outcome("bad_request", line=exc.details.get("line"))
    assert not parser.has_errors
    return Outcome("ok", codes, parser.entries)


def parse(content_type: str, body: bytes, size: int | None = None) -> list[bytes]:
    """Codes of a body that must be valid."""
    outcome = run(content_type, chunked(body, size))
    assert outcome.kind == "ok", outcome
    assert outcome.entries == len(outcome.codes)
    return outcome.codes


def invalid(content_type: str, body: bytes, size: int | None = None) -> Outcome:
    outcome = run(content_type, chunked(body, size))
    assert outcome.kind == "invalid", outcome
    return outcome


def reasons(outcome: Outcome) -> list[str]:
    return [error["reason"] for error in outcome.errors]


def feed_all(parser: CodeParser, chunks: Iterable[bytes]) -> list[bytes]:
    codes = [code for chunk in chunks for code in parser.feed(chunk)]
    return codes + parser.close()


def bad_request(content_type: str, body: bytes, size: int | None = None) -> CodepoolError:
    parser = parser_for(content_type)
    with pytest.raises(BadRequest) as info:
        feed_all(parser, chunked(body, size))
    assert info.value.status == 400
    return info.value


def json_body(codes: list[Any]) -> bytes:
    return json.dumps({"codes": codes}).encode()


# --- reference implementation --------------------------------------------------------------

# Unicode White_Space, spelled out independently of the module.
WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
)


def ref_reason(entry: bytes) -> str | None:
    try:
        text = entry.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    if any(unicodedata.category(c) == "Cc" and c not in WHITE_SPACE for c in text):
        return "control_character"
    if any(c in WHITE_SPACE for c in text):
        return "whitespace"
    if "," in text:
        return "comma"
    if len(text) > MAX_CODE_LENGTH:
        return "too_long"
    return None


def ref_outcome(entries: list[tuple[bytes, int | None]]) -> Outcome:
    errors: list[dict[str, Any]] = []
    count = 0
    codes = []
    for index, (entry, line) in enumerate(entries):
        reason = ref_reason(entry)
        if reason is None:
            codes.append(entry)
            continue
        count += 1
        if len(errors) < MAX_REPORTED_ERRORS:
            error: dict[str, Any] = {"index": index}
            if line is not None:
                error["line"] = line
            error["code"] = entry.decode("utf-8", "backslashreplace")[:64]
            error["reason"] = reason
            errors.append(error)
    if count:
        return Outcome("invalid", [], len(entries), errors, count)
    return Outcome("ok", codes, len(entries))


def ref_plain(body: bytes) -> Outcome:
    body = body.removeprefix(BOM)
    entries: list[tuple[bytes, int | None]] = []
    line = 1
    current = bytearray()
    for i, byte in enumerate(body):
        char = bytes([byte])
        if char in b",\r\n":
            if current.strip(b" \t"):
                entries.append((bytes(current.strip(b" \t")), line))
            current.clear()
            if char == b"\r" or (char == b"\n" and body[i - 1 : i] != b"\r"):
                line += 1
        else:
            current += char
    if current.strip(b" \t"):
        entries.append((bytes(current.strip(b" \t")), line))
    return ref_outcome(entries)


class MalformedError(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


def ref_csv(body: bytes) -> Outcome:
    try:
        return ref_outcome(_ref_csv_entries(body.removeprefix(BOM)))
    except MalformedError as exc:
        return Outcome("bad_request", line=exc.line)


def _ref_csv_entries(body: bytes) -> list[tuple[bytes, int | None]]:
    n = len(body)
    pos = 0
    line = 1

    def at(i: int) -> bytes:
        return body[i : i + 1]

    def skip_blanks(i: int) -> int:
        while at(i) in (b" ", b"\t"):
            i += 1
        return i

    def quoted(i: int, row_line: int) -> tuple[bytes, int]:
        """Content of the quoted field opening at body[i]; index after its closing quote."""
        nonlocal line
        content = bytearray()
        i += 1
        while True:
            if i >= n:
                raise MalformedError(row_line)
            char = at(i)
            if char == b'"':
                if at(i + 1) == b'"':
                    content += b'"'
                    i += 2
                    continue
                return bytes(content), i + 1
            if char == b"\r" or (char == b"\n" and body[i - 1 : i] != b"\r"):
                line += 1
            content += char
            i += 1

    def unquoted(i: int) -> int:
        while i < n and at(i) not in (b",", b"\r", b"\n"):
            i += 1
        return i

    entries: list[tuple[bytes, int | None]] = []
    header_seen = False
    while pos < n:
        row_line = line
        i = skip_blanks(pos)
        if at(i) == b'"':
            first, i = quoted(i, row_line)
            i = skip_blanks(i)
            if i < n and at(i) not in (b",", b"\r", b"\n"):
                raise MalformedError(row_line)
        else:
            end = unquoted(i)
            first, i = body[i:end], end
        while at(i) == b",":
            i = skip_blanks(i + 1)
            if at(i) == b'"':
                _, i = quoted(i, row_line)
            i = unquoted(i)  # other columns: any text after a closing quote is kept
        if body[i : i + 2] == b"\r\n":
            i += 2
        elif i < n:
            i += 1
        line += 1
        pos = i
        first = first.strip(b" \t")
        if not first:
            continue
        if not header_seen:
            header_seen = True
            if first.lower() == b"code":
                continue
        entries.append((first, row_line))
    return entries


def ref_json(body: bytes) -> Outcome:
    strings = json.loads(body)["codes"]
    return ref_outcome([(s.encode(), None) for s in strings if s])


# --- parser_for ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("text/plain", b"A1,B2", [b"A1", b"B2"]),
        ("text/plain; charset=utf-8", b"A1,B2", [b"A1", b"B2"]),
        ("TEXT/Plain ;charset=UTF-8", b"A1,B2", [b"A1", b"B2"]),
        ("text/csv", b"A1,B2", [b"A1"]),
        ("text/csv; header=present", b"code\nA1,B2", [b"A1"]),
        ("application/json", b'{"codes": ["A1", "B2"]}', [b"A1", b"B2"]),
        ("application/json; charset=utf-8", b'{"codes": ["A1"]}', [b"A1"]),
    ],
)
def test_parser_for_picks_format_by_media_type(
    content_type: str, body: bytes, expected: list[bytes]
) -> None:
    assert parse(content_type, body) == expected


@pytest.mark.parametrize(
    "content_type", [None, "", "text/html", "application/xml", "application/x-ndjson", "csv"]
)
def test_parser_for_rejects_other_media_types(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        parser_for(content_type)
    assert info.value.status == 415
    assert info.value.code == "unsupported_media_type"
    assert info.value.details["supported"] == list(SUPPORTED_MEDIA_TYPES)


def test_parsers_satisfy_protocol() -> None:
    parsers: list[CodeParser] = [parser_for(t) for t in SUPPORTED_MEDIA_TYPES]
    for parser in parsers:
        assert parser.entries == 0
        assert parser.has_errors is False


# --- text/plain ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"A1, B2,,\nC3\r\n", [b"A1", b"B2", b"C3"]),
        (b"A1,B2,C3", [b"A1", b"B2", b"C3"]),
        (b"A1\nB2\nC3\n", [b"A1", b"B2", b"C3"]),
        (b"A1\r\nB2\r\nC3", [b"A1", b"B2", b"C3"]),
        (b"A1\rB2\rC3\r", [b"A1", b"B2", b"C3"]),
        (b"\t A1 \t,\n\n  B2\t\r\n\r\n,,,C3  ", [b"A1", b"B2", b"C3"]),
        (b"A1 ,  B2 ,\tC3", [b"A1", b"B2", b"C3"]),
        (b"A1     ,\t \t B2 \t \t\n      C3      ", [b"A1", b"B2", b"C3"]),
        (b"SAVE10, SAVE10, SAVE10", [b"SAVE10"] * 3),  # every instance counts
        (b'"quoted"', [b'"quoted"']),  # no quoting in text/plain: quotes are characters
        ("ÄÖÜ123, ✓-ok\n€5".encode(), ["ÄÖÜ123".encode(), "✓-ok".encode(), "€5".encode()]),
        (b"x" * 128, [b"x" * 128]),
        (("é" * 128).encode(), [("é" * 128).encode()]),  # 128 characters, 256 bytes
        (b"!#$%&'()*+-./:;<=>?@[\\]^_`{|}~", [b"!#$%&'()*+-./:;<=>?@[\\]^_`{|}~"]),
    ],
)
def test_plain_valid(body: bytes, expected: list[bytes]) -> None:
    assert parse(PLAIN, body) == expected


@pytest.mark.parametrize("body", [b"", b" ", b"\n", b"\r\n\r\n", b",,,", b" , \t,\n\r", BOM])
def test_plain_empty_bodies_give_nothing_and_no_error(body: bytes) -> None:
    outcome = run(PLAIN, [body])
    assert outcome == Outcome("ok", [], 0)


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (b"AB 12", "whitespace"),
        (b"AB\t12", "whitespace"),
        ("AB\u00a012".encode(), "whitespace"),
        ("\u00a0AB".encode(), "whitespace"),  # only blanks are trimmed
        ("AB\u3000".encode(), "whitespace"),
        ("A\u2028B".encode(), "whitespace"),
        ("A\x85B".encode(), "whitespace"),
        (b"A\x0bB", "whitespace"),
        (b"A\x0cB", "whitespace"),
        (b"A\x00B", "control_character"),
        (b"A\x07", "control_character"),
        (b"\x1bA", "control_character"),
        (b"A\x1fB", "control_character"),  # str.isspace() says yes; it is a control
        (b"A\x7fB", "control_character"),
        ("A\x9fB".encode(), "control_character"),
        (b"A\xffB", "invalid_utf8"),
        (b"A\xc3", "invalid_utf8"),  # truncated sequence
        (b"\xed\xa0\x80", "invalid_utf8"),  # an encoded surrogate
        (b"\xc0\xaf", "invalid_utf8"),  # overlong
        (b"x" * 129, "too_long"),
        (("é" * 129).encode(), "too_long"),
        (b"x" * 200 + b" y", "whitespace"),  # structural faults win over length
        (b"A \x00", "control_character"),
    ],
)
def test_plain_invalid_entry_reasons(entry: bytes, reason: str) -> None:
    outcome = invalid(PLAIN, b"OK1\n" + entry + b"\nOK2")
    assert outcome.error_count == 1
    (error,) = outcome.errors
    assert error["reason"] == reason
    assert error["index"] == 1
    assert error["line"] == 2
    assert outcome.entries == 3


def test_plain_inner_whitespace_is_one_bad_entry_not_two_codes() -> None:
    outcome = invalid(PLAIN, b"AB 12")
    assert outcome.entries == 1
    assert outcome.errors == [{"index": 0, "line": 1, "code": "AB 12", "reason": "whitespace"}]


def test_plain_error_positions_and_lines() -> None:
    body = b"A1, B 2\r\n\r\nC3,D\x00\rE5\n\n  ,F 6 , G7\r\n" + b"x" * 129
    outcome = invalid(PLAIN, body)
    assert outcome.errors == [
        {"index": 1, "line": 1, "code": "B 2", "reason": "whitespace"},
        {"index": 3, "line": 3, "code": "D\x00", "reason": "control_character"},
        {"index": 5, "line": 6, "code": "F 6", "reason": "whitespace"},
        {"index": 7, "line": 7, "code": "x" * 64, "reason": "too_long"},
    ]
    assert outcome.error_count == 4
    assert outcome.entries == 8


def test_reported_code_is_cut_to_64_characters() -> None:
    outcome = invalid(PLAIN, ("ü" * 100 + " x").encode())
    assert outcome.errors[0]["code"] == "ü" * 64


def test_invalid_utf8_is_reported_readably() -> None:
    outcome = invalid(PLAIN, b"AB\xff\xfe")
    assert outcome.errors[0]["code"] == "AB\\xff\\xfe"


@pytest.mark.parametrize("size", [None, 1, 7, 4096])
def test_error_cap_keeps_first_twenty_and_counts_all(size: int | None) -> None:
    lines = [f"OK{i}" if i % 3 else f"BAD {i}" for i in range(150)]
    outcome = invalid(PLAIN, "\n".join(lines).encode(), size)
    assert outcome.error_count == 50
    assert len(outcome.errors) == MAX_REPORTED_ERRORS
    assert [e["index"] for e in outcome.errors] == list(range(0, 60, 3))
    assert [e["line"] for e in outcome.errors] == list(range(1, 61, 3))
    assert outcome.errors[-1]["code"] == "BAD 57"
    assert outcome.entries == 150


def test_invalid_codes_error_shape() -> None:
    parser = parser_for(PLAIN)
    parser.feed(b"A B\n")
    with pytest.raises(InvalidCodes) as info:
        parser.close()
    assert info.value.status == 422
    assert info.value.code == "invalid_codes"
    assert "1 invalid code" in info.value.message
    assert info.value.details == {
        "errors": [{"index": 0, "line": 1, "code": "A B", "reason": "whitespace"}],
        "error_count": 1,
    }


def test_feed_returns_codes_as_soon_as_they_are_complete() -> None:
    parser = parser_for(PLAIN)
    assert parser.feed(b"A1\nB") == [b"A1"]
    assert parser.feed(b"2") == []
    assert parser.feed(b",C3,") == [b"B2", b"C3"]
    assert parser.feed(b"D4") == []
    assert parser.entries == 3
    assert parser.close() == [b"D4"]
    assert parser.entries == 4


def test_feed_keeps_counting_but_returns_nothing_after_an_error() -> None:
    parser = parser_for(PLAIN)
    assert parser.feed(b"A1\nA 2\nA3\n") == []
    assert parser.has_errors
    assert parser.feed(b"A4\nA5\nA 6\n") == []
    assert parser.entries == 6
    with pytest.raises(InvalidCodes) as info:
        parser.close()
    assert [e["index"] for e in info.value.details["errors"]] == [1, 5]
    assert [e["line"] for e in info.value.details["errors"]] == [2, 6]


def test_crlf_split_across_chunks_counts_one_line() -> None:
    parser = parser_for(PLAIN)
    assert parser.feed(b"A1\r") == [b"A1"]
    assert parser.feed(b"\n") == []
    assert parser.feed(b"A2\r") == [b"A2"]
    assert parser.feed(b"\nA 3") == []
    with pytest.raises(InvalidCodes) as info:
        parser.close()
    assert info.value.details["errors"][0]["line"] == 3


def test_bom_is_dropped_even_when_split() -> None:
    assert parse(PLAIN, BOM + b"A1,B2", 1) == [b"A1", b"B2"]
    assert parse(CSV, BOM + b"code\nA1\n", 1) == [b"A1"]
    assert parse(JSON, BOM + b'{"codes": ["A1"]}', 2) == [b"A1"]
    # Only a leading one: elsewhere U+FEFF is a (format) character like any other.
    assert parse(PLAIN, b"A1," + BOM + b"B2") == [b"A1", BOM + b"B2"]


def test_body_shorter_than_a_bom_is_still_parsed() -> None:
    outcome = invalid(PLAIN, b"\xef\xbb")
    assert reasons(outcome) == ["invalid_utf8"]
    assert parse(PLAIN, b"A") == [b"A"]


def test_huge_entry_without_separator_is_too_long_and_skipped() -> None:
    # 1 MiB without a separator must not be buffered; it is reported and skipped.
    body = b"Q" * (1 << 20) + b"\nA1\nA 2\n"
    for size in (65536, 1000):
        outcome = invalid(PLAIN, body, size)
        assert outcome.errors == [
            {"index": 0, "line": 1, "code": "Q" * 64, "reason": "too_long"},
            {"index": 2, "line": 3, "code": "A 2", "reason": "whitespace"},
        ]
        assert outcome.entries == 3


def test_huge_entry_reports_its_worst_fault_seen() -> None:
    outcome = invalid(PLAIN, b"Q\x00" + b"Q" * (1 << 18) + b",A1", 4096)
    assert reasons(outcome) == ["control_character"]
    outcome = invalid(PLAIN, "é".encode() * (1 << 17) + b",A1", 4095)  # cuts inside "é"
    assert reasons(outcome) == ["too_long"]


@pytest.mark.parametrize("size", [1000, 65536])
def test_long_blank_runs_around_an_entry_are_fine(size: int) -> None:
    body = b" " * 200_000 + b"A1" + b"\t" * 200_000 + b"\nB2"
    assert parse(PLAIN, body, size) == [b"A1", b"B2"]
    outcome = invalid(PLAIN, b" " * 100_000 + b"A1" + b" " * 100_000 + b"B2\nC3", size)
    assert reasons(outcome) == ["whitespace"]
    assert outcome.entries == 2


# --- text/csv --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"A1\nB2\n", [b"A1", b"B2"]),
        (b"code\nA1\nB2", [b"A1", b"B2"]),
        (b"Code,batch\nA1,1\nB2,2\n", [b"A1", b"B2"]),
        (b" CODE \t,x\r\nA1,y\r\n", [b"A1"]),
        (b'"code",x\n"A1",y\n', [b"A1"]),
        (b"\n\ncode\nA1\n", [b"A1"]),  # blank rows before the header
        (b"A1\ncode\n", [b"A1", b"code"]),  # only the first row can be a header
        (b"codes\nA1\n", [b"codes", b"A1"]),
        (b"A1,x,y,z\nB2\nC3,,\n", [b"A1", b"B2", b"C3"]),  # ragged rows are fine
        (b'"ABC1",x\n', [b"ABC1"]),
        (b'"A""B",x\n', [b'A"B']),  # escaped quote: a quote is a valid code character
        (b'AB"C,x\n', [b'AB"C']),  # a quote inside an unquoted field is just a character
        (b' "A1" ,x\n "B2"\n', [b"A1", b"B2"]),  # blanks around quotes
        (b'" A1\t",x\n', [b"A1"]),  # blanks inside quotes are trimmed too
        (b"  A1  ,x\n\tB2\t\n", [b"A1", b"B2"]),
        (b"A1      ,x\n      B2\t\t\t\t\n", [b"A1", b"B2"]),
        (b"A1,x\r\nB2,y\r\n", [b"A1", b"B2"]),
        (b"A1,x\rB2,y\r", [b"A1", b"B2"]),
        (b'A1,x\n\n\r\n,y\n  ,z\n"",w\nB2', [b"A1", b"B2"]),  # blank rows, empty firsts
        (b'A1,"x,y",z\nB2,"multi\nline\r\nnote"\nC3,"q""uote"\n', [b"A1", b"B2", b"C3"]),
        (b'A1, "x,\ny"\nB2,ab"c\nC3', [b"A1", b"B2", b"C3"]),
        (b'"A1","7","spring, promo"\r\n"B2","8","x"\r\n', [b"A1", b"B2"]),
        (b'"A1","7"\n"B2","8"\n', [b"A1", b"B2"]),
        ("ÄÖÜ123,x\n€5\n".encode(), ["ÄÖÜ123".encode(), "€5".encode()]),
        (b"SAVE10\nSAVE10\n", [b"SAVE10", b"SAVE10"]),
    ],
)
def test_csv_valid(body: bytes, expected: list[bytes]) -> None:
    assert parse(CSV, body) == expected
    assert parse(CSV, body, 1) == expected


@pytest.mark.parametrize("body", [b"", b"\n\n", b"code\n", b"CODE", b",x\n,y", b'"",x\n'])
def test_csv_bodies_without_codes(body: bytes) -> None:
    assert run(CSV, [body]) == Outcome("ok", [], 0)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'"A,B",x\n', {"index": 0, "line": 1, "code": "A,B", "reason": "comma"}),
        (b'code\nA1\n"B\nC",x\n', {"index": 1, "line": 3, "code": "B\nC", "reason": "whitespace"}),
        (b"A1\nA 2,x\n", {"index": 1, "line": 2, "code": "A 2", "reason": "whitespace"}),
        (b'"A 2"\n', {"index": 0, "line": 1, "code": "A 2", "reason": "whitespace"}),
        (b"A\x00,x\n", {"index": 0, "line": 1, "code": "A\x00", "reason": "control_character"}),
        (b"A\xff,x\n", {"index": 0, "line": 1, "code": "A\\xff", "reason": "invalid_utf8"}),
        (b"x" * 129 + b",y", {"index": 0, "line": 1, "code": "x" * 64, "reason": "too_long"}),
        (
            b'A1,"note\nspanning\r\nlines"\nB 2\n',
            {"index": 1, "line": 4, "code": "B 2", "reason": "whitespace"},
        ),
    ],
)
def test_csv_invalid_entries(body: bytes, error: dict[str, Any]) -> None:
    outcome = invalid(CSV, body)
    assert outcome.errors == [error]
    assert invalid(CSV, body, 1).errors == [error]


def test_csv_128_vs_129_characters() -> None:
    assert parse(CSV, ("ß" * 128 + ",x").encode()) == [("ß" * 128).encode()]
    assert reasons(invalid(CSV, ("ß" * 129 + ",x").encode())) == ["too_long"]


def test_csv_other_columns_are_not_validated() -> None:
    body = b"A1,has spaces,\x00\xff\n" + "B2,\u00a0ünïcode\t\n".encode()
    assert parse(CSV, body) == [b"A1", b"B2"]


@pytest.mark.parametrize(
    ("body", "line"),
    [
        (b'"AB"C,x\n', 1),
        (b'A1\nB2\n"AB" C\n', 3),
        (b'A1\n"unterminated,x\nB2\n', 2),
        (b'A1,"unterminated\n', 1),
        (b'A1,"x\ny"\n"AB"x', 3),
    ],
)
def test_csv_malformed_quoting_is_a_bad_request(body: bytes, line: int) -> None:
    for size in (None, 1, 5):
        error = bad_request(CSV, body, size)
        assert error.details == {"line": line}
        assert f"line {line}" in error.message


def test_csv_text_after_closing_quote_is_rejected_as_soon_as_the_row_ends() -> None:
    parser = parser_for(CSV)
    assert parser.feed(b'A1\n"AB"C,x') == [b"A1"]  # the row may still be unfinished
    with pytest.raises(BadRequest) as info:
        parser.feed(b"\nB2\n" + b"C3\n" * 1000)
    assert info.value.details == {"line": 2}
    assert "closing quote" in info.value.message


def test_csv_unterminated_quote_is_reported_at_close() -> None:
    parser = parser_for(CSV)
    assert parser.feed(b'A1\n"open,x\nB2\n') == [b"A1"]
    with pytest.raises(BadRequest) as info:
        parser.close()
    assert "unterminated" in info.value.message
    assert info.value.details == {"line": 2}


def test_csv_long_multiline_field_in_tiny_chunks_is_not_quadratic() -> None:
    # 600 KB of quoted note with a line break every 10 bytes, fed 10 bytes at a time:
    # re-parsing the pending row on every chunk would take minutes.
    note = b"123456789\n" * 60_000
    body = b'A1,"' + note + b'"\nB2,x\n'
    parser = parser_for(CSV)
    assert feed_all(parser, chunked(body, 10)) == [b"A1", b"B2"]


def test_csv_endless_row_is_rejected_without_buffering_it() -> None:
    error = bad_request(CSV, b'A1\nB2,"' + b"x" * (2 << 20), 65536)
    assert error.details == {"line": 2}
    assert "longer than" in error.message


# --- application/json ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"codes": []}', []),
        (b'{"codes": ["A1", "B2", "A1"]}', [b"A1", b"B2", b"A1"]),
        (b' \n{ "codes" : [ "A1" ] }\n ', [b"A1"]),
        (b'{"codes": ["", "A1", ""]}', [b"A1"]),
        (json_body(["ÄÖÜ123", "x" * 128]), ["ÄÖÜ123".encode(), b"x" * 128]),
        (
            b'{"codes": ["\\u00c4\\u00d6", "a\\"b", "a\\\\b", "a/b"]}',
            ["ÄÖ".encode(), b'a"b', b"a\\b", b"a/b"],
        ),
    ],
)
def test_json_valid(body: bytes, expected: list[bytes]) -> None:
    assert parse(JSON, body) == expected
    assert parse(JSON, body, 1) == expected


@pytest.mark.parametrize(
    ("codes", "reason"),
    [
        ([" A1"], "whitespace"),  # JSON strings are taken as they are: no trimming
        (["A1\n"], "whitespace"),
        (["A\u00a0B"], "whitespace"),
        (["A\u0000B"], "control_character"),
        (["A\u007fB"], "control_character"),
        (["A,B"], "comma"),
        (["x" * 129], "too_long"),
        (["ü" * 129], "too_long"),
    ],
)
def test_json_invalid_codes(codes: list[str], reason: str) -> None:
    outcome = invalid(JSON, json_body(["OK", "", *codes, "OK"]))
    # index counts non-empty strings; JSON errors carry no line
    assert outcome.errors == [{"index": 1, "code": codes[0][:64], "reason": reason}]
    assert outcome.entries == 3


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "empty"),
        (b"  \n ", "empty"),
        (b'["A1"]', "JSON object"),
        (b'"A1"', "JSON object"),
        (b"{}", 'missing key "codes"'),
        (b'{"code": ["A1"]}', "unexpected key 'code'"),
        (b'{"codes": ["A1"], "extra": 1}', "unexpected key 'extra'"),
        (b'{"extra": 1, "codes": ["A1"]}', "unexpected key 'extra'"),
        (b'{"codes": ["A1"], "codes": ["B2"]}', 'duplicate key "codes"'),
        (b'{"codes": "A1"}', "array of strings"),
        (b'{"codes": {"a": "b"}}', "array of strings"),
        (b'{"codes": null}', "array of strings"),
        (b'{"codes": ["A1", 5]}', "codes[1] is not a string"),
        (b'{"codes": ["", null]}', "codes[1] is not a string"),
        (b'{"codes": ["A1", ["B2"]]}', "codes[1] is not a string"),
        (b'{"codes": [{"code": "A1"}]}', "codes[0] is not a string"),
        (b'{"codes": ["A1"]', "not valid JSON"),
        (b'{"codes": ["A1"]} []', "not valid JSON"),
        (b'{"codes": ["A1",]}', "not valid JSON"),
        (b'{"codes": ["A\xff"]}', "not valid JSON"),  # yajl rejects invalid UTF-8 itself
        (b"{'codes': []}", "not valid JSON"),
    ],
)
def test_json_wrong_shape_is_a_bad_request(body: bytes, fragment: str) -> None:
    for size in (None, 1):
        error = bad_request(JSON, body, size)
        assert fragment in error.message


def test_json_non_string_item_reports_its_array_index() -> None:
    error = bad_request(JSON, b'{"codes": ["A", "", "B", true]}', 3)
    assert error.details == {"index": 3}


def test_json_error_cap_and_count() -> None:
    codes = [f"bad {i}" if i % 2 else f"ok{i}" for i in range(100)]
    outcome = invalid(JSON, json_body(codes), 64)
    assert outcome.error_count == 50
    assert [e["index"] for e in outcome.errors] == list(range(1, 41, 2))
    assert all("line" not in e for e in outcome.errors)


def test_whitespace_is_unicode_white_space_and_controls_are_cc() -> None:
    # Every character Python calls a space, and every Cc control, inside a code. JSON
    # carries them verbatim, so this checks the classification itself.
    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    controls = [chr(c) for c in range(0x100) if unicodedata.category(chr(c)) == "Cc"]
    assert set(spaces) - set(controls) <= WHITE_SPACE
    candidates = sorted(set(spaces) | set(controls))
    outcome = invalid(JSON, json_body([f"A{c}B" for c in candidates]))
    assert outcome.error_count == len(candidates)
    parser = parser_for(JSON)
    parser.feed(json_body([f"A{c}B" for c in candidates]))
    with pytest.raises(InvalidCodes):
        parser.close()
    for start in range(0, len(candidates), MAX_REPORTED_ERRORS):
        batch = candidates[start : start + MAX_REPORTED_ERRORS]
        got = reasons(invalid(JSON, json_body([f"A{c}B" for c in batch])))
        want = ["whitespace" if c in WHITE_SPACE else "control_character" for c in batch]
        assert got == want


# --- chunk boundaries --------------------------------------------------------------------------

BODIES: list[tuple[str, bytes]] = [
    (PLAIN, b"A1, B2,,\nC3\r\n"),
    (PLAIN, "ÄÖÜ123,\r\n€€€\r\r\n  x\t,\t✓✓".encode()),
    (PLAIN, b"A1\r\nB 2\r\nC\x003\r\r\nD4,E\xff5,\xc3" + b"x" * 130 + "ü".encode() * 129),
    (PLAIN, BOM + b"A1\nB2\r" + b"C3," * 200),
    (PLAIN, ", ".join(f"CODE{i}" for i in range(2000)).encode()),
    (CSV, b'code,note\r\n"A1","x, y"\r\nB2,"multi\r\nline"\r\n"C""3",z\r\n  D4  ,\r\n'),
    (CSV, 'Code\nÄÖÜ123\n"€ 5",x\n"A,B"\n\nE5\rF6'.encode()),
    (CSV, b'A1,"never\nclosed'),
    (CSV, b'A1\n"AB"junk,x\nB2\n'),
    (CSV, BOM + "".join(f'"C{i}","{i}","a, b"\r\n' for i in range(1500)).encode()),
    (CSV, "".join(f"C{i},{i},note\n" for i in range(3000)).encode()),
    (JSON, b'{"codes": ["A1", "\\u00c4\\u00d6\\u00dc123", "B 2", "", "\\u20ac", "a\\"b"]}'),
    (JSON, '{\n  "codes": ["ÄÖÜ", "x\\ny", "C,3"]\n}'.encode()),
    (JSON, json_body([f"CODE{i}" for i in range(3000)])),
    (JSON, b'{"codes": ["A1", 42]}'),
]


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize(("content_type", "body"), BODIES, ids=lambda v: str(v)[:24])
def test_chunking_never_changes_the_outcome(content_type: str, body: bytes, size: int) -> None:
    assert run(content_type, chunked(body, size)) == run(content_type, [body])


def test_chunked_bodies_match_reference() -> None:
    for content_type, body in BODIES:
        got = run(content_type, [body])
        if content_type == PLAIN:
            assert got == ref_plain(body)
        elif content_type == CSV:
            assert got == ref_csv(body)
        elif got.kind != "bad_request":
            assert got == ref_json(body.removeprefix(BOM))


def test_empty_chunks_are_harmless() -> None:
    parser = parser_for(CSV)
    assert parser.feed(b"") == []
    assert parser.feed(b"A1\r") == [b"A1"]
    assert parser.feed(b"") == []
    assert parser.feed(b"\nB2") == []
    assert parser.close() == [b"B2"]


# --- differential fuzzing against the reference ------------------------------------------------

PLAIN_ALPHABET = [
    b"A", b"b", b"7", b"-", b"\"", b",", b",", b"\n", b"\r", b"\r\n", b" ", b" ", b"\t",
    "Ä".encode(), "\u00a0".encode(), "€".encode(), b"\x00", b"\xff", b"\x0b", b"A" * 65,
]  # fmt: skip
CSV_ALPHABET = [
    b"A", b"b", b"7", b",", b",", b"\n", b"\n", b"\r\n", b"\r", b'"', b'"', b'""', b" ",
    b"\t", "Ä".encode(), b"code", b"\xff", b"\x00", b"A" * 65,
]  # fmt: skip
# Bodies built from whole rows, so quoted fields are mostly well-formed and the block-level
# fast paths get exercised, not only the per-row fallback.
CSV_FIRSTS = [b"A1", b"B2", b'"C3"', b'"q""q"', b"", b' "D4" ', "Ä".encode(), b"code"]
CSV_FIELDS = [*CSV_FIRSTS, b'"x, y"', b'"m\nl"', b'"a\r\n,b"', b"E 5", b'z"z', b'"end"x']
CSV_SIMPLE = [b"A1", b"B2", b'"C3"', b"", b'""', "Ä".encode(), b"code", b'" x "', b"\t"]
CSV_BAD_FIRSTS = [b"E 5", b"F\xff", b'"G,7"', b"x" * 129, b'"m\nl"']
# Half of the bodies avoid everything invalid, so fast paths are compared on valid input too.
BAD_PIECES = {b"\x00", b"\xff", b"\x0b", "\u00a0".encode(), b"A" * 65}


def _random_body(rng: random.Random, alphabet: list[bytes], size: int) -> bytes:
    if rng.random() < 0.5:
        alphabet = [piece for piece in alphabet if piece not in BAD_PIECES]
    return b"".join(rng.choice(alphabet) for _ in range(rng.randrange(size)))


def _random_csv_rows(rng: random.Random) -> bytes:
    mode = rng.random()
    firsts = CSV_FIRSTS + CSV_BAD_FIRSTS if mode < 0.3 else CSV_FIRSTS
    fields = CSV_SIMPLE if mode > 0.6 else CSV_FIELDS
    if mode > 0.8:
        firsts = CSV_SIMPLE
    columns = rng.randrange(0, 3)
    rows = []
    for _ in range(rng.randrange(1, 40)):
        cells = [rng.choice(fields) for _ in range(columns + (rng.random() < 0.1))]
        rows.append(b",".join([rng.choice(firsts), *cells]) + rng.choice([b"\n", b"\r\n"]))
    return b"".join(rows)


@pytest.mark.parametrize("seed", range(4))
def test_plain_matches_reference_on_random_bodies(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        body = _random_body(rng, PLAIN_ALPHABET, 80)
        expected = ref_plain(body)
        for size in (None, 1, 3, 16):
            assert run(PLAIN, chunked(body, size)) == expected, (body, size)


@pytest.mark.parametrize("seed", range(4))
def test_csv_matches_reference_on_random_bodies(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        body = _random_body(rng, CSV_ALPHABET, 60)
        expected = ref_csv(body)
        for size in (None, 1, 3, 16):
            assert run(CSV, chunked(body, size)) == expected, (body, size)


@pytest.mark.parametrize("seed", range(4))
def test_csv_matches_reference_on_random_rows(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        body = _random_csv_rows(rng)
        expected = ref_csv(body)
        for size in (None, 5, 64):
            assert run(CSV, chunked(body, size)) == expected, (body, size)


@pytest.mark.parametrize("seed", range(2))
def test_json_matches_reference_on_random_codes(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = ["A", "7", "-", " ", ",", "\n", "\x00", "Ä", "\u00a0", "€", '"', "\\", "x" * 70]
    for _ in range(200):
        codes = ["".join(rng.choices(alphabet, k=rng.randrange(4))) for _ in range(8)]
        body = json_body(codes)
        expected = ref_json(body)
        for size in (None, 1, 7):
            assert run(JSON, chunked(body, size)) == expected, (codes, size)


# --- volume ----------------------------------------------------------------------------------

COUNT = 1_000_000


def _generated(content_type: str, count: int, batch: int = 20_000) -> Iterator[bytes]:
    """The body for codes C000000000.. streamed in pieces, never built whole."""
    if content_type == JSON:
        yield b'{"codes": ['
    elif content_type == CSV:
        yield b"code,batch\r\n"
    for start in range(0, count, batch):
        numbers = range(start, min(start + batch, count))
        if content_type == PLAIN:
            yield b"".join(b"C%09d, " % i for i in numbers)
        elif content_type == CSV:
            yield b"".join(b"C%09d,7\r\n" % i for i in numbers)
        else:
            yield (b"," if start else b"") + b",".join(b'"C%09d"' % i for i in numbers)
    if content_type == JSON:
        yield b"]}"


def _rechunk(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    buffer = b""
    for piece in pieces:
        buffer += piece
        while len(buffer) >= size:
            yield buffer[:size]
            buffer = buffer[size:]
    if buffer:
        yield buffer


@pytest.mark.parametrize("content_type", [PLAIN, CSV, JSON])
def test_a_million_codes_in_network_sized_chunks(content_type: str) -> None:
    parser = parser_for(content_type)
    seen = 0
    largest_batch = 0
    for chunk in _rechunk(_generated(content_type, COUNT), 65_000):
        codes = parser.feed(chunk)
        largest_batch = max(largest_batch, len(codes))
        if codes:
            assert codes[0] == b"C%09d" % seen
            assert codes[-1] == b"C%09d" % (seen + len(codes) - 1)
        seen += len(codes)
    seen += len(parser.close())
    assert seen == COUNT
    assert parser.entries == COUNT
    assert largest_batch < 10_000  # codes come out as they arrive, not at the end


def test_a_million_codes_with_one_bad_one_at_the_end() -> None:
    parser = parser_for(PLAIN)
    for chunk in _rechunk([*_generated(PLAIN, COUNT), b"BAD CODE"], 65_000):
        parser.feed(chunk)
    with pytest.raises(InvalidCodes) as info:
        parser.close()
    assert info.value.details["errors"] == [
        {"index": COUNT, "line": 1, "code": "BAD CODE", "reason": "whitespace"}
    ]


def test_errors_are_codepool_errors() -> None:
    assert issubclass(InvalidCodes, CodepoolError)
    assert issubclass(BadRequest, CodepoolError)
