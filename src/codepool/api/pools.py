"""Pools, their codes (upload, list, export) and admin issuing."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any, Literal

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.params import FromQuery, JSONBody
from litestar.response import Stream

from codepool import codegen, errors
from codepool.api import handouts
from codepool.api.deps import CachedCaller, Caller, Svc
from codepool.api.params import Count, IdPath, Skip, StatusFilter
from codepool.api.responses import (
    BODY,
    SECURITY,
    WRITE,
    IdempotencyKey,
    UploadOperation,
    answers,
)
from codepool.auth import authorize
from codepool.codeparse import parser_for
from codepool.models import (
    CodeEntry,
    Generated,
    GenerateIn,
    IssueIn,
    IssueOut,
    Page,
    Pool,
    PoolIn,
    PoolPatch,
    PoolSummary,
    Status,
    UploadResult,
)
from codepool.notify.destinations import check_urls


async def _limited(request: Request[Any, Any, Any], limit: int) -> AsyncIterator[bytes]:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    announced = request.headers.get("content-length")
    if announced is not None and announced.isdigit() and int(announced) > limit:
        raise errors.PayloadTooLarge(limit=limit)
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise errors.PayloadTooLarge(limit=limit)
        yield chunk


class PoolController(Controller):
    path = "/v1/projects/{project_id:str}/pools"
    tags = ("pools",)
    security = SECURITY

    @post("/", status_code=201, responses=answers(errors.PoolNameTaken, *BODY, *WRITE))
    async def create_pool(
        self, project_id: IdPath, data: JSONBody[PoolIn], principal: Caller, services: Svc
    ) -> Pool:
        """Create a pool; its name must be unique in the project."""
        authorize(principal, project_id, "admin")
        await services.projects.get(project_id)
        await check_urls([data.notify.webhook_url], services.settings.webhook_allow_private)
        return await services.pools.create(project_id, data)

    @get("/", responses=answers())
    async def list_pools(
        self,
        project_id: IdPath,
        principal: Caller,
        services: Svc,
        skip: Skip = 0,
        count: Count = 20,
    ) -> Page[PoolSummary]:
        """List the project's pools with their totals."""
        authorize(principal, project_id, "admin")
        await services.projects.get(project_id)
        return await services.pools.list_page(project_id, skip, count)

    @get("/{pool_id:str}", responses=answers(errors.PoolNotFound))
    async def get_pool(
        self, project_id: IdPath, pool_id: IdPath, principal: Caller, services: Svc
    ) -> Pool:
        """A pool with its exact counters."""
        authorize(principal, project_id, "admin")
        return await services.pools.get(project_id, pool_id)

    @patch(
        "/{pool_id:str}",
        responses=answers(errors.PoolNotFound, errors.PoolNameTaken, *BODY, *WRITE),
    )
    async def patch_pool(
        self,
        project_id: IdPath,
        pool_id: IdPath,
        data: JSONBody[PoolPatch],
        principal: Caller,
        services: Svc,
    ) -> Pool:
        """Change name, thresholds, notify or expiry."""
        authorize(principal, project_id, "admin")
        if not isinstance(data.notify, msgspec.UnsetType):
            await check_urls([data.notify.webhook_url], services.settings.webhook_allow_private)
        return await services.pools.patch(project_id, pool_id, data)

    @delete(
        "/{pool_id:str}", status_code=204, responses=answers(errors.PoolNotFound, errors.PoolInUse)
    )
    async def delete_pool(
        self, project_id: IdPath, pool_id: IdPath, principal: Caller, services: Svc
    ) -> None:
        """Delete a pool and its codes; refused while a reward draws from it."""
        authorize(principal, project_id, "admin")
        await services.pools.delete(project_id, pool_id)

    @post(
        "/{pool_id:str}/codes",
        status_code=200,
        request_max_body_size=None,
        operation_class=UploadOperation,
        responses=answers(
            errors.PoolNotFound,
            errors.UploadInProgress,
            errors.QuotaExceeded,
            errors.PayloadTooLarge,
            errors.UnsupportedMediaType,
            errors.InvalidCodes,
            errors.NoCodes,
            errors.IdempotencyKeyReused,
            *WRITE,
        ),
    )
    async def upload_codes(
        self,
        project_id: IdPath,
        pool_id: IdPath,
        request: Request[Any, Any, Any],
        principal: Caller,
        services: Svc,
        duplicates: FromQuery[Literal["allow", "skip"]] = "allow",
        idempotency_key: IdempotencyKey = None,
    ) -> UploadResult:
        """Upload or refill codes (text/plain, text/csv or JSON); all or nothing."""
        authorize(principal, project_id, "admin")
        content_type = request.headers.get("content-type")
        parser = parser_for(content_type)
        record, _ = handouts.idempotency(
            request.headers.get("idempotency-key"), principal, request.url.path, ""
        )
        body = _limited(request, services.settings.max_upload_bytes)
        announced = request.headers.get("content-length", "")
        return await services.codes.upload(
            project_id,
            pool_id,
            body,
            parser,
            duplicates,
            record,
            content_type or "",
            int(announced) if announced.isdigit() else None,
        )

    @post(
        "/{pool_id:str}/codes/generate",
        status_code=200,
        responses=answers(
            errors.PoolNotFound,
            errors.UploadInProgress,
            errors.QuotaExceeded,
            errors.InvalidPattern,
            errors.PatternTooSmall,
            errors.IdempotencyKeyReused,
            *BODY,
            *WRITE,
        ),
    )
    async def generate_codes(
        self,
        project_id: IdPath,
        pool_id: IdPath,
        data: JSONBody[GenerateIn],
        request: Request[Any, Any, Any],
        principal: Caller,
        services: Svc,
        idempotency_key: IdempotencyKey = None,
    ) -> Generated:
        """Make `count` new random codes of a pattern in the pool; all or nothing."""
        authorize(principal, project_id, "admin")
        try:
            pattern = codegen.parse(data.pattern, data.charset, data.check_character)
        except codegen.PatternError as exc:
            raise errors.InvalidPattern(str(exc)) from None
        asked = (data.count, pattern.text, pattern.alphabet, pattern.check_character)
        record, fingerprint = handouts.idempotency(
            idempotency_key,
            principal,
            request.url.path,
            "generate"
            + "".join(f"\x1f{part}" for part in asked)
            + f"\x1f{data.max_guess_probability!r}",
        )
        return await services.generator.generate(
            project_id,
            pool_id,
            codegen.Generator(pattern),
            data.count,
            data.max_guess_probability,
            None if record is None or fingerprint is None else (record, fingerprint),
        )

    @get("/{pool_id:str}/codes", responses=answers(errors.PoolNotFound))
    async def list_codes(
        self,
        project_id: IdPath,
        pool_id: IdPath,
        principal: Caller,
        services: Svc,
        status: StatusFilter = None,
        skip: Skip = 0,
        count: Count = 20,
    ) -> Page[CodeEntry]:
        """List a pool's code instances, optionally of one status."""
        authorize(principal, project_id, "admin")
        return await services.codes.list_page(project_id, pool_id, status, skip, count)

    @get("/{pool_id:str}/codes.csv", responses=answers(errors.PoolNotFound))
    async def export_codes(
        self,
        project_id: IdPath,
        pool_id: IdPath,
        principal: Caller,
        services: Svc,
        status: StatusFilter = None,
    ) -> Stream:
        """Every code instance of the pool as CSV, streamed."""
        authorize(principal, project_id, "admin")
        await services.pools.ensure(project_id, pool_id)
        statuses: frozenset[Status] = (
            frozenset({"available", "assigned", "redeemed"})
            if status is None
            else frozenset({status})
        )

        async def rows() -> AsyncIterator[bytes]:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(
                [
                    "code",
                    "status",
                    "assigned_time",
                    "redeemed_time",
                    "user_id",
                    "reward_id",
                    "hold_expires_at",
                ]
            )
            async for batch in services.codes.entries(project_id, pool_id, statuses):
                writer.writerows(
                    (
                        _cell(e.code),
                        e.status,
                        _num(e.assigned_time),
                        _num(e.redeemed_time),
                        _cell(e.user_id or ""),
                        _cell(e.reward_id or ""),
                        _num(e.hold_expires_at),
                    )
                    for e in batch
                )
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
            if buffer.tell():
                yield buffer.getvalue().encode()

        return Stream(
            rows(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{pool_id}.csv"'},
        )

    @post(
        "/{pool_id:str}/issue",
        status_code=200,
        responses=answers(
            errors.PoolNotFound,
            errors.PoolExhausted,
            errors.CodesReleased,
            errors.PoolExpired,
            errors.IdempotencyKeyReused,
            errors.NotReady,
            errors.NotReplicated,
            *BODY,
            *WRITE,
        ),
    )
    async def issue_codes(
        self,
        project_id: IdPath,
        pool_id: IdPath,
        data: JSONBody[IssueIn],
        request: Request[Any, Any, Any],
        cached_principal: CachedCaller,
        services: Svc,
        idempotency_key: IdempotencyKey = None,
    ) -> IssueOut:
        """Hand out `count` codes at once (partner fulfilment); all or nothing."""
        return await handouts.issue_codes(
            services,
            cached_principal,
            project_id,
            pool_id,
            data,
            idempotency_key,
            request.url.path,
        )


# OWASP's CSV injection rule: a cell a spreadsheet would run as a formula (its first
# character one of these) is written with a leading "'", which makes it text. Codes like
# "=1+2" or "-5" are real codes (uploads take them); their export carries the prefix.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    """A text cell as a spreadsheet may open it: formulas neutralised."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _num(value: float | None) -> str:
    return "" if value is None else repr(value)
