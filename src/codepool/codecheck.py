"""Whether an uploaded entry is a valid code: the per-entry verdict and the block fast path.

Shared by every upload format (codeparse_plain, codeparse_csv, codeparse_json); also the
home of ``MAX_CODE_LENGTH``.
"""

from __future__ import annotations

import re
from typing import Final

MAX_CODE_LENGTH: Final = 128

# Bytes a code may consist of on the fast path: printable ASCII except comma.
_CODE_BYTES: Final = bytes(range(0x21, 0x7F)).replace(b",", b"")
CODE_BYTES_NL: Final = _CODE_BYTES + b"\n"
_HIGH_BYTES: Final = bytes(range(0x80, 0x100))
_TRIM_AROUND_NL: Final = re.compile(rb"[ \t]*\n[ \t]*")

# Unicode White_Space (what people mean by whitespace) and the C0/C1 controls outside it.
# Python's str.isspace() also counts U+001C..U+001F, which are controls, not whitespace.
_WHITESPACE: Final = re.compile(
    r"[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
)
_CONTROL: Final = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")
# The non-ASCII part of both, for text whose ASCII part is already vetted.
_NON_ASCII_BAD: Final = re.compile(r"[\x80-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


def invalid_reason(entry: bytes) -> str | None:
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


def fast_codes(joined: bytes, parts: list[bytes] | None = None) -> list[bytes] | None:
    """Codes of newline-joined entries, or None when the slow path must decide.

    Blanks around entries are trimmed and empty entries dropped; ``parts`` is
    ``joined.split(b"\\n")`` if the caller already has it. None means some entry may be
    invalid: an ASCII control, inner blanks, non-ASCII that is not clean UTF-8, or too long.
    """
    junk = joined.translate(None, CODE_BYTES_NL)
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
    """``fast_codes`` for entries with non-ASCII characters; their ASCII part is vetted."""
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
