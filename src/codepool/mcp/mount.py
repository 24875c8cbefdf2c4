"""``/mcp`` inside the app: the agent tools over streamable HTTP, in front of Litestar.

Like api/fast.py, this is plain ASGI taken off by path before Litestar routes: the
hand-out routes (fast.py, outermost) never reach it, and every other request pays one
string comparison. The endpoint itself checks the bearer key first (a missing or bad
one is a 401 in the one error shape, before any MCP machinery), then hands the request
to the SDK's session manager: stateless (no session to stick to a worker), JSON
answers (no SSE stream to hold open).

The tools call the app's own public API in-process (an ``httpx.ASGITransport`` over
the app) with the caller's Authorization header: what they may see and answer is
exactly what that key gets over HTTP. Each tool call also counts against the key's
agent limit (``CODEPOOL_RATE_LIMIT_MCP``, store/limits.check_tool).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, NamedTuple, cast

import httpx
import msgspec
from litestar import Litestar
from litestar.types import ASGIApp, Receive, Scope, Send
from mcp.server.mcpserver import Context
from mcp.server.transport_security import TransportSecuritySettings
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from codepool import errors
from codepool.auth import Principal, authenticate
from codepool.mcp.door import Door, ToolFailedError, error_text
from codepool.mcp.server import build_server
from codepool.services import Services
from codepool.store import limits

PATHS = frozenset({"/mcp", "/mcp/"})
# Where the endpoint leaves the authenticated caller for the tools (an ASGI scope key
# no client can set: the SDK hands the tools the request, scope included).
SCOPE_KEY = "codepool.mcp.caller"
# The in-process API's base URL: never resolved, ASGITransport answers every request.
INTERNAL_URL = "http://codepool.internal"

# The SDK's transport says "Terminating session: None" at INFO for every stateless request.
logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)


class Caller(NamedTuple):
    authorization: str
    principal: Principal | None  # None: Redis was down, the tools will say so


class McpMount:
    """ASGI: ``/mcp`` to the MCP session manager, everything else to Litestar's handler.
    ``lifespan`` must run inside the app's lifespan (the manager's task group lives there).
    """

    def __init__(self) -> None:
        self._app: Litestar | None = None
        self._fallback: ASGIApp | None = None
        self._client: httpx.AsyncClient | None = None
        self.server = build_server(lambda _: self._tools_lifespan())
        # Host/Origin checks guard a server that trusts whoever reaches it (a browser
        # page rebinding a name to 127.0.0.1). Every call here needs a bearer key, which
        # such a page does not have, and codepool runs under any host name: off.
        self.server.streamable_http_app(
            stateless_http=True,
            json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self._manager = self.server.session_manager

    def attach(self, app: Litestar, fallback: ASGIApp) -> McpMount:
        self._app, self._fallback = app, fallback
        return self

    @asynccontextmanager
    async def lifespan(self, _: Litestar) -> AsyncIterator[None]:
        async with self._manager.run():
            yield

    @asynccontextmanager
    async def _tools_lifespan(self) -> AsyncIterator[AppDoors]:
        transport = httpx.ASGITransport(app=cast(Any, self._app))
        async with httpx.AsyncClient(transport=transport, base_url=INTERNAL_URL) as client:
            self._client = client
            yield AppDoors(self)
            self._client = None

    # Returns the coroutine to await (as api.fast.FastRoutes): no frame of its own on
    # every other request.
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        http = cast(dict[str, Any], scope)
        if http["type"] == "http" and http["path"] in PATHS:
            return self._serve(http, receive, send)
        assert self._fallback is not None, "McpMount.attach() was not called"
        return self._fallback(scope, receive, send)

    async def _serve(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        authorization = None
        for name, value in scope["headers"]:
            if name.lower() == b"authorization":
                authorization = value.decode("latin-1")
        principal: Principal | None
        try:
            services = self.services
            # The cache spares Redis a round trip per MCP message; the API call each
            # tool makes re-checks the key uncached (a revoked key fails there at once).
            principal = await authenticate(
                authorization,
                None,
                services.settings.root_key,
                services.projects,
                services.auth_cache,
            )
        except errors.CodepoolError as exc:
            await _error(send, exc)
            return
        except (RedisConnectionError, RedisTimeoutError):
            principal = None  # every tool answers success: false, redis_unavailable
        assert authorization is not None  # authenticate() refused it otherwise
        if scope["method"] != "POST":
            # GET would open the server-to-client SSE stream, which stays open for good
            # and carries nothing here (stateless, no notifications); DELETE ends a
            # session, and there are none. The spec lets a server answer both 405.
            await _error(send, errors.MethodNotAllowed("/mcp takes POST only"), allow=b"POST")
            return
        scope[SCOPE_KEY] = Caller(authorization, principal)
        await self._manager.handle_request(scope, cast(Any, receive), cast(Any, send))

    @property
    def services(self) -> Services:
        assert self._app is not None
        services: Services = self._app.state.services
        return services

    def door(self, authorization: str) -> Door:
        assert self._client is not None, "the MCP lifespan is not running"
        return Door(self._client, authorization)


class AppDoors:
    """The tools' Doors inside the app: the caller the endpoint authenticated."""

    def __init__(self, mount: McpMount) -> None:
        self._mount = mount

    async def door(self, ctx: Context) -> Door:
        caller = _caller(ctx.request_context.request)
        if caller.principal is not None:
            try:
                await limits.check_tool(self._mount.services.backend, caller.principal)
            except errors.CodepoolError as exc:
                raise ToolFailedError(_text(exc)) from None
            except (RedisConnectionError, RedisTimeoutError) as exc:
                raise ToolFailedError(_text(errors.redis_unavailable(exc))) from None
        return self._mount.door(caller.authorization)

    async def role(self, ctx: Any) -> str | None:
        principal = _caller(ctx.request).principal
        return None if principal is None else principal.role


def _caller(request: Any) -> Caller:
    caller = getattr(request, "scope", {}).get(SCOPE_KEY)
    if not isinstance(caller, Caller):  # only McpMount._serve hands requests to the SDK
        raise ToolFailedError("unauthorized: no credentials reached the tool")
    return caller


def _text(exc: errors.CodepoolError) -> str:
    return error_text(exc.status, msgspec.json.encode(errors.shape(exc)))


async def _error(send: Send, exc: errors.CodepoolError, allow: bytes | None = None) -> None:
    body = msgspec.json.encode(errors.shape(exc))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in errors.headers(exc).items()),
    ]
    if exc.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="codepool"'))
    if allow is not None:
        headers.append((b"allow", allow))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
