"""What an earlier run of the embedded redis-server may have left in its data directory:
a stray server still running, half-written saves, files with too open a mode.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

from codepool.embedded_error import EmbeddedRedisError

log = logging.getLogger("codepool.embedded")

# Redis writes a save or an AOF rewrite to one of these, then renames it into place.
_TEMP_FILES = ("temp-*.rdb", "temp-rewriteaof-*.aof")


def redis_servers_in(directory: Path) -> list[int]:
    """Pids of live redis-server processes whose working directory is ``directory``.

    Redis chdirs to its ``dir`` setting, so this finds the server of a data directory
    whoever started it. Zombies count as gone (they have no cwd). Linux only: [] elsewhere.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    target = directory.resolve()
    found: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "redis-server":
                continue
            if Path(os.readlink(entry / "cwd")) == target:
                found.append(int(entry.name))
        except OSError:
            # Gone meanwhile, a zombie, or another user's process: not ours either way.
            continue
    return sorted(found)


def keep_private(directory: Path) -> None:
    """Make ``directory`` 0700 and what an earlier run left in it 0600 (or 0700 for
    directories): an existing redis/ kept its old mode, and an AOF written before the
    umask was set stays world-readable otherwise."""
    directory.chmod(0o700)
    for path in directory.rglob("*"):
        if path.is_symlink() or path.is_socket():
            continue
        path.chmod(0o700 if path.is_dir() else 0o600)


def stop_strays(directory: Path, timeout: float) -> None:
    """Stop a redis-server left running in this directory by an owner that is gone.

    We hold the directory lock, so its owner is dead; PDEATHSIG should have taken the
    server with it, but not on every platform, and not for servers started by hand.
    Two servers writing one AOF would corrupt it, so the stray must go first.
    """
    for pid in redis_servers_in(directory):
        log.warning("stopping stray redis-server (pid %d) left in %s", pid, directory)
        for sig, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + grace
            # Not our child, so there is nothing to wait() on: poll /proc.
            while pid in redis_servers_in(directory) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid not in redis_servers_in(directory):
                break
        else:
            raise EmbeddedRedisError(
                f"stray redis-server (pid {pid}) in {directory} survives SIGKILL"
            )


def remove_temp_files(directory: Path) -> None:
    """Delete what a redis killed mid-save left: an RDB or AOF rewrite it was writing
    (as large as the dataset). No server runs here now (the lock is ours, strays are
    stopped), so none of them is being written; redis never reads them back."""
    for pattern in _TEMP_FILES:
        for path in directory.glob(pattern):
            log.warning("removing %s, left by a redis-server killed while saving", path)
            path.unlink(missing_ok=True)
