"""The result of one delivery attempt."""

from __future__ import annotations

import msgspec


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    error: str = ""
    # True when trying again cannot help (no SMTP server configured, a URL that cannot
    # be requested): the delivery goes to the dead letters at once.
    final: bool = False


DELIVERED = Outcome(ok=True)
