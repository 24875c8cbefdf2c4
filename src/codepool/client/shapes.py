"""Shapes of the contract (../shared/API.md) that codepool.models does not have yet.

``POST .../codes/generate`` is specified but not yet served; these Structs follow the
contract field for field. Once the service has them in codepool.models, import those.
"""

from __future__ import annotations

from msgspec import Struct


class GenerateIn(Struct, kw_only=True, omit_defaults=True):
    count: int
    pattern: str
    charset: str | None = None
    check_character: bool | None = None
    max_guess_probability: float | None = None


class Generated(Struct, kw_only=True):
    added: int
    total: int
    available: int
    space: float
    guess_probability: float
