"""Per-credential rate limits: a fixed 1-second window counted in Redis.

The counters (keys.rate_window) live in Redis, so every worker and host shares them. The
hand-out routes count in the same window inside issue.lua (no extra round trip there);
every other route counts here, once per request, when the caller is known.
"""

from __future__ import annotations

import math

from codepool import errors, keys
from codepool.auth import Principal
from codepool.settings import Settings
from codepool.store.base import Backend


def limit_of(principal: Principal, settings: Settings) -> tuple[str, float] | None:
    """(credential, requests per second) that limits ``principal``; None: unlimited."""
    if principal.role == "root" or principal.project_id is None:
        return None
    if principal.role == "user":
        limit, credential = settings.rate_limit_user, f"user:{principal.user_id}"
    else:
        limit = settings.rate_limit_admin if principal.role == "admin" else settings.rate_limit_pos
        credential = f"key:{principal.key_id}"
    return (credential, limit) if limit > 0 else None


async def check(backend: Backend, principal: Principal) -> None:
    """Count this request; over the limit -> RateLimited (429, Retry-After)."""
    found = limit_of(principal, backend.settings)
    if found is None or principal.project_id is None:
        return
    credential, limit = found
    wait = principal.rate_wait_ms  # counted already while the API key was verified
    if wait is None:
        wait = await _count(backend, principal.project_id, credential, limit)
    if wait > 0:
        raise errors.RateLimited(limit=limit, retry_after=max(1, math.ceil(wait / 1000)))


async def check_tool(backend: Backend, principal: Principal) -> None:
    """Count one agent tool call (/mcp) of an API key, apart from its HTTP requests (an
    agent that loops must not starve the key's till or console); over -> RateLimited."""
    limit = backend.settings.rate_limit_mcp
    if principal.key_id is None or principal.project_id is None or limit <= 0:
        return  # root (never limited), or the limit is off
    wait = await _count(backend, principal.project_id, f"mcp:{principal.key_id}", limit)
    if wait > 0:
        raise errors.RateLimited(limit=limit, retry_after=max(1, math.ceil(wait / 1000)))


async def _count(backend: Backend, project_id: str, credential: str, limit: float) -> int:
    """Count one request in the credential's window: 0 within ``limit``, else ms to wait."""
    return int(
        await backend.scripts.run("rate_limit", [keys.rate_window(project_id)], [limit, credential])
    )
