"""What the ``codepool`` commands share: the handler type, SIGTERM raised as an
exception (so ``finally`` blocks run), the CODEPOOL_LOG_LEVEL name as a level, and
Redis URLs fit for logs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

from codepool.settings import Settings, SettingsError

Handler = Callable[[argparse.Namespace, Settings], int]


class Terminated(BaseException):
    """SIGTERM arrived; raised like KeyboardInterrupt so ``finally`` blocks still run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def terminate_raises() -> Iterator[None]:
    """Turn SIGTERM into an exception until something else (granian) takes it over.

    Python's default SIGTERM action kills the process without running ``finally``, which
    would leave the embedded redis-server to PDEATHSIG alone.
    """
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def log_level(name: str) -> int:
    level = logging.getLevelNamesMapping().get(name.upper())
    if level is None:
        raise SettingsError(f"bad CODEPOOL_LOG_LEVEL {name!r}: use DEBUG, INFO, WARNING or ERROR")
    return level


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced, fit for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
