"""One call of lua/issue.lua for a batch of issue/purchase requests on one pool."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from codepool import keys
from codepool.auth import Credential
from codepool.scripts import Status
from codepool.store.base import Backend, now
from codepool.store.stats import stats_keys


class IssueRequest(msgspec.Struct, frozen=True, kw_only=True):
    count: int
    user_id: str | None = None
    reward_id: str | None = None
    # Idempotency: the key's digest (names the record) and the request's fingerprint
    # (tells a retry from a different request under the same key).
    idempotency_digest: str | None = None
    fingerprint: str | None = None
    purchase_id: str = ""
    # Set when the caller was authenticated from the cache: issue.lua re-checks it.
    credential: Credential | None = None


class IssueResult(msgspec.Struct, frozen=True, kw_only=True):
    status: Status
    available: int
    assigned_time: float | None
    purchase_id: str | None
    hide_code: bool
    codes: list[str]
    # Status OK: the hand-out position of codes[0] in the pool (lua/issue.lua); the
    # journal records it so a restore can tell whether a snapshot holds the hand-out.
    position: int = -1


class IssueCall(msgspec.Struct, frozen=True, kw_only=True):
    """What one issue.lua call did."""

    results: list[IssueResult]  # per request, in order
    available: int  # the pool's available count after the call
    # Alerts it fired: low-stock thresholds, "exhausted" for POOL_EXHAUSTED, and
    # "soon:<seconds>:<rate_per_minute>:<empty_at>" for POOL_EMPTY_SOON. The journal
    # keeps them, so a restore can fire again those Redis lost.
    alerts: list[str] = []


async def issue_batch(
    backend: Backend, project_id: str, pool_id: str, requests: Sequence[IssueRequest]
) -> list[IssueResult]:
    """Run one atomic issue step for every request, in order."""
    return (await issue_call(backend, project_id, pool_id, requests)).results


async def issue_call(
    backend: Backend, project_id: str, pool_id: str, requests: Sequence[IssueRequest]
) -> IssueCall:
    """:func:`issue_batch`, with what the call did besides answering the requests."""
    pool_key = keys.pool(project_id, pool_id)
    key_list = [
        pool_key,
        keys.pool_available(project_id, pool_id),
        keys.issued(project_id),
        keys.pool_log(project_id, pool_id),
        keys.events(project_id),
        keys.outbox(project_id),
        keys.webhook(project_id),
    ]
    settings = backend.settings
    at = now()
    args: list[Any] = [
        at,
        pool_id,
        settings.events_maxlen,
        settings.idempotency_ttl,
        len(requests),
    ]
    for r in requests:
        # Unused per-request keys point at the pool hash: same slot, never touched.
        key_list += [
            keys.idempotency(project_id, r.idempotency_digest)
            if r.idempotency_digest
            else pool_key,
            keys.user_codes(project_id, r.user_id) if r.user_id else pool_key,
            keys.reward(project_id, r.reward_id) if r.reward_id else pool_key,
            keys.reward_users(project_id, r.reward_id) if r.reward_id else pool_key,
            _credential_key(project_id, r.credential) or pool_key,
        ]
        args += [r.count, r.user_id or "", r.reward_id or "", r.fingerprint or "", r.purchase_id]
        args += [r.credential.kind, r.credential.value] if r.credential else ["", ""]
    # Last, after the per-request keys: the pool's per-minute counters (issue.lua header).
    key_list += stats_keys(project_id, pool_id, at)
    raw = await backend.scripts.run("issue", key_list, args)
    results: list[IssueResult] = []
    i = 1
    for _ in requests:
        status, available, at, purchase_id, hide, n = raw[i : i + 6]
        codes = [c.decode() for c in raw[i + 6 : i + 6 + n]]
        i += 6 + n
        results.append(
            IssueResult(
                status=Status(status),
                available=int(available),
                assigned_time=float(at) if at else None,
                purchase_id=purchase_id.decode() or None,
                hide_code=hide == 1,
                codes=codes,
            )
        )
    # The trailer is missing only when the pool is gone (every request failed).
    position = int(raw[i]) if len(raw) > i else 0
    for k, result in enumerate(results):
        if result.status == Status.OK:
            results[k] = msgspec.structs.replace(result, position=position)
            position += len(result.codes)
    alerts = [a.decode() for a in raw[i + 1 :]]
    return IssueCall(results=results, available=int(raw[0]), alerts=alerts)


def _credential_key(project_id: str, credential: Credential | None) -> str | None:
    if credential is None:
        return None
    return keys.api_keys(project_id) if credential.kind == "key" else keys.project(project_id)
