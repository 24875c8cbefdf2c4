"""The one exception of the embedded redis-server's modules (embedded*.py)."""

from __future__ import annotations


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server could not be found, started or stopped."""
