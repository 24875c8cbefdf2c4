"""The ``text/plain`` upload parser: entries separated by commas and/or line breaks."""

from __future__ import annotations

import re
from typing import Final

from codepool.codecheck import fast_codes, invalid_reason
from codepool.codeparse_base import TextParser, count_lines

# A text/plain entry still unfinished after this many bytes (leading blanks dropped, blank
# runs squeezed) can only be too long: it is reported from this head and the rest skipped,
# so a body without separators cannot grow the buffer.
_MAX_PENDING_ENTRY: Final = 1 << 16

_PLAIN_SEPS_TO_NL: Final = bytes.maketrans(b",\r", b"\n\n")
_BLANK_RUN: Final = re.compile(rb"[ \t]{2,}")
_PLAIN_ENTRY: Final = re.compile(rb"[^,\r\n]+")
_PLAIN_SEP: Final = re.compile(rb"[,\r\n]")


def _utf8_head(data: bytes, size: int) -> bytes:
    """``data[:size]`` without a multi-byte character cut in half at the end."""
    if len(data) <= size:
        return data
    end = size
    while end > size - 3 and data[end] & 0xC0 == 0x80:  # data[end] continues a character
        end -= 1
    return data[:end]


class PlainParser(TextParser):
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
        codes = fast_codes(block.translate(_PLAIN_SEPS_TO_NL))
        if codes is None:
            codes = []
            for match in _PLAIN_ENTRY.finditer(block):
                entry = match.group().strip(b" \t")
                if entry:
                    self._check(entry, codes, block, match.start())
        else:
            self._entries += len(codes)
        self._lines += count_lines(block)
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
        self._record(index, head, invalid_reason(head) or "too_long", b"", 0)
        self._tail = bytearray()
        self._skipping = True
