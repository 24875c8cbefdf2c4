"""Code generation: patterns, charsets, the Luhn mod N check character, bulk drawing.

A pattern such as ``SALE-####-####`` is literal text with one random character per
``#``, drawn from a charset with the operating system's cryptographic random source
(``os.urandom``). Drawing is done in bulk with C-level bytes operations, never a Python
loop per character: random bytes are mapped onto the charset with ``bytes.translate``
(rejection sampling: the bytes past the largest multiple of N are deleted, so every
character is exactly equally likely), and the codes of a chunk are laid out column by
column with extended-slice assignment into one buffer, then split. The check character
(Luhn mod N) is computed the same way: one contribution table per ``#`` position, the
per-code sums kept as one byte each inside a big integer (lanes never carry into each
other: each partial sum stays below 2N <= 186) and reduced mod N with ``translate``.

Charsets are printable ASCII (no space, no comma), 2 to 93 distinct characters; that is
what a till can type, and it keeps every code one byte per drawn character.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from codepool.codecheck import MAX_CODE_LENGTH

SLOT: Final = "#"
CHARSETS: Final[dict[str, str]] = {
    # No 0/O, 1/I: nothing a person can misread (the contract's default).
    "unambiguous": "23456789ABCDEFGHJKLMNPQRSTUVWXYZ",
    "alphanumeric": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "digits": "0123456789",
    "letters": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
}
DEFAULT_CHARSET: Final = "unambiguous"
# Printable ASCII without space and comma (a comma separates codes in an upload).
_ALLOWED: Final = frozenset(chr(c) for c in range(33, 127)) - {","}
MAX_CHARSET: Final = len(_ALLOWED)  # 93


class PatternError(ValueError):
    """A pattern or charset that cannot make valid codes; the message says why."""


@dataclass(frozen=True, slots=True)
class Pattern:
    """A parsed pattern: what to generate and how large its space is."""

    text: str
    alphabet: str
    check_character: bool

    @property
    def slots(self) -> int:
        return self.text.count(SLOT)

    @property
    def space(self) -> int:
        """Codes the pattern can make: len(alphabet) ** slots (the check character adds
        none: it follows from the others)."""
        return int(len(self.alphabet) ** self.slots)

    def matches(self, code: str) -> bool:
        """Whether ``code`` is one this pattern makes (check character included)."""
        width = len(self.text) + (1 if self.check_character else 0)
        if len(code) != width:
            return False
        drawn = []
        for want, got in zip(self.text, code, strict=False):
            if want == SLOT:
                if got not in self.alphabet:
                    return False
                drawn.append(got)
            elif want != got:
                return False
        if self.check_character:
            return verify("".join(drawn) + code[-1], self.alphabet)
        return True


def parse(pattern: str, charset: str = DEFAULT_CHARSET, check_character: bool = False) -> Pattern:
    """The Pattern of a request, or PatternError saying what is wrong."""
    alphabet = CHARSETS.get(charset, charset)
    if len(alphabet) < 2:
        raise PatternError("a charset needs at least 2 characters")
    if len(set(alphabet)) != len(alphabet):
        raise PatternError("the charset's characters must be distinct")
    if not set(alphabet) <= _ALLOWED:
        raise PatternError(
            "a charset is printable ASCII without space or comma"
            " (or one of: " + ", ".join(CHARSETS) + ")"
        )
    if SLOT not in pattern:
        raise PatternError(f"the pattern has no {SLOT!r}: it would make one code only")
    for char in pattern:
        if char.isspace() or not char.isprintable() or char == ",":
            raise PatternError(f"the pattern holds {char!r}, which a code cannot hold")
    width = len(pattern) + (1 if check_character else 0)
    if width > MAX_CODE_LENGTH:
        raise PatternError(f"the codes would be {width} characters, over {MAX_CODE_LENGTH}")
    if check_character and len(alphabet) % 2:
        # Luhn's doubling is a permutation of 0..N-1 only for even N: with an odd N two
        # characters double to the same value and swapping them goes unnoticed.
        raise PatternError(
            "a check character needs a charset with an even number of characters"
            " (Luhn mod N catches every mistyped character only then)"
        )
    return Pattern(pattern, alphabet, check_character)


def guess_probability(live: int, space: int) -> float:
    """Chance that one random guess in the pattern's space hits one of ``live`` codes."""
    return live / space if space else 1.0


def space_float(space: int) -> float:
    """The space as a JSON number (at most 93 ** 128 ~ 1e252: always a finite float)."""
    return float(space)


# -- Luhn mod N -------------------------------------------------------------------------


def _doubled(value: int, n: int) -> int:
    addend = 2 * value
    return addend // n + addend % n


def check_character(drawn: str, alphabet: str) -> str:
    """The Luhn mod N check character of ``drawn`` (the characters of the ``#``s, in
    order): from the right, every second value doubled (its "digits" in base N summed),
    the check character makes the total a multiple of N."""
    n = len(alphabet)
    total = 0
    for position, char in enumerate(reversed(drawn)):
        value = alphabet.index(char)
        total += _doubled(value, n) if position % 2 == 0 else value
    return alphabet[(n - total % n) % n]


def verify(drawn_and_check: str, alphabet: str) -> bool:
    """Whether the last character is the Luhn mod N check character of the others."""
    n = len(alphabet)
    total = 0
    for position, char in enumerate(reversed(drawn_and_check)):
        value = alphabet.find(char)
        if value < 0:
            return False
        total += _doubled(value, n) if position % 2 == 1 else value
    return total % n == 0


# -- bulk drawing -----------------------------------------------------------------------


class Generator:
    """Draws codes of one pattern in bulk: ``draw(count)`` -> list of encoded codes.

    Codes drawn in one call may repeat (as independent draws do); the caller's staging
    step skips repeats and codes the project already has, and asks for more.
    """

    def __init__(self, pattern: Pattern) -> None:
        self.pattern = pattern
        alphabet = pattern.alphabet.encode("ascii")
        n = len(alphabet)
        self._n = n
        self._slots = pattern.slots
        # Rejection sampling: bytes >= limit are deleted, the rest taken mod n.
        limit = 256 - 256 % n
        self._keep = limit / 256
        self._to_value = bytes(b % n for b in range(256))
        self._rejected = bytes(range(limit, 256))
        self._to_char = alphabet + bytes(256 - n)
        # Columns of one encoded code (plus a newline to split codes apart): a literal
        # byte, or the index of the # it shows, or -1 for the check character.
        columns: list[int | bytes] = []
        slot = 0
        for char in pattern.text:
            if char == SLOT:
                columns.append(slot)
                slot += 1
            else:
                columns.extend(bytes([b]) for b in char.encode())
        if pattern.check_character:
            columns.append(-1)
        self._columns = columns
        self._width = len(columns) + 1
        # Luhn tables: the # at index i is doubled when its distance from the right end of
        # the drawn characters (check character at distance 0) is odd.
        self._mod = bytes(b % n for b in range(256))
        doubled = bytes(_doubled(v, n) if v < n else 0 for v in range(256))
        plain = bytes(range(256))
        self._luhn = [doubled if (self._slots - i) % 2 == 1 else plain for i in range(self._slots)]
        self._check = bytes(alphabet[(n - s) % n] if s < n else 0 for s in range(256))

    def _values(self, count: int) -> bytes:
        """``count`` uniform values in 0..n-1, one byte each."""
        out = bytearray()
        while len(out) < count:
            need = count - len(out)
            raw = os.urandom(int(need / self._keep) + 64)
            out += raw.translate(self._to_value, self._rejected)
        return bytes(out[:count])

    def draw(self, count: int) -> list[bytes]:
        """``count`` random codes (encoded), independently drawn."""
        if count <= 0:
            return []
        slots = self._slots
        values = self._values(count * slots)
        buffer = bytearray(count * self._width)
        for index, column in enumerate(self._columns):
            if isinstance(column, bytes):
                buffer[index :: self._width] = column * count
            elif column >= 0:
                buffer[index :: self._width] = values[column::slots].translate(self._to_char)
            else:
                buffer[index :: self._width] = self._check_column(values, count)
        buffer[self._width - 1 :: self._width] = b"\n" * count
        codes = bytes(buffer).split(b"\n")
        codes.pop()  # after the last newline
        return codes

    def _check_column(self, values: bytes, count: int) -> bytes:
        """The check character of each code, computed lane-wise (one byte per code)."""
        slots = self._slots
        total = 0
        for i in range(slots):
            column = values[i::slots].translate(self._luhn[i])
            # Two lanes below n add up below 2n <= 186 < 256: no carry between codes.
            summed = (total + int.from_bytes(column, "big")).to_bytes(count, "big")
            total = int.from_bytes(summed.translate(self._mod), "big")
        return total.to_bytes(count, "big").translate(self._check)
