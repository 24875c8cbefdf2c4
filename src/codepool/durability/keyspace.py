"""Which codepool keys exist, and what each holds (from its name, see keys.py).

Every walk over the keyspace (snapshot, restore's flush, the state check) goes through
:func:`scan_keys`: the one place that must visit every shard of a Redis Cluster.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from redis.asyncio import Redis

from codepool import keys
from codepool.rediscluster import scan_every_master

SCAN_COUNT = 1_000


async def scan_keys(client: Redis, match: str = f"{keys.PREFIX}:*") -> AsyncIterator[str]:
    """Every key name matching ``match`` (SCAN: a thousand at a time, never KEYS), on
    every master of a cluster (rediscluster.scan_every_master follows failover and
    resharding). A key may come twice (SCAN's guarantee is "at least once")."""
    async for batch in scan_every_master(client, match=match, count=SCAN_COUNT):
        for name in batch:
            yield name.decode() if isinstance(name, bytes) else name


async def all_keys(client: Redis) -> list[str]:
    """Every codepool key name, sorted, each once."""
    return sorted({name async for name in scan_keys(client)})


class KeyKind(msgspec.Struct, frozen=True):
    # issued, events, pool, avail, log, user, reward_users, idem, stats, skip, other
    kind: str
    project: str
    id: str = ""


def _pattern(make: Any, n_ids: int, id_re: str = "[^:]+") -> re.Pattern[str]:
    """A regex matching the names keys.py makes with ``make`` (any project, any ids)."""
    name: str = make("\x01", *["\x00"] * n_ids)
    regex, ids = "", 0
    for part in re.split("([\x00\x01])", name):
        if part == "\x01":
            regex += "(?P<project>[^}]+)"
        elif part == "\x00":
            regex += f"(?P<id>{id_re})" if ids == 0 else f"(?:{id_re})"
            ids += 1
        else:
            regex += re.escape(part)
    return re.compile(regex)


# Order matters: a pool id never holds ':', so pool:<id> does not match pool:<id>:log.
_KINDS: list[tuple[str, re.Pattern[str]]] = [
    ("issued", _pattern(keys.issued, 0)),
    ("events", _pattern(keys.events, 0)),
    ("pool", _pattern(keys.pool, 1)),
    ("avail", _pattern(keys.pool_available, 1)),
    ("log", _pattern(keys.pool_log, 1)),
    # An upload in flight was never acknowledged: not worth keeping.
    ("skip", _pattern(keys.pool_staging, 2)),
    ("skip", _pattern(keys.pool_upload_lock, 1)),
    # The code index: a restore rebuilds it from the restored available lists
    # (codepool.store.codeindex.ensure_all), which is exact and faster than carrying it.
    ("skip", _pattern(keys.code_index, 1)),
    ("skip", _pattern(keys.code_index_uploads, 0)),
    # A generation in flight was never acknowledged either.
    ("skip", _pattern(keys.generate_lock, 0)),
    # Per-user event lists are an index of the project stream: a restore rebuilds them
    # from it (durability.apply_events), exact whatever the moment each would have been read.
    ("skip", _pattern(keys.user_events, 1, ".+")),
    # Rate-limit windows live a second or two.
    ("skip", _pattern(keys.rate_window, 1, "[0-9]+")),
    ("reward_users", _pattern(keys.reward_users, 1)),
    ("user", _pattern(keys.user_codes, 1, ".+")),
    ("idem", _pattern(keys.idempotency, 1)),
    ("stats", _pattern(keys.pool_stats, 2)),
]
_PROJECT = _pattern(lambda p: f"{keys.pools(p).rsplit(':', 1)[0]}:", 0)


def classify(key: str) -> KeyKind | None:
    """What a codepool key holds, from its name (keys.py); None for global keys."""
    for kind, pattern in _KINDS:
        match = pattern.fullmatch(key)
        if match is not None:
            return KeyKind(kind, match.group("project"), match.groupdict().get("id") or "")
    match = _PROJECT.match(key)
    return None if match is None else KeyKind("other", match.group("project"))
