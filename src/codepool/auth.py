"""Who is calling: the root key, a project's API key, or a user's JWT -> a Principal."""

from __future__ import annotations

import hmac
from typing import Literal

import jwt
import msgspec

from codepool import errors
from codepool.store.projects import ProjectStore, split_api_key

Role = Literal["root", "admin", "pos", "user"]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    role: Role
    project_id: str | None = None  # None only for root
    user_id: str | None = None  # set for users
    key_id: str | None = None  # set for API keys

    @property
    def identity(self) -> str:
        """Stable name of the caller (scopes idempotency keys)."""
        return f"{self.role}:{self.project_id or ''}:{self.key_id or self.user_id or ''}"


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise errors.Unauthorized("missing Authorization header")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise errors.Unauthorized("expected 'Authorization: Bearer <token>'")
    return token


async def authenticate(
    authorization: str | None, project_id: str | None, root_key: str, projects: ProjectStore
) -> Principal:
    """Turn the Authorization header into a Principal, or raise 401.

    ``project_id`` is the project the URL names (None for routes outside a project);
    user tokens are checked against that project's secret, so a token of project A
    is not valid in project B.
    """
    token = bearer_token(authorization)
    if root_key and hmac.compare_digest(token.encode(), root_key.encode()):
        return Principal(role="root")
    if split_api_key(token) is not None:
        found = await projects.verify_key(token)
        if found is None:
            raise errors.Unauthorized("invalid API key")
        key_project, key = found
        return Principal(
            role="admin" if key.role == "admin" else "pos", project_id=key_project, key_id=key.id
        )
    if project_id is None:
        raise errors.Unauthorized("a user token is only valid inside its project")
    try:
        project = await projects.get(project_id)
    except errors.ProjectNotFound:
        raise errors.Unauthorized("invalid token") from None
    try:
        claims = jwt.decode(
            token,
            project.user_token_secret,
            algorithms=["HS256"],
            options={"require": ["sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise errors.Unauthorized("token expired") from None
    except jwt.PyJWTError:
        raise errors.Unauthorized("invalid token") from None
    sub = claims["sub"]
    if (
        not isinstance(sub, str)
        or not sub
        or len(sub) > 128
        or any(ord(c) < 32 or ord(c) == 127 for c in sub)
    ):
        raise errors.Unauthorized("token subject is not a valid user id")
    return Principal(role="user", project_id=project_id, user_id=sub)


def authorize(principal: Principal, project_id: str | None, *roles: Role) -> None:
    """Allow ``roles`` (root always) on ``project_id``; another project's caller gets 404."""
    if principal.role == "root":
        return
    if project_id is not None and principal.project_id != project_id:
        # No existence leak: the caller cannot tell B exists.
        raise errors.ProjectNotFound(id=project_id)
    if principal.role not in roles:
        raise errors.Forbidden(role=principal.role)
