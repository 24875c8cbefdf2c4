"""The embedded redis-server's files and the redis.conf codepool writes at every start."""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_NAME = "redis.conf"
LOG_NAME = "redis.log"
PID_NAME = "redis.pid"
SOCKET_NAME = "redis.sock"


def _save_points(appendonly: bool) -> list[str]:
    """RDB save points. Without the AOF they are the only persistence. With it, an
    hourly RDB is kept as a second, compact copy that backups pick up: every BGSAVE
    forks and writes the whole dataset, and codepool's own snapshots already do that
    every minute, so a BGSAVE a minute (Redis's default `save 60 10000`, met by any
    busy minute) would only take a core from a flash sale for as long as it writes."""
    # One pair per line: 6.2 ignores several pairs on one `save` line.
    if appendonly:
        return ["save 3600 1"]
    return ["save 3600 1", "save 300 100", "save 60 10000"]


def _quote(value: str | Path) -> str:
    """A redis.conf string literal (double quotes, backslash escapes) for paths with spaces."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def write_config(
    directory: Path,
    *,
    port: int,
    password: str | None,
    unixsocket: bool,
    appendonly: bool,
    configured_appendonly: bool,
    maxmemory: str,
) -> None:
    """Write ``directory``/redis.conf. ``appendonly`` is the AOF setting to start with,
    ``configured_appendonly`` the one the server runs with (it differs while an AOF is
    bootstrapped from an RDB)."""
    d = directory
    lines = [
        "# Written by codepool (embedded.py) at every start: edits here are overwritten.",
        "daemonize no",
        f"dir {_quote(d)}",
        # For operators; codepool itself finds a stray server through /proc (cwd).
        f"pidfile {_quote(d / PID_NAME)}",
        f"logfile {_quote(d / LOG_NAME)}",
        "loglevel notice",
        "always-show-logo no",
        "bind 127.0.0.1",
        "protected-mode yes",
        f"port {port}",
    ]
    if unixsocket:
        lines += [f"unixsocket {_quote(d / SOCKET_NAME)}", "unixsocketperm 700"]
    if password is not None:
        # Any local user can reach a localhost port; the password keeps them out.
        lines.append(f"requirepass {_quote(password)}")
    lines += [
        f"appendonly {'yes' if appendonly else 'no'}",
        # At most ~1 s of acknowledged writes lost on power failure; a crash of redis
        # itself loses nothing (writes reach the kernel before the reply is sent).
        # The snapshot/restore machinery covers the rest.
        "appendfsync everysec",
        *_save_points(configured_appendonly),
        # If a snapshot cannot be written (disk full), refuse writes rather than accept
        # what cannot be persisted.
        "stop-writes-on-bgsave-error yes",
        # Never evict: an evicted pool or assignment would hand codes out twice or lose
        # them. With a maxmemory set, writes fail with OOM instead, which is recoverable.
        "maxmemory-policy noeviction",
        f"maxmemory {maxmemory}",
        # After 5 s a running script makes redis answer BUSY to others (it keeps running).
        "lua-time-limit 5000",
        # A till's exact answer for a code still in its pool reads that one element
        # (LINDEX), walking the list's nodes from the nearer end: 32 KB nodes instead
        # of the default 8 KB make the walk a quarter as long (a 10M-code pool: mean
        # 256 -> 53 us, p99 605 -> 140 us), at the same LPOP and RPUSH cost
        # (docs/index.md, "Where a till's Redis time goes").
        "list-max-ziplist-size -4",
        # A rate-limit window (keys.rate_window) holds one field per credential that
        # asked in its second, 16k in a flash sale's busiest; freeing that at expiry
        # is a background thread's work, not the event loop's.
        "lazyfree-lazy-expire yes",
    ]
    # 0600: the file may hold the TCP password.
    fd = os.open(d / CONFIG_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as config:
        config.write("\n".join(lines) + "\n")
