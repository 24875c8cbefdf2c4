"""Whole-state comparisons of a real Redis: what a restore or a catch-up must give back."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from redis.asyncio import Redis

from codepool import keys
from codepool.rediscluster import scan_every_master
from codepool.store import codeindex
from codepool.store.base import text

Dump = dict[bytes, tuple[str, Any, bool]]
# A user's event index (keys.user_events): each item an event id and its type; a
# restore writes missed events again under new ids, as in the project stream.
_USER_EVENTS = re.compile(
    re.escape(keys.user_events("\0", "\1")).replace("\0", "[^}]+").replace("\1", ".+").encode()
)
_RATE_LIMIT = re.compile(
    re.escape(keys.rate_window("\0", "\1")).replace("\0", "[^}]+").replace("\1", "[0-9]+").encode()
)
# The code index (codepool.store.codeindex): its bytes name upload numbers and offsets,
# which a restore chooses anew; what must hold is that it finds every available code.
_INDEX = re.compile(
    "|".join(
        re.escape(k).replace("\0", "[^}]+").replace("\1", "[0-9-]+")
        for k in (keys.code_index("\0", "\1"), keys.code_index_uploads("\0"))
    ).encode()
)


async def dump(r: Redis) -> Dump:
    """Every codepool key (on every master of a cluster): (type, value, has a TTL); but
    rate-limit windows, which live a second or two and are no state a snapshot keeps
    (keys.rate_window)."""
    out: Dump = {}
    for key in sorted({k async for batch in scan_every_master(r, "cp:*") for k in batch}):
        if _RATE_LIMIT.fullmatch(key) or _INDEX.fullmatch(key):
            continue
        kind = text(await r.type(key))
        value: Any
        if kind == "string":
            value = await r.get(key)
        elif kind == "hash":
            value = await r.hgetall(key)
            value.pop(b"ix", None)  # a pool's identity upload in the code index
        elif kind == "list":
            value = await r.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(await r.smembers(key))
        elif kind == "zset":
            value = await r.zrange(key, 0, -1, withscores=True)
        else:
            value = await r.xrange(key)
        out[key] = (kind, value, await r.pttl(key) > 0)
    for key, (_, value, _) in list(out.items()):
        if key.endswith(b":avail"):
            out[key + b"#unindexed"] = ("index", await unindexed(r, key, value), False)
    return out


async def unindexed(r: Redis, avail: bytes, codes: list[bytes]) -> list[bytes]:
    """The codes of an available list that the code index does not point at (at their
    position, in their pool): what lua/includes/common.lua's lookup would miss."""
    project, _, rest = text(avail).partition("}:pool:")
    project = project.removeprefix("cp:{")
    pool_id = rest.removesuffix(":avail")
    popped = int(text(await r.hget(keys.pool(project, pool_id), "popped")) or "0")
    uploads = await r.hgetall(keys.code_index_uploads(project))
    missing = []
    for index, code in enumerate(codes):
        bucket, h = codeindex.bucket_key(project, code)
        found = False
        for fp, u, o in codeindex.entries(await r.get(bucket)):
            m = uploads.get(str(u).encode())
            if fp != h >> 8 or m is None:
                continue
            if codeindex.pool_of(m) != pool_id:
                continue
            if codeindex.position(m, o) == popped + index:
                found = True
        if not found:
            missing.append(code)
    return missing


def _entry(fields: dict[bytes, bytes], ids_renewed: bool) -> tuple[Any, ...]:
    if ids_renewed:  # an outbox entry names its event by id
        fields = {k: v for k, v in fields.items() if k != b"event_id"}
    return tuple(sorted(fields.items()))


def _multiset(kind: str, value: Any, ids_renewed: bool = False, key: bytes = b"") -> Any:
    if kind == "list" and _USER_EVENTS.fullmatch(key):
        return Counter(item.partition(b"\x1f")[2] for item in value)  # without the event id
    if kind == "list":
        return Counter(value)
    if kind == "stream":
        return Counter(_entry(fields, ids_renewed) for _, fields in value)
    return value


def assert_same_state(
    restored: Dump, live: Dump, context: str = "", *, ids_renewed: bool = False
) -> None:
    """``restored`` holds what ``live`` holds. The order of a pool log, a user's code list
    or event list, or an event stream may differ where changes raced (a restore rebuilds them from
    records, not in hand-out order); their content may not. Everything else is exact:
    available lists in order, every issued record, counter and idempotency record.
    ``ids_renewed``: events the restore wrote again have new ids, so outbox entries
    are compared without the event id they name. Fails with every difference."""
    problems: list[Any] = [("missing key", k) for k in sorted(set(live) - set(restored))]
    problems += [("extra key", k) for k in sorted(set(restored) - set(live))]
    for key, (kind, value, ttl) in sorted(live.items()):
        if key not in restored:
            continue
        got_kind, got, got_ttl = restored[key]
        if (got_kind, got_ttl) != (kind, ttl):
            problems.append((key, "kind/ttl", (got_kind, got_ttl), (kind, ttl)))
        elif kind in ("list", "stream") and not key.endswith(b":avail"):
            have = _multiset(kind, got, ids_renewed, key)
            want = _multiset(kind, value, ids_renewed, key)
            if have != want:
                problems.append((key, "extra", have - want, "missing", want - have))
        elif got != value:
            problems.append((key, _diff(kind, got, value)))
    assert not problems, (context, problems)


def _diff(kind: str, got: Any, want: Any) -> Any:
    """What differs, readably."""
    if kind == "hash":
        fields = set(got) | set(want)
        return {f: (got.get(f), want.get(f)) for f in fields if got.get(f) != want.get(f)}
    if kind == "list":
        at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
        return {
            "lengths": (len(got), len(want)),
            "first difference at": at,
            "extra": Counter(got) - Counter(want),
            "missing": Counter(want) - Counter(got),
        }
    return got, want
