"""codepool.usertoken against PyJWT as the oracle: never accept what PyJWT refuses.

A corpus of hand-built tokens (every header and claim case the verifier has a rule
for) plus thousands of seeded random mutations of good tokens; for each, if codepool
accepts it PyJWT must accept it too, with the same claims, and the good ones must be
accepted by both.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import random
import time
from typing import Any

import jwt
import msgspec
import pytest
from redis.asyncio import Redis

from codepool import usertoken
from tests.apphelpers import app_client, make_pool, make_reward, make_tenant, user_token

SECRET = "project-secret-" + "0123456789abcdef" * 4
NOW = int(time.time())
# Far from now both ways: the corpus is built at import, tests may run minutes later.
LATER = NOW + 10 * 365 * 86400
EARLIER = NOW - 86400


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token(header: Any, payload: Any, secret: str = SECRET, *, raw: bool = False) -> str:
    """A token signed with HS256 whatever its header says; ``raw`` takes JSON text as is."""
    head = header if raw and isinstance(header, str) else msgspec.json.encode(header).decode()
    body = payload if raw and isinstance(payload, str) else msgspec.json.encode(payload).decode()
    signing = f"{b64(head.encode())}.{b64(body.encode())}"
    sig = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64(sig)}"


HS = {"alg": "HS256", "typ": "JWT"}
GOOD = [
    token(HS, {"sub": "u-1"}),
    token(HS, {"sub": "u-1", "exp": LATER}),
    token(HS, {"sub": "u-1", "exp": LATER + 0.5, "nbf": EARLIER, "iat": EARLIER}),
    token({"alg": "HS256"}, {"sub": "ü", "jti": "j", "iss": "anyone", "extra": [1, {"a": None}]}),
    token({"alg": "HS256", "kid": "k1"}, {"sub": "u"}),
    token({"alg": "HS256", "b64": True}, {"sub": "u"}),
    jwt.encode({"sub": "made-by-pyjwt", "exp": LATER}, SECRET, algorithm="HS256"),
]
BAD = [
    token(HS, {"sub": "u", "exp": EARLIER}),
    token(HS, {"sub": "u", "exp": 10.9}),
    token(HS, {"sub": "u", "nbf": LATER}),
    token(HS, {"sub": "u", "iat": LATER}),
    token(HS, {"sub": "u", "aud": "shop"}),
    token(HS, {"sub": "u", "aud": ["a"]}),
    token(HS, {"sub": "u", "aud": ""}),  # PyJWT lets an empty aud pass; codepool does not
    token(HS, {"sub": 5}),
    token(HS, {"sub": "u", "jti": 5}),
    token(HS, {"sub": "u", "exp": str(LATER)}),  # PyJWT takes it; codepool does not
    token(HS, {"sub": "u", "exp": True}),
    token(HS, {"sub": "u", "exp": None}),
    token(HS, '{"sub": "u", "exp": 1e400}', raw=True),
    token(HS, '{"sub": "u", "exp": NaN}', raw=True),
    token(HS, "[1, 2]", raw=True),
    token(HS, '"just a string"', raw=True),
    token(HS, "{not json", raw=True),
    token("[]", {"sub": "u"}, raw=True),
    token({"alg": "HS384"}, {"sub": "u"}),
    token({"alg": "none"}, {"sub": "u"}),
    token({"alg": "hs256"}, {"sub": "u"}),
    token({}, {"sub": "u"}),
    token({"alg": "HS256", "kid": 7}, {"sub": "u"}),
    token({"alg": "HS256", "crit": ["exp"], "exp": 1}, {"sub": "u"}),
    token({"alg": "HS256", "crit": []}, {"sub": "u"}),
    token({"alg": "HS256", "b64": False}, {"sub": "u"}),
    token(HS, {"sub": "u"}, secret="another-secret"),
    jwt.encode({"sub": "u"}, SECRET, algorithm="HS512"),
    jwt.encode({"sub": "u"}, "", algorithm="none"),
    "",
    ".",
    "..",
    "a.b",
    "a.b.c.d",
    GOOD[0] + ".",
    "." + GOOD[0],
    GOOD[0].replace(".", ".."),
    GOOD[0] + "==",  # the signature segment needs one "=", not two
    GOOD[0] + "===",
    GOOD[0] + " ",
    " " + GOOD[0],
    GOOD[0][:10] + "+" + GOOD[0][11:],  # base64, not base64url
    GOOD[0][:10] + "/" + GOOD[0][11:],
]


def pyjwt_claims(tok: str) -> dict[str, Any] | None:
    try:
        claims: dict[str, Any] = jwt.decode(tok, SECRET, algorithms=["HS256"])
    except jwt.PyJWTError:
        return None
    return claims


def ours(tok: str) -> dict[str, Any] | None:
    try:
        return usertoken.verify(tok, SECRET)
    except usertoken.InvalidTokenError:
        return None


@pytest.mark.parametrize("tok", GOOD)
def test_good_tokens_are_accepted_by_both(tok: str) -> None:
    claims = ours(tok)
    assert claims is not None
    assert claims == pyjwt_claims(tok)


@pytest.mark.parametrize("tok", BAD)
def test_bad_tokens_are_refused(tok: str) -> None:
    assert ours(tok) is None


def test_padding_is_optional_but_must_be_right() -> None:
    head, body, sig = GOOD[0].split(".")
    assert len(sig) % 4 and len(body) % 4
    padded_sig = f"{head}.{body}.{sig}" + "=" * (-len(sig) % 4)
    assert ours(padded_sig) == pyjwt_claims(padded_sig) == {"sub": "u-1"}
    # Padding the payload changes the signing input: the signature no longer matches.
    padded_body = f"{head}.{body}{'=' * (-len(body) % 4)}.{sig}"
    assert ours(padded_body) is None and pyjwt_claims(padded_body) is None


def test_non_canonical_base64_is_refused() -> None:
    # Same bytes, other spelling: set an unused low bit of the signature's last character.
    head, body, sig = GOOD[0].split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(sig) % 4 == 3  # 32 bytes: the last character carries 2 unused bits
    twin = alphabet[alphabet.index(sig[-1]) + 1]
    mangled = f"{head}.{body}.{sig[:-1]}{twin}"
    assert base64.urlsafe_b64decode(mangled.split(".")[2] + "=") == base64.urlsafe_b64decode(
        sig + "="
    )
    assert pyjwt_claims(mangled) is None
    assert ours(mangled) is None


def test_expired_is_told_apart() -> None:
    with pytest.raises(usertoken.ExpiredTokenError):
        usertoken.verify(BAD[0], SECRET)
    with pytest.raises(usertoken.InvalidTokenError):
        usertoken.verify(GOOD[0], "wrong")


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=.+/!é "


def _mutate(rng: random.Random, tok: str) -> str:
    i = rng.randrange(len(tok) + 1)
    match rng.randrange(4):
        case 0:  # replace a character
            return tok[:i] + rng.choice(ALPHABET) + tok[i + 1 :]
        case 1:  # insert one
            return tok[:i] + rng.choice(ALPHABET) + tok[i:]
        case 2:  # delete one
            return tok[:i] + tok[i + 1 :]
        case _:  # swap two segments' ends
            parts = tok.split(".")
            rng.shuffle(parts)
            return ".".join(parts)


def test_random_mutations_never_pass_where_pyjwt_refuses() -> None:
    rng = random.Random(20261122)
    checked = accepted = 0
    for _ in range(3000):
        tok = rng.choice(GOOD)
        for _ in range(rng.randint(1, 3)):
            tok = _mutate(rng, tok)
        mine = ours(tok)
        if mine is not None:
            accepted += 1
            assert mine == pyjwt_claims(tok), tok
        checked += 1
    assert checked == 3000
    # Some mutations keep a token valid (padding, a shuffle that changes nothing).
    assert accepted < checked // 2


@pytest.mark.parametrize("where", ["header", "payload"])
def test_a_token_nested_absurdly_deep_is_refused_not_a_crash(where: str) -> None:
    deep = '{"a":' * 1000 + "1" + "}" * 1000
    header = deep.replace('{"a":', '{"alg":"HS256","a":', 1) if where == "header" else HS
    payload = deep if where == "payload" else {"sub": "u"}
    tok = token(header, payload, raw=True)
    with pytest.raises(usertoken.InvalidTokenError, match="nested too deeply"):
        usertoken.verify(tok, SECRET)


async def test_a_cached_user_token_still_expires_and_follows_its_secret(redis: Redis) -> None:
    """Verified user tokens are remembered per worker (auth.AuthCache.user); a remembered
    one still stops at its exp, and one signed with a rotated secret is not taken."""
    async with app_client(redis) as c:
        t = await make_tenant(c)
        pool = await make_pool(c, t, [f"C{i}" for i in range(5)])
        reward = await make_reward(c, t, pool["id"])
        url = f"/v1/projects/{t.id}/rewards/{reward['id']}/purchase"  # the cached route
        # exp falls on the next whole second (JWT times are whole seconds): at least 0.5 s
        # away, time for the two purchases below.
        if time.time() % 1 > 0.5:
            await asyncio.sleep(1.05 - time.time() % 1)
        short = user_token(t, "ann", ttl=1)
        assert (await c.post(url, headers=short)).status_code == 201
        assert (await c.post(url, headers=short)).status_code == 201  # from the cache
        cache = c.app.state.services.auth_cache
        assert cache.user(
            t.id, short["Authorization"][7:], t.project["user_token_secret"], time.time()
        )
        await asyncio.sleep(1.05 - time.time() % 1)
        refused = await c.post(url, headers=short)
        assert refused.status_code == 401 and "expired" in refused.json()["error"]["message"]
        # The cache answers only for the secret the token was verified with.
        assert (
            cache.user(t.id, short["Authorization"][7:], "another secret", time.time() - 5) is None
        )
