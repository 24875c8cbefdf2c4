"""Dependencies every controller uses: the services and the calling principal."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from codepool.auth import Principal, authenticate
from codepool.services import Services
from codepool.store import limits

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
    principal = await _principal(request, services, cached=False)
    # Once per request, for every controller: the hand-out routes (cached_principal)
    # count in issue.lua instead, in the same round trip as the hand-out.
    await limits.check(services.backend, principal)
    return principal


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
