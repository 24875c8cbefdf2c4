"""Dependencies every controller uses: the services and the calling principal."""

from __future__ import annotations

import hashlib
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from codepool import errors
from codepool.auth import Principal, authenticate
from codepool.services import Services

# What handlers declare: injected by name (Litestar wants that said explicitly).
Svc = NamedDependency[Services]
Caller = NamedDependency[Principal]
# The hot paths (issue, purchase): authenticated from the per-process cache; the
# Principal's credential must then be re-checked by issue.lua (see auth.py).
CachedCaller = NamedDependency[Principal]


def provide_services(state: State) -> Services:
    services: Services = state.services
    return services


async def provide_principal(request: Request[Any, Any, Any], services: Svc) -> Principal:
    return await _principal(request, services, cached=False)


async def provide_cached_principal(request: Request[Any, Any, Any], services: Svc) -> Principal:
    return await _principal(request, services, cached=True)


async def _principal(
    request: Request[Any, Any, Any], services: Services, *, cached: bool
) -> Principal:
    return await authenticate(
        request.headers.get("authorization"),
        request.path_params.get("project_id"),
        services.settings.root_key,
        services.projects,
        services.auth_cache if cached else None,
    )


DEPENDENCIES = {
    "services": Provide(provide_services, sync_to_thread=False),
    "principal": Provide(provide_principal),
    "cached_principal": Provide(provide_cached_principal),
}


def idempotency(
    request: Request[Any, Any, Any], principal: Principal, fingerprint: str
) -> tuple[str | None, str | None]:
    """(digest naming the record, fingerprint of this request) for an Idempotency-Key.

    The key is scoped to the caller and the endpoint, so two clients that happen to
    pick the same key never see each other's answers.
    """
    key = request.headers.get("idempotency-key")
    if key is None:
        return None, None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise errors.BadRequest("Idempotency-Key must be 1-255 printable characters")
    scope = f"{principal.identity}\x1f{request.method}\x1f{request.url.path}\x1f{key}"
    digest = hashlib.sha256(scope.encode()).hexdigest()
    return digest, hashlib.sha256(fingerprint.encode()).hexdigest()[:32]
