"""The embedded redis-server's ``maxmemory``: memory this host allows, shares of it."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from codepool.embedded_error import EmbeddedRedisError


def memory_limit() -> int:
    """Bytes this host (or this container's cgroup, if lower) lets processes use."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            total = min(total, int(Path(limit_file).read_text().strip()))
    return total


def redis_maxmemory(value: str) -> str:
    """The ``maxmemory`` line's value: ``N%`` is that share of memory_limit(), in bytes;
    anything else ("0" = no limit, "512mb", "2gb", bytes) goes to Redis as written."""
    value = value.strip()
    if not value.endswith("%"):
        if not re.fullmatch(r"\d+(?:[kmg]b?)?", value, re.IGNORECASE):
            raise EmbeddedRedisError(f"redis_maxmemory {value!r}: expected N%, 0, bytes or 512mb")
        return value
    share = float(value[:-1])
    if not 0 < share <= 100:
        raise EmbeddedRedisError(f"redis_maxmemory {value!r}: a share must be in (0, 100]%")
    return str(int(memory_limit() * share / 100))
