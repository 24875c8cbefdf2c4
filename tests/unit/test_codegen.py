"""codegen: patterns, charsets, the Luhn mod N check character and bulk drawing."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from codepool import codegen
from codepool.codegen import Generator, PatternError, check_character, parse, verify


def test_luhn_mod_10_is_the_luhn_of_card_numbers() -> None:
    # The classic example: 7992739871 has check digit 3.
    assert check_character("7992739871", "0123456789") == "3"
    assert verify("79927398713", "0123456789")
    assert not verify("79927398710", "0123456789")


@pytest.mark.parametrize("alphabet", ["AB", "ABCD", "0123456789", "ABCDEF"])
def test_every_check_character_verifies_and_every_single_substitution_fails(
    alphabet: str,
) -> None:
    """Exhaustively: every drawn string of 1 to 4 characters (3 for the larger
    alphabets), every position including the check character, every other character."""
    longest = 4 if len(alphabet) <= 4 else 3
    for length in range(1, longest + 1):
        for drawn in map("".join, itertools.product(alphabet, repeat=length)):
            code = drawn + check_character(drawn, alphabet)
            assert verify(code, alphabet), code
            for position, wrong in itertools.product(range(len(code)), alphabet):
                if wrong != code[position]:
                    typo = code[:position] + wrong + code[position + 1 :]
                    assert not verify(typo, alphabet), (code, typo)


@pytest.mark.parametrize("charset", ["unambiguous", "alphanumeric", "digits", "letters", "XY"])
def test_drawn_codes_match_the_pattern_and_their_check_characters_verify(charset: str) -> None:
    pattern = parse("SALE-####-##x#", charset, check_character=True)
    codes = Generator(pattern).draw(20_000)
    assert len(codes) == 20_000
    for raw in codes:
        code = raw.decode()
        assert pattern.matches(code), code
        assert code.startswith("SALE-") and code[9] == "-" and code[12] == "x"
        drawn = code[5:9] + code[10:12] + code[13]
        assert code[-1] == check_character(drawn, pattern.alphabet)
        assert verify(drawn + code[-1], pattern.alphabet)


def test_without_a_check_character_the_code_is_the_pattern_filled() -> None:
    pattern = parse("####", "digits")
    codes = Generator(pattern).draw(5_000)
    assert all(len(c) == 4 and c.isdigit() for c in codes)
    assert pattern.space == 10_000


def test_every_character_is_equally_likely() -> None:
    """Rejection sampling: 256 is no multiple of 10, yet no digit is favoured (a plain
    byte % 10 would draw 0-5 with probability 26/256 and 6-9 with 25/256)."""
    pattern = parse("##########", "digits")
    counts = Counter(b"".join(Generator(pattern).draw(100_000)))
    expected = 100_000  # 1M characters / 10 digits
    chi2 = sum((n - expected) ** 2 / expected for n in counts.values())
    assert set(counts) == set(b"0123456789")
    assert chi2 < 40, counts  # 9 degrees of freedom: p < 1e-5 for a fair source


def test_a_unicode_literal_is_kept_whole() -> None:
    pattern = parse("€-##", "digits")
    codes = [c.decode() for c in Generator(pattern).draw(100)]
    assert all(pattern.matches(c) and c.startswith("€-") for c in codes)


@pytest.mark.parametrize(
    ("pattern", "charset", "check", "says"),
    [
        ("SALE", "unambiguous", False, "no '#'"),
        ("SA LE-##", "unambiguous", False, "cannot hold"),
        ("A,##", "unambiguous", False, "cannot hold"),
        ("##", "A", False, "at least 2"),
        ("##", "ABA", False, "distinct"),
        ("##", "AB,", False, "printable ASCII"),
        ("##", "AB C", False, "printable ASCII"),
        ("##", "ABC", True, "even number"),
        ("#" * 128, "digits", True, "over 128"),
    ],
)
def test_patterns_that_cannot_make_valid_codes_are_refused(
    pattern: str, charset: str, check: bool, says: str
) -> None:
    with pytest.raises(PatternError, match=says):
        parse(pattern, charset, check)


def test_space_and_guess_probability() -> None:
    assert parse("SALE-####-####").space == 32**8
    assert parse("###", "ABCD", check_character=True).space == 64
    assert codegen.guess_probability(16, 64) == 0.25
