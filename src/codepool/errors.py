"""Every error codepool answers with: one exception per error code, one status table.

Handlers and the store raise these; ``app.py`` (and ``api/fast.py`` for its two routes)
turns any of them, Litestar's own errors and unexpected ones into the one error shape
``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)

from codepool.models import ErrorBody, ErrorOut

log = logging.getLogger("codepool")


class CodepoolError(Exception):
    """Base of every error that reaches a client. Subclasses fix code and status."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "internal error"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.default_message
        self.details: dict[str, Any] = details
        super().__init__(self.message)


def _error(code: str, status: int, message: str) -> type[CodepoolError]:
    name = "".join(part.capitalize() for part in code.split("_")) + "Error"
    cls = type(name, (CodepoolError,), {"code": code, "status": status, "default_message": message})
    ERRORS[code] = cls
    return cls


ERRORS: dict[str, type[CodepoolError]] = {}

# The table: code -> HTTP status, default message.
BadRequest = _error("invalid_request", 400, "the request is not valid")
Unauthorized = _error("unauthorized", 401, "missing or invalid credentials")
Forbidden = _error("forbidden", 403, "this credential may not do that")
NotFound = _error("not_found", 404, "no such resource")
ProjectNotFound = _error("project_not_found", 404, "no such project")
PoolNotFound = _error("pool_not_found", 404, "no such pool")
RewardNotFound = _error("reward_not_found", 404, "no such reward")
KeyNotFound = _error("key_not_found", 404, "no such API key")
UnknownCode = _error("unknown_code", 404, "no such code in this project")
WebhookNotFound = _error("webhook_not_found", 404, "the project has no webhook")
DeliveryNotFound = _error("delivery_not_found", 404, "no such dead-letter delivery")
MethodNotAllowed = _error("method_not_allowed", 405, "method not allowed here")
ProjectExists = _error("project_exists", 409, "a project with this id already exists")
RewardExists = _error("reward_exists", 409, "a reward with this id already exists")
PoolNameTaken = _error("pool_name_taken", 409, "a pool with this name already exists")
PoolInUse = _error("pool_in_use", 409, "a reward still draws from this pool")
PoolExhausted = _error("pool_exhausted", 409, "not enough codes left in the pool")
PerUserLimitReached = _error(
    "per_user_limit_reached", 409, "the user holds the most this reward allows"
)
NotIssued = _error("not_issued", 409, "the code was never handed out")
AlreadyRedeemed = _error("already_redeemed", 409, "the code was already redeemed")
NotHeld = _error(
    "not_held", 409, "the code is assigned but not held (never held, or confirmed already)"
)
UploadInProgress = _error(
    "upload_in_progress", 409, "another duplicates=skip upload is running on this pool"
)
IdempotencyKeyReused = _error(
    "idempotency_key_reused", 422, "this Idempotency-Key was used with a different request"
)
CodesReleased = _error(
    "codes_released",
    409,
    "the codes first given for this Idempotency-Key were released since; ask again with a new key",
)
PoolExpired = _error("pool_expired", 410, "the pool has expired")
PayloadTooLarge = _error("payload_too_large", 413, "the request body is larger than allowed")
UnsupportedMediaType = _error("unsupported_media_type", 415, "unsupported Content-Type")
InvalidCodes = _error("invalid_codes", 422, "the upload holds invalid codes; nothing was stored")
NoCodes = _error("no_codes", 422, "the upload holds no code; nothing was stored")
InvalidPattern = _error(
    "invalid_pattern", 422, "the pattern or charset cannot make valid codes; nothing was stored"
)
PatternTooSmall = _error(
    "pattern_too_small",
    422,
    "the pattern's space is too small for that many live codes; nothing was stored",
)
WebhookUrlNotAllowed = _error(
    "webhook_url_not_allowed",
    422,
    "webhook URLs must point to a public address (CODEPOOL_WEBHOOK_ALLOW_PRIVATE=1 lifts this)",
)
QuotaExceeded = _error(
    "quota_exceeded", 409, "the project would hold more codes than its quota allows"
)
RateLimited = _error("rate_limited", 429, "too many requests for this credential; slow down")
HeadersTooLarge = _error("headers_too_large", 431, "the request headers are larger than allowed")
StorageFull = _error("storage_full", 507, "the store is full; nothing was stored")
InternalError = _error("internal_error", 500, "internal error")
RedisUnavailable = _error("redis_unavailable", 503, "the store is not reachable")
NotReady = _error("not_ready", 503, "the service is not ready")
NotReplicated = _error(
    "not_replicated",
    503,
    "the change did not reach enough replicas in time (CODEPOOL_REPLICA_ACKS); retry "
    "with the same Idempotency-Key",
)
ServerBusy = _error("server_busy", 503, "the server is at its concurrency limit; retry in a moment")


# -- turning errors into answers (app.py's exception handlers and api/fast.py) --------


def shape(err: CodepoolError) -> ErrorOut:
    """The one error shape of ``err``."""
    return ErrorOut(error=ErrorBody(code=err.code, message=err.message, details=err.details))


def headers(err: CodepoolError) -> dict[str, str]:
    """HTTP headers that go with ``err``: ``Retry-After`` (whole seconds) for a 429 or
    a 503 that says when to come back."""
    retry_after = err.details.get("retry_after")
    if err.status in (429, 503) and isinstance(retry_after, int):
        return {"Retry-After": str(retry_after)}
    return {}


def invalid_json(detail: str) -> CodepoolError:
    """The one answer to a body that is not JSON, on every route (uploads too); the
    parser's own words go in ``details.parse_error``."""
    return BadRequest("the body is not valid JSON", parse_error=detail)


# What a parser that gave up on nesting (a RecursionError) is reported as.
TOO_DEEP = "the JSON is nested too deeply"


def redis_unavailable(exc: Exception) -> CodepoolError:
    """A lost or timed-out Redis, as the client hears of it (and the log, once)."""
    log.warning("redis unavailable: %s: %s", type(exc).__name__, exc)
    return RedisUnavailable()


# A Redis Cluster failing over or resharding, still so after redis-py's retries: the
# store is not reachable for now (503), not a bug.
_CLUSTER_IN_FLUX = (
    ClusterDownError,
    TryAgainError,
    MovedError,
    AskError,
    RedisClusterException,
)


def unexpected(exc: Exception, where: str) -> CodepoolError:
    """Any other failure: logged with its trace here; the client never sees a trace.

    Redis at its maxmemory (policy noeviction) refuses writes with "OOM command not
    allowed": a full store, 507, not a bug. Scripts stop before their first write then.
    """
    if isinstance(exc, _CLUSTER_IN_FLUX):
        return redis_unavailable(exc)
    # redis-py drops the "OOM" prefix from plain commands; script errors keep it.
    if isinstance(exc, ResponseError) and "not allowed when used memory" in str(exc):
        log.warning("redis is full (maxmemory) on %s: %s", where, exc)
        return StorageFull()
    log.exception("unhandled error on %s", where, exc_info=exc)
    return InternalError()
