"""A restore's writes: pipelined and batched."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from codepool.scripts import Scripts
from codepool.settings import Settings

WRITE_BATCH = 1_000
PUSH_CHUNK = 10_000
USER_EVENTS_MAXLEN = Settings().user_events_maxlen


class Writer:
    """Pipelined, batched writes."""

    def __init__(self, client: Redis, user_events_maxlen: int = USER_EVENTS_MAXLEN) -> None:
        self.client = client
        self.user_events_maxlen = user_events_maxlen
        self.scripts = Scripts(client)
        self.pipe = client.pipeline(transaction=False)
        self.pending = 0
        self.keys: set[str] = set()

    async def call(self, *args: Any) -> None:
        self.pipe.execute_command(*args)
        if isinstance(args[1], str):
            self.keys.add(args[1])
        self.pending += 1
        if self.pending >= WRITE_BATCH:
            await self.flush()

    async def push(self, key: str, items: list[bytes]) -> None:
        for i in range(0, len(items), PUSH_CHUNK):
            await self.call("RPUSH", key, *items[i : i + PUSH_CHUNK])

    async def flush(self) -> None:
        if self.pending:
            await self.pipe.execute()
            self.pending = 0


def reversed_pairs(flat: list[bytes]) -> list[bytes]:
    """member, score, ... -> score, member, ... (ZADD's order)."""
    out: list[bytes] = []
    for member, score in zip(flat[::2], flat[1::2], strict=True):
        out += [score, member]
    return out
