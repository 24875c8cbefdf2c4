"""Who is calling: the root key, a project's API key, or a user's JWT -> a Principal.

Two ways to authenticate:

- ``authenticate(...)`` asks Redis every time: a revoked key or a rotated user-token
  secret is refused at once. Every endpoint but the hot ones uses it.
- ``authenticate(..., cache=...)`` answers from a per-process cache of verified API
  keys and user-token secrets, and puts a ``Credential`` on the Principal. The hot
  paths (issue, purchase) hand that Credential to issue.lua, which re-checks it in the
  same atomic step that pops the code (the key still exists; the secret is still the
  project's). So the cache saves a Redis round trip per request without letting a
  revoked key or an old secret hand out a single code.
"""

from __future__ import annotations

import hmac
import re
import time
from typing import Literal

import msgspec

from codepool import errors, usertoken
from codepool.models import StoredKey
from codepool.store.projects import KEY_PREFIX, ProjectStore

Role = Literal["root", "admin", "pos", "user"]

# How long a verified key or a project's user-token secret is reused. It only bounds
# how often Redis is asked; correctness comes from the check in issue.lua.
CACHE_TTL = 10.0
CACHE_MAX = 100_000
# Control characters: not allowed in a user id (it ends up in keys, CSV and logs).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Credential(msgspec.Struct, frozen=True):
    """What issue.lua re-checks: ``key`` = an API key id that must still exist,
    ``user`` = the user-token secret the JWT was verified with, which must still be
    the project's."""

    kind: Literal["key", "user"]
    value: str


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    role: Role
    project_id: str | None = None  # None only for root
    user_id: str | None = None  # set for users
    key_id: str | None = None  # set for API keys
    credential: Credential | None = None  # set when the answer came from the cache
    # When authentication already counted this request against the rate limit (API
    # keys asked of Redis: lua/verify_key.lua): ms to wait, 0 within the limit.
    rate_wait_ms: int | None = None

    @property
    def identity(self) -> str:
        """Stable name of the caller (scopes idempotency keys)."""
        return f"{self.role}:{self.project_id or ''}:{self.key_id or self.user_id or ''}"


class AuthCache:
    """Verified API keys (by token), user-token secrets (by project) and verified user
    tokens (by project and token), per process."""

    def __init__(self, ttl: float = CACHE_TTL) -> None:
        self.ttl = ttl
        self._keys: dict[str, tuple[float, str, StoredKey]] = {}
        self._secrets: dict[str, tuple[float, str]] = {}
        # (project, token) -> (exp, principal): a buyer's token is verified once, not on
        # each of its requests (~4.7 us each). Valid while exp is ahead and the secret it
        # was verified with is still the project's (the secret is in the principal's
        # credential, and issue.lua re-checks it in the same step as the hand-out).
        self._users: dict[tuple[str, str], tuple[float, Principal]] = {}

    def user(self, project_id: str, token: str, secret: str, now: float) -> Principal | None:
        hit = self._users.get((project_id, token))
        if hit is None or hit[0] <= now:  # exp <= now: expired, as usertoken says
            return None
        principal = hit[1]
        if principal.credential is None or principal.credential.value != secret:
            return None
        return principal

    def remember_user(self, project_id: str, token: str, exp: float, principal: Principal) -> None:
        if len(self._users) >= CACHE_MAX:
            self._users.clear()
        self._users[(project_id, token)] = (exp, principal)

    def key(self, token: str) -> tuple[str, StoredKey] | None:
        hit = self._keys.get(token)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1], hit[2]

    def remember_key(self, token: str, project_id: str, key: StoredKey) -> None:
        if len(self._keys) >= CACHE_MAX:
            self._keys.clear()
        self._keys[token] = (time.monotonic() + self.ttl, project_id, key)

    def secret(self, project_id: str) -> str | None:
        hit = self._secrets.get(project_id)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def remember_secret(self, project_id: str, secret: str) -> None:
        if len(self._secrets) >= CACHE_MAX:
            self._secrets.clear()
        self._secrets[project_id] = (time.monotonic() + self.ttl, secret)

    def forget(self, token: str, project_id: str | None) -> None:
        self._keys.pop(token, None)
        if project_id is not None:
            self._secrets.pop(project_id, None)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise errors.Unauthorized("missing Authorization header")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise errors.Unauthorized("expected 'Authorization: Bearer <token>'")
    return token


async def authenticate(
    authorization: str | None,
    project_id: str | None,
    root_key: str,
    projects: ProjectStore,
    cache: AuthCache | None = None,
) -> Principal:
    """Turn the Authorization header into a Principal, or raise 401.

    ``project_id`` is the project the URL names (None for routes outside a project);
    user tokens are checked against that project's secret, so a token of project A
    is not valid in project B.
    """
    token = bearer_token(authorization)
    if root_key and hmac.compare_digest(token.encode(), root_key.encode()):
        return Principal(role="root")
    if token.startswith(KEY_PREFIX):  # a JWT starts with "eyJ"
        return await _api_key(token, projects, cache)
    if project_id is None:
        # Most often a mistyped root key: only a JWT-shaped token earns the longer story.
        if token.count(".") != 2:
            raise errors.Unauthorized("invalid token")
        raise errors.Unauthorized("a user token is only valid inside its project")
    return await _user(token, project_id, projects, cache)


async def _api_key(token: str, projects: ProjectStore, cache: AuthCache | None) -> Principal:
    rate_wait_ms: int | None = None
    found: tuple[str, StoredKey] | None
    if cache is None:
        # Asked of Redis every time: count the rate limit in the same round trip.
        counted = await projects.verify_key_counted(token)
        if counted is None:
            raise errors.Unauthorized("invalid API key")
        found, rate_wait_ms = (counted[0], counted[1]), counted[2]
    else:
        found = cache.key(token)
        if found is None:
            found = await projects.verify_key(token)
            if found is None:
                raise errors.Unauthorized("invalid API key")
            cache.remember_key(token, *found)
    key_project, key = found
    return Principal(
        role="admin" if key.role == "admin" else "pos",
        project_id=key_project,
        key_id=key.id,
        credential=Credential("key", key.id) if cache is not None else None,
        rate_wait_ms=rate_wait_ms,
    )


async def _user(
    token: str, project_id: str, projects: ProjectStore, cache: AuthCache | None
) -> Principal:
    max_ttl = projects.settings.user_token_max_ttl
    cached = cache.secret(project_id) if cache is not None else None
    if cache is not None and cached is not None:
        known = cache.user(project_id, token, cached, time.time())
        if known is not None:
            return known
        try:
            principal, exp = _verify_jwt(
                token, project_id, cached, Credential("user", cached), max_ttl
            )
        except errors.Unauthorized:
            pass  # maybe the secret was rotated since it was cached: ask Redis below
        else:
            cache.remember_user(project_id, token, exp, principal)
            return principal
    try:
        secret = (await projects.get(project_id)).user_token_secret
    except errors.ProjectNotFound:
        raise errors.Unauthorized("invalid token") from None
    if cache is None:
        return _verify_jwt(token, project_id, secret, None, max_ttl)[0]
    cache.remember_secret(project_id, secret)
    principal, exp = _verify_jwt(token, project_id, secret, Credential("user", secret), max_ttl)
    cache.remember_user(project_id, token, exp, principal)
    return principal


def _verify_jwt(
    token: str, project_id: str, secret: str, credential: Credential | None, max_ttl: float
) -> tuple[Principal, float]:
    """The token's principal and its ``exp``, or Unauthorized."""
    now = time.time()
    try:
        claims = usertoken.verify(token, secret, now)
    except usertoken.ExpiredTokenError:
        raise errors.Unauthorized("token expired") from None
    except usertoken.InvalidTokenError:
        raise errors.Unauthorized("invalid token") from None
    # codepool's policy on top of the JWT rules (the signature is good, so saying why
    # tells a forger nothing): a user token must expire, and not too late, or a leaked
    # one would buy for ever.
    exp = claims.get("exp")
    if exp is None:
        raise errors.Unauthorized("the token has no exp claim: user tokens must expire")
    if exp - claims.get("iat", now) > max_ttl:
        raise errors.Unauthorized(
            f"the token lives longer than the {max_ttl:g} s a user token may (exp - iat)"
        )
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 128 or _CONTROL.search(sub):
        raise errors.Unauthorized("token subject is not a valid user id")
    principal = Principal(role="user", project_id=project_id, user_id=sub, credential=credential)
    return principal, float(exp)


def authorize(principal: Principal, project_id: str | None, *roles: Role) -> None:
    """Allow ``roles`` (root always) on ``project_id``; another project's caller gets 404."""
    if principal.role == "root":
        return
    if project_id is not None and principal.project_id != project_id:
        # No existence leak: the caller cannot tell B exists.
        raise errors.ProjectNotFound(id=project_id)
    if principal.role not in roles:
        raise errors.Forbidden(role=principal.role)
