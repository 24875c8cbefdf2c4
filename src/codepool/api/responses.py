"""The contract of each operation as the OpenAPI document states it: errors, auth, headers.

Every error codepool answers is the one shape ``ErrorOut``; a handler documents the ones
it may answer by naming the error classes it raises::

    @post("/{pool_id:str}/thing", responses=answers(errors.PoolNotFound, *WRITE))

``answers`` groups them by status (one response per status, its description naming
every error code it may carry, with an example) and adds what every authenticated
route may answer: 400 (a bad parameter), 401, 403, 404 ``project_not_found``, 429
``rate_limited`` and 503 ``redis_unavailable``. ``BODY`` adds 413 for routes that
take a body, ``WRITE`` adds 507 ``storage_full`` for routes that store something.
``auth=False`` leaves the authenticated set out (the ops routes).

Bearer auth is ``SECURITY`` (set on each controller) over the scheme in ``COMPONENTS``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated

from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    Components,
    Example,
    OpenAPIMediaType,
    Operation,
    RequestBody,
    Schema,
    SecurityRequirement,
    SecurityScheme,
)
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import HeaderParameter

from codepool import errors
from codepool.codecheck import MAX_CODE_LENGTH
from codepool.models import ErrorOut

# What any authenticated route under /v1/projects/{p} may answer besides its own errors.
AUTHENTICATED: tuple[type[errors.CodepoolError], ...] = (
    errors.BadRequest,
    errors.Unauthorized,
    errors.Forbidden,
    errors.ProjectNotFound,
    errors.RateLimited,
    errors.RedisUnavailable,
)
# Routes that take a request body: larger than the server accepts.
BODY: tuple[type[errors.CodepoolError], ...] = (errors.PayloadTooLarge,)
# Routes that store something: Redis at its maxmemory.
WRITE: tuple[type[errors.CodepoolError], ...] = (errors.StorageFull,)

_NOTES = {
    401: " Send `Authorization: Bearer <root key | API key | user token>`.",
    429: " The `Retry-After` header says how many seconds to wait.",
}


def answers(
    *raised: type[errors.CodepoolError], auth: bool = True, project: bool = True
) -> dict[int, ResponseSpec]:
    """``responses=`` of a handler that may raise ``raised`` (plus the shared ones).

    ``project=False`` for routes outside a project (they cannot answer
    ``project_not_found``).
    """
    shared = [e for e in AUTHENTICATED if project or e is not errors.ProjectNotFound]
    by_status: dict[int, list[type[errors.CodepoolError]]] = {}
    for err in _unique([*(shared if auth else ()), *raised]):
        by_status.setdefault(err.status, []).append(err)
    return {status: _spec(status, errs) for status, errs in sorted(by_status.items())}


def _unique(
    items: Iterable[type[errors.CodepoolError]],
) -> list[type[errors.CodepoolError]]:
    return list(dict.fromkeys(items))


def _spec(status: int, errs: list[type[errors.CodepoolError]]) -> ResponseSpec:
    codes = ", ".join(f"`{e.code}`" for e in errs)
    return ResponseSpec(
        data_container=ErrorOut,
        generate_examples=False,
        description=f"{HTTPStatus(status).phrase}: {codes}.{_NOTES.get(status, '')}",
        examples=[
            Example(
                summary=e.code,
                value={"error": {"code": e.code, "message": e.default_message, "details": {}}},
            )
            for e in errs
        ],
    )


# -- auth and headers ------------------------------------------------------------------

BEARER = "bearer"
COMPONENTS = Components(
    security_schemes={
        BEARER: SecurityScheme(
            type="http",
            scheme="bearer",
            description=(
                "The root key (CODEPOOL_ROOT_KEY), a project's admin or pos API key, or a"
                " user token: a JWT (HS256) signed with the project's user_token_secret,"
                " `sub` = user id, `exp` required."
            ),
        )
    }
)
SECURITY: list[SecurityRequirement] = [{BEARER: []}]

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        description=(
            "Makes a retry safe: the same key with the same request answers the first"
            " answer again (1-255 printable characters, scoped to the credential and route)."
        ),
        # Checked by the handler (api/handouts.py), which the fast routes share.
        # A header is a string or absent, never null (Litestar would say oneOf string/null).
        schema_extra={"oneOf": None, "type": OpenAPIType.STRING, "minLength": 1, "maxLength": 255},
    ),
]


# -- the upload body, which the handler streams itself ---------------------------------

_CODE = Schema(type=OpenAPIType.STRING, min_length=1, max_length=MAX_CODE_LENGTH)
_TEXT = Schema(
    type=OpenAPIType.STRING,
    description="One code per line (commas also separate); blank entries are skipped.",
)


@dataclass
class UploadOperation(Operation):
    """The upload's operation: its body in each media type the parser reads."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="The codes, all or nothing. Any other Content-Type answers 415.",
            content={
                "text/plain": OpenAPIMediaType(schema=_TEXT, example="SAVE10-AAAA\nSAVE10-BBBB\n"),
                "text/csv": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.STRING,
                        description="The first column of each row is a code (RFC 4180).",
                    ),
                    example="SAVE10-AAAA\nSAVE10-BBBB\n",
                ),
                "application/json": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        properties={"codes": Schema(type=OpenAPIType.ARRAY, items=_CODE)},
                        required=["codes"],
                        additional_properties=False,
                    ),
                    example={"codes": ["SAVE10-AAAA", "SAVE10-BBBB"]},
                ),
            },
        )
