"""What every upload parser shares: error bookkeeping, the BOM, feed/close plumbing,
and the line bookkeeping of the text formats (text/plain and CSV).
"""

from __future__ import annotations

from typing import Any, Final

from codepool.codecheck import invalid_reason
from codepool.errors import InvalidCodes

MAX_REPORTED_ERRORS: Final = 20

# Reported codes are cut to this many characters.
_SHOWN_CHARS: Final = 64

_BOM: Final = b"\xef\xbb\xbf"  # spreadsheet exports often start with one


def count_lines(data: bytes, end: int | None = None) -> int:
    """Line breaks (``\\n``, ``\\r\\n`` or ``\\r``) in ``data[:end]``."""
    count = data.count(b"\n", 0, end)
    if data.find(b"\r", 0, end) >= 0:
        count += data.count(b"\r", 0, end) - data.count(b"\r\n", 0, end)
    return count


class BaseParser:
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
        reason = invalid_reason(entry)
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


class TextParser(BaseParser):
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
        return self._lines + 1 + count_lines(data, offset)
