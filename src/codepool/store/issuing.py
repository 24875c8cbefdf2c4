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
    # Rate limit (keys.rate_window): the caller's credential ("user:<id>", "key:<key
    # id>") and its role's requests per second; None/0: not limited (root, a limit of 0).
    rate_key: str | None = None
    rate_limit: float = 0.0
    # A hold: the codes go back by themselves this long after, unless confirmed.
    hold_seconds: int | None = None


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
    # Status RATE_LIMITED: ms until the caller's rate-limit window ends.
    retry_after_ms: int = 0
    # A hold's end: assigned_time + hold_seconds (a replay tells the first answer's).
    hold_expires_at: float | None = None


class IssueCall(msgspec.Struct, frozen=True, kw_only=True):
    """What one issue.lua call did."""

    results: list[IssueResult]  # per request, in order
    available: int  # the pool's available count after the call
    # Alerts it fired: low-stock thresholds, "exhausted" for POOL_EXHAUSTED, and
    # "soon:<seconds>:<rate_per_minute>:<empty_at>" for POOL_EMPTY_SOON. The journal
    # keeps them, so a restore can fire again those Redis lost.
    alerts: list[str] = []
    # Redis's clock (TIME, µs) in the call, for the journal (0: the pool is gone).
    redis_us: int = 0


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
    # Groups: what requests share (reward, credential, rate limit), sent once a call
    # (issue.lua's header); a flash sale's batch is one group.
    groups: dict[tuple[str, str, str, float], int] = {}
    args: list[Any] = [
        at,
        pool_id,
        settings.events_maxlen,
        settings.idempotency_ttl,
        len(requests),
        settings.user_events_maxlen,
        0,  # the number of groups, set below
    ]
    for r in requests:
        group = (
            r.reward_id or "",
            r.credential.kind if r.credential else "",
            r.credential.value if r.credential else "",
            r.rate_limit if r.rate_key else 0,
        )
        number = groups.setdefault(group, len(groups) + 1)
        # Unused per-request keys point at the pool hash: same slot, never touched.
        key_list += [
            keys.idempotency(project_id, r.idempotency_digest)
            if r.idempotency_digest
            else pool_key,
            keys.user_codes(project_id, r.user_id) if r.user_id else pool_key,
            keys.user_events(project_id, r.user_id) if r.user_id else pool_key,
        ]
        args += [r.count, r.user_id or "", number, r.fingerprint or "", r.purchase_id]
        args.append(r.rate_key or "")
    args[6] = len(groups)
    # After the per-request keys: the pool's per-minute counters, the rate-limit
    # windows, then each group's keys and arguments (issue.lua header).
    key_list += stats_keys(project_id, pool_id, at)
    key_list.append(keys.rate_window(project_id))
    for reward_id, kind, value, limit in groups:
        key_list += [
            keys.reward(project_id, reward_id) if reward_id else pool_key,
            keys.reward_users(project_id, reward_id) if reward_id else pool_key,
            _credential_key(project_id, kind) or pool_key,
        ]
        args += [reward_id, kind, value, limit]
    if any(r.hold_seconds for r in requests):
        # Holds ride after the counters only when asked for (issue.lua's header): a
        # batch without them sends what it always sent.
        key_list.append(keys.holds(project_id))
        args += [at + r.hold_seconds if r.hold_seconds else "" for r in requests]
    raw = await backend.scripts.run_acked("issue", key_list, args)
    results: list[IssueResult] = []
    i = 1
    for r in requests:
        status, available, assigned, purchase_id, hide, n = raw[i : i + 6]
        codes = [c.decode() for c in raw[i + 6 : i + 6 + n]]
        i += 6 + n
        limited = status == Status.RATE_LIMITED  # its `available`: ms left of the window
        assigned_time = float(assigned) if assigned else None
        results.append(
            IssueResult(
                status=Status(status),
                available=0 if limited else int(available),
                retry_after_ms=int(available) if limited else 0,
                assigned_time=assigned_time,
                purchase_id=purchase_id.decode() or None,
                hide_code=hide == 1,
                codes=codes,
                # The float issue.lua stored as text (redis-py sends repr, which reads
                # back exactly); a replay's request has the same hold_seconds (its
                # fingerprint holds them), so this is the first answer's expiry too.
                hold_expires_at=assigned_time + r.hold_seconds
                if r.hold_seconds and assigned_time is not None
                else None,
            )
        )
    # The trailer is missing only when the pool is gone (every request failed).
    position = int(raw[i]) if len(raw) > i else 0
    for k, result in enumerate(results):
        if result.status == Status.OK:
            results[k] = msgspec.structs.replace(result, position=position)
            position += len(result.codes)
    redis_us = int(raw[i + 1]) if len(raw) > i + 1 else 0
    alerts = [a.decode() for a in raw[i + 2 :]]
    return IssueCall(results=results, available=int(raw[0]), alerts=alerts, redis_us=redis_us)


def _credential_key(project_id: str, kind: str) -> str | None:
    if not kind:
        return None
    return keys.api_keys(project_id) if kind == "key" else keys.project(project_id)
