"""What every part of the store shares: the client, the scripts, the settings."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterable
from typing import TypeVar

from redis.asyncio import Redis

from codepool.durability.journal import Journal
from codepool.scripts import Scripts
from codepool.settings import Settings


class Backend:
    """One Redis client with its registered scripts, plus the settings they need, and
    the journal hand-outs, redeems and releases go to (None: not journaled)."""

    def __init__(self, client: Redis, settings: Settings, journal: Journal | None = None) -> None:
        self.client = client
        self.scripts = Scripts(client, settings.replica_acks, settings.replica_acks_timeout)
        self.settings = settings
        self.journal = journal


def new_id() -> str:
    """A short URL-safe id (72 random bits) that does not start with "-", which a
    command line would read as an option (``codepool codes export <pool id>``)."""
    while True:
        made = secrets.token_urlsafe(9)
        if not made.startswith("-"):
            return made


def now() -> float:
    return time.time()


def text(value: bytes | str | None) -> str:
    """Redis answers bytes (decode_responses is off for speed); fields are UTF-8."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def opt_float(value: bytes | str | None) -> float | None:
    raw = text(value)
    return float(raw) if raw else None


T = TypeVar("T")


async def window(batches: AsyncIterable[list[T]], skip: int, count: int) -> list[T]:
    """Items ``skip`` .. ``skip + count`` of a stream read in batches; stops reading
    once the window is full."""
    data: list[T] = []
    async for batch in batches:
        if skip >= len(batch):
            skip -= len(batch)
            continue
        data.extend(batch[skip : skip + count - len(data)])
        skip = 0
        if len(data) >= count:
            break
    return data
