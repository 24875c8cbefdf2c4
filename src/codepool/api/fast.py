"""The flash-sale routes, served as plain ASGI in front of Litestar.

``POST /v1/projects/{p}/pools/{pool}/issue`` and ``POST .../rewards/{r}/purchase`` are
the routes a sale hits thousands of times a second. Profiling a worker under load
showed Litestar's per-request machinery (routing, dependency injection, the signature
model, the response pipeline) costing several times the coalesced Redis call each
request shares. These two routes read two headers and a tiny JSON body, so this
shell matches them by path, decodes the body with msgspec, and answers with bytes
encoded once; everything else, including any other method on these paths, goes to
Litestar unchanged.

The behaviour is in api/handouts.py, shared with the Litestar handlers of the same
routes, and tests/unit/test_fast_routes.py holds both shells to the same answers.
``CODEPOOL_FAST_ROUTES=0`` turns this off (the benchmark measures both).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Any, TypeVar, cast

import msgspec
from litestar import Litestar
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from codepool import errors
from codepool.api import handouts
from codepool.auth import authenticate
from codepool.models import ID_PATTERN, IssueIn, PurchaseIn
from codepool.services import Services

# Their bodies are a few dozen bytes; anything near this is not a real request.
MAX_BODY = 64 * 1024

_encode = msgspec.json.Encoder().encode
# strict=False as Litestar decodes: "2" is taken for 2, as on every other route.
_issue_in = msgspec.json.Decoder(IssueIn, strict=False)
_purchase_in = msgspec.json.Decoder(PurchaseIn | None, strict=False)

_JSON = (b"content-type", b"application/json")
_ID = re.compile(ID_PATTERN).fullmatch
# (collection, action) of the routes served here.
_ROUTES = frozenset({("pools", "issue"), ("rewards", "purchase")})

T = TypeVar("T")


class FastRoutes:
    """ASGI app: the two hand-out routes here, the rest to ``fallback`` (Litestar's)."""

    def __init__(self, app: Litestar, fallback: ASGIApp) -> None:
        self._app = app
        self._fallback = fallback

    # A plain function returning the coroutine to await: one coroutine frame fewer on
    # every request than an ``async def`` that awaits it.
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        http = cast("dict[str, Any]", scope)
        if http["type"] == "http" and http["method"] == "POST":
            # "/v1/projects/{p}/pools/{id}/issue" -> ["", "v1", "projects", p, "pools", id, "issue"]
            parts = http["path"].rstrip("/").split("/")
            if (
                len(parts) == 7
                and parts[1] == "v1"
                and parts[2] == "projects"
                and (parts[4], parts[6]) in _ROUTES
                # An id without the id pattern goes to Litestar, which answers its 400.
                and _ID(parts[3])
                and _ID(parts[5])
            ):
                return self._serve(parts[4], parts[3], parts[5], http, receive, send)
        return self._fallback(scope, receive, send)

    async def _serve(
        self,
        kind: str,
        project_id: str,
        item_id: str,
        scope: dict[str, Any],
        receive: Receive,
        send: Send,
    ) -> None:
        path: str = scope["path"]
        extra: list[tuple[bytes, bytes]] = []
        try:
            body = await _read_body(receive)
            if body is None:
                return  # the client went away before sending its body
            services: Services = self._app.state.services
            authorization = idempotency_key = None
            for raw_name, value in scope["headers"]:
                name = raw_name.lower()
                if name == b"authorization":
                    authorization = value.decode("latin-1")
                elif name == b"idempotency-key":
                    idempotency_key = value.decode("latin-1")
            principal = await authenticate(
                authorization,
                project_id,
                services.settings.root_key,
                services.projects,
                services.auth_cache,
            )
            out: Any
            if kind == "pools":
                if not body:
                    raise _invalid(path, "a JSON body is required", "data")
                data = _decode(_issue_in, body, path)
                out = await handouts.issue_codes(
                    services, principal, project_id, item_id, data, idempotency_key, path
                )
                status = 200
            else:
                purchase = _decode(_purchase_in, body, path) if body else None
                out = await handouts.purchase_reward(
                    services, principal, project_id, item_id, purchase, idempotency_key, path
                )
                status = 201
        except errors.CodepoolError as exc:
            status, out = exc.status, errors.shape(exc)
            extra = [(k.lower().encode(), v.encode()) for k, v in errors.headers(exc).items()]
        except (RedisConnectionError, RedisTimeoutError) as exc:
            err = errors.redis_unavailable(exc)
            status, out = err.status, errors.shape(err)
        except Exception as exc:
            err = errors.unexpected(exc, f"POST {path}")
            status, out = err.status, errors.shape(err)
        payload = _encode(out)
        headers = [_JSON, (b"content-length", str(len(payload)).encode()), *extra]
        await send(
            HTTPResponseStartEvent(type="http.response.start", status=status, headers=headers)
        )
        await send(HTTPResponseBodyEvent(type="http.response.body", body=payload, more_body=False))


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = cast(bytes, message.get("body", b""))
        size += len(chunk)
        if size > MAX_BODY:
            raise errors.PayloadTooLarge(limit=MAX_BODY)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _decode(decoder: msgspec.json.Decoder[T], body: bytes, path: str) -> T:
    """The body as its Struct, or the 400 Litestar would answer for it."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        # msgspec says "Expected `int` >= 1 - at `$.count`"; no "at" means the whole body.
        message, _, where = str(exc).partition(" - at `$.")
        raise _invalid(path, message, where.rstrip("`") or "data") from None
    except msgspec.DecodeError as exc:
        raise errors.invalid_json(str(exc)) from None
    except RecursionError:
        raise errors.invalid_json(errors.TOO_DEEP) from None


def _invalid(path: str, message: str, key: str) -> errors.CodepoolError:
    return errors.BadRequest(
        f"Validation failed for POST {path}",
        errors=[{"message": message, "key": key, "source": "body"}],
    )
