"""Rate-limit windows (keys.rate_window) as tests see them."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from codepool import keys


async def next_second(client: Redis) -> None:
    """Wait until Redis's clock starts a new second. The windows are its seconds, so a
    burst sent right after (well under a second long) is counted in one fresh window."""
    _, usec = await client.time()
    await asyncio.sleep(1 - usec / 1_000_000 + 0.01)


async def counted(client: Redis, project: str, credential: str) -> int:
    """``credential``'s requests in every live window of ``project`` (a burst that
    straddles a second is in two)."""
    total = 0
    async for window in client.scan_iter(match=keys.rate_window(project, "*")):
        total += int(await client.hget(window, credential) or 0)
    return total


async def windows(client: Redis, project: str) -> list[bytes]:
    """The names of ``project``'s live windows."""
    return [w async for w in client.scan_iter(match=keys.rate_window(project, "*"))]


async def credentials(client: Redis, window: bytes) -> list[bytes]:
    """The credentials counted in ``window`` (without the field that keeps it a hash
    table, common.lua's WINDOW_PAD)."""
    fields = [bytes(f) for f in await client.hkeys(window) if isinstance(f, bytes)]
    return [f for f in fields if not f.startswith(b"~pad")]
