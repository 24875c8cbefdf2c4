"""One embedded redis-server per data directory: the flock on its embedded.lock, and
files opened private (0600) like everything redis writes there."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO, BinaryIO

from codepool.embedded_error import EmbeddedRedisError

LOCK_NAME = "embedded.lock"


def open_private(path: Path) -> BinaryIO:
    """Open ``path`` for appending; created 0600, like everything redis writes here."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")


def lock_directory(directory: Path) -> IO[bytes]:
    """Take ``directory``'s lock (held until :func:`unlock`); raises if another holds it."""
    # flock, not a pidfile: the kernel drops it when the holder dies, however it dies,
    # so a crash never leaves the directory "in use". The fd is close-on-exec, so
    # redis-server itself does not hold it.
    lock = open_private(directory / LOCK_NAME)
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise EmbeddedRedisError(
            f"{directory} is in use by another codepool process "
            "(only one embedded redis-server per data directory)"
        ) from None
    return lock


def unlock(lock: IO[bytes]) -> None:
    """Release a lock taken by :func:`lock_directory`."""
    # Unlock explicitly: forked children (granian workers) share this open file
    # description, and closing our fd alone would leave the lock held by them.
    fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    lock.close()
