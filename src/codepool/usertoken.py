"""User tokens: HS256 JWTs signed with the project's ``user_token_secret``.

A purchase carries one, so one is verified per purchase. PyJWT 2.15 took ~70 us for
that on the machine here, half of a purchase's CPU: it checks every base64 character
in a Python loop and re-checks the key for PEM and SSH shapes on every call. This
verifier does the checks that matter for the one algorithm codepool accepts, in about a
fifth of PyJWT's time (11-13 us against 58-65 us, timeit in one run): the key is
absorbed into the HMAC once per secret, and base64url is checked and decoded in C.
tests/unit/test_usertoken.py holds it to PyJWT's verdict on a corpus of
good, bad and mangled tokens: whatever PyJWT refuses, this refuses too.

What it checks, as PyJWT does by default: three base64url segments (canonical, padding
optional); a header whose ``alg`` is exactly HS256, that asks for no extension (``crit``,
``b64``) and has a string ``kid`` if any; the signature (constant-time); a JSON object
payload; ``exp`` in the future, ``nbf`` and ``iat`` not in it (whole seconds, as PyJWT);
no ``aud`` (codepool names no audience); ``sub`` and ``jti`` strings when present. It is
stricter in two ways: time claims must be JSON numbers (PyJWT also takes numeric
strings), and any ``aud`` is refused (PyJWT lets an empty one pass).
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import time
from typing import Any

import msgspec

# base64url's two own characters -> standard base64's, for binascii.
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_json = msgspec.json.Decoder()
# Last characters whose unused bits are zero: 2 characters carry 8 bits (4 unused), 3
# carry 16 (2 unused); the alphabet index must be a multiple of 16 or 4.
_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_CANONICAL_LAST = {2: frozenset(_B64URL[::16]), 3: frozenset(_B64URL[::4])}


class InvalidTokenError(ValueError):
    """The token is malformed, wrongly signed, or its claims do not hold now."""


class ExpiredTokenError(InvalidTokenError):
    """The token's ``exp`` has passed."""


def verify(token: str, secret: str, now: float | None = None) -> dict[str, Any]:
    """The claims of a valid token; raise InvalidTokenError (or ExpiredTokenError) otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidTokenError("not a JWS compact token")
    header_b64, payload_b64, _ = parts
    # Every segment is checked before anything is done with it (the signing input is
    # then plain ASCII).
    header_raw, payload_raw, signature = (_segment(p) for p in parts)
    header = _object(header_raw, "header")
    if header.get("alg") != "HS256":
        raise InvalidTokenError("the token's algorithm is not HS256")
    if "crit" in header or header.get("b64", True) is not True:
        raise InvalidTokenError("the token asks for extensions codepool does not know")
    if "kid" in header and not isinstance(header["kid"], str):
        raise InvalidTokenError("the kid header must be a string")
    mac = _keyed(secret).copy()
    mac.update(f"{header_b64}.{payload_b64}".encode("ascii"))
    if not hmac.compare_digest(mac.digest(), signature):
        raise InvalidTokenError("bad signature")
    claims = _object(payload_raw, "payload")
    _check_claims(claims, time.time() if now is None else now)
    return claims


@functools.lru_cache(maxsize=1024)
def _keyed(secret: str) -> hmac.HMAC:
    """HMAC-SHA256 with the key already absorbed: copied per token, it saves hashing
    the key again for every purchase (4.6 -> 3.4 us on the machine here)."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def _segment(text: str) -> bytes:
    stripped = text.rstrip("=")
    padding = len(text) - len(stripped)
    if padding > 2 or (padding and len(text) % 4) or len(stripped) % 4 == 1:
        raise InvalidTokenError("bad base64url padding")
    # Canonical only: the unused low bits of the last character must be zero, so one
    # token has one spelling (PyJWT re-encodes to check the same).
    tail = len(stripped) % 4
    if tail and stripped[-1] not in _CANONICAL_LAST[tail]:
        raise InvalidTokenError("non-canonical base64url")
    # "+" and "/" are base64, not base64url: the translation below would let them in.
    if "+" in stripped or "/" in stripped:
        raise InvalidTokenError("not base64url")
    try:
        # Strict mode refuses anything outside the alphabet (whitespace, "=" inside);
        # in C, at half the cost of a regex check plus base64.urlsafe_b64decode.
        return binascii.a2b_base64(
            stripped.encode("ascii").translate(_TO_STANDARD) + b"=" * (-len(stripped) % 4),
            strict_mode=True,
        )
    except (binascii.Error, UnicodeEncodeError):
        raise InvalidTokenError("not base64url") from None


def _object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = _json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise InvalidTokenError(f"the {what} is not JSON") from None
    except RecursionError:  # msgspec gives up on nesting ~1000 deep: a forged token
        raise InvalidTokenError(f"the {what} is nested too deeply") from None
    if not isinstance(value, dict):
        raise InvalidTokenError(f"the {what} is not a JSON object")
    return value


def _seconds(claims: dict[str, Any], name: str) -> int | None:
    """A time claim in whole seconds (truncated, as PyJWT compares them)."""
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTokenError(f"the {name} claim must be a number")
    try:
        return int(value)
    except (ValueError, OverflowError):  # NaN, infinity
        raise InvalidTokenError(f"the {name} claim must be a finite number") from None


def _check_claims(claims: dict[str, Any], now: float) -> None:
    exp = _seconds(claims, "exp")
    if exp is not None and exp <= now:
        raise ExpiredTokenError("token expired")
    nbf = _seconds(claims, "nbf")
    if nbf is not None and nbf > now:
        raise InvalidTokenError("the token is not valid yet (nbf)")
    iat = _seconds(claims, "iat")
    if iat is not None and iat > now:
        raise InvalidTokenError("the token is not valid yet (iat)")
    if "aud" in claims:
        raise InvalidTokenError("the token names an audience")
    for name in ("sub", "jti"):
        if name in claims and not isinstance(claims[name], str):
            raise InvalidTokenError(f"the {name} claim must be a string")
