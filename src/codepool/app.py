"""create_app(settings) -> Litestar: the wiring, in one place."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, MediaType, Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from codepool import errors
from codepool.api.deps import DEPENDENCIES
from codepool.api.docs import openapi_config
from codepool.api.fast import FastRoutes
from codepool.api.notify import NotifyController
from codepool.api.ops import OpsController
from codepool.api.pools import PoolController
from codepool.api.pos import PosController
from codepool.api.projects import ProjectController
from codepool.api.rewards import RewardController
from codepool.api.stats import StatsController
from codepool.api.trace import TraceController
from codepool.api.whoami import WhoamiController
from codepool.console import ROUTES as CONSOLE_ROUTES
from codepool.mcp.mount import McpMount
from codepool.models import ErrorBody, ErrorOut
from codepool.redisclient import make_client
from codepool.services import Services
from codepool.settings import Settings, load_settings

# Litestar's own HTTP errors, by status, as our error codes.
_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def _error(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> Response[ErrorOut]:
    return Response(
        ErrorOut(error=ErrorBody(code=code, message=message, details=details or {})),
        status_code=status,
        media_type=MediaType.JSON,
    )


def _respond(err: errors.CodepoolError) -> Response[ErrorOut]:
    return Response(
        errors.shape(err),
        status_code=err.status,
        media_type=MediaType.JSON,
        headers=errors.headers(err) or None,
    )


def _codepool_error(_: Request[Any, Any, Any], exc: errors.CodepoolError) -> Response[ErrorOut]:
    return _respond(exc)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorOut]:
    details: dict[str, Any] = {}
    if isinstance(exc, ValidationException) and exc.extra:
        details["errors"] = exc.extra
    code = _HTTP_CODES.get(
        exc.status_code, "invalid_request" if exc.status_code < 500 else "internal_error"
    )
    return _error(exc.status_code, code, exc.detail, details)


def _redis_down(_: Request[Any, Any, Any], exc: Exception) -> Response[ErrorOut]:
    return _respond(errors.redis_unavailable(exc))


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorOut]:
    return _respond(errors.unexpected(exc, f"{request.method} {request.url.path}"))


class CodepoolRequest(Request[Any, Any, Any]):
    """Litestar's request, with its JSON body errors in the one error shape."""

    async def json(self) -> Any:
        try:
            return await super().json()
        except SerializationException as exc:
            raise errors.invalid_json(str(exc)) from None
        except RecursionError:  # msgspec gives up on ~1000 levels of nesting
            raise errors.invalid_json(errors.TOO_DEEP) from None


def create_app(settings: Settings | None = None, *, client: Redis | None = None) -> Litestar:
    """The app. ``client`` lets tests hand in their own Redis (fakeredis or real)."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        own_client = client is None
        redis = client if client is not None else make_client(settings)
        services = Services(redis, settings)
        app.state.services = services
        services.start()
        try:
            yield
        finally:
            await services.close()
            if own_client:
                await redis.aclose()

    mcp = McpMount()
    app = Litestar(
        route_handlers=[
            OpsController,
            ProjectController,
            PoolController,
            StatsController,
            RewardController,
            PosController,
            TraceController,
            NotifyController,
            WhoamiController,
            *CONSOLE_ROUTES,
        ],
        dependencies=DEPENDENCIES,
        request_class=CodepoolRequest,
        lifespan=[lifespan, mcp.lifespan],
        exception_handlers={
            errors.CodepoolError: _codepool_error,
            HTTPException: _http_error,
            RedisConnectionError: _redis_down,
            RedisTimeoutError: _redis_down,
            Exception: _unexpected,
        },
        openapi_config=openapi_config(),
        debug=False,
    )
    # /mcp, the agent tools: taken off in front of Litestar's router, behind the fast routes.
    app.asgi_handler = mcp.attach(app, app.asgi_handler)
    if settings.fast_routes:
        # Litestar.__call__ hands every request to asgi_handler (its exception-wrapped
        # router); the flash-sale routes are taken off in front of it.
        app.asgi_handler = FastRoutes(app, app.asgi_handler)
    return app


def create_app_from_env() -> Litestar:
    """Factory for the ASGI server (granian): settings from CODEPOOL_* variables."""
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    return create_app(settings)
