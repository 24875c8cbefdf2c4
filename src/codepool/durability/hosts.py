"""Many hosts against one Redis: who this host is, which hosts journal, and leases.

Each host (``codepool serve`` with its own data directory) journals into its own
directory, its files named with its host id. A restore needs the journal of every host
that may have journaled since the snapshot began: the snapshot loop of each host
registers it in keys.HOSTS every second (with Redis's time) and keeps a copy of that
registry in its data directory (``hosts.json``), so the hosts are known even after Redis
lost everything; each snapshot records them too (its header).

Leases (lua/lease.lua, as the hold reaper's): one snapshot taker at a time, taken over
when its holder stops renewing; and the restore marker (keys.RESTORING), renewed while
a restore runs, so another host waits for a live restore and redoes a dead one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import WatchError

from codepool import keys
from codepool.scripts import Scripts
from codepool.settings import Settings

HOST_ID_FILE = "host-id"
HOSTS_FILE = "hosts.json"
# A host whose last heartbeat is this much older than a snapshot's start journaled
# nothing since (it stopped): a restore from that snapshot does not need it.
HOST_STALE = 30.0
# A host not seen for this long is forgotten (hosts with throwaway data directories get a
# new id at every start): no snapshot still kept began before it stopped.
HOST_FORGET = 7 * 24 * 3600.0
# How often a restore renews its marker, and the marker's TTL.
MARKER_RENEW = 1.0
MARKER_TTL_MS = 10_000


def host_id(settings: Settings) -> str:
    """settings.host_id, or the id kept in the data directory (made on first use)."""
    if settings.host_id:
        return settings.host_id
    path = settings.data_dir / HOST_ID_FILE
    with contextlib.suppress(FileNotFoundError):
        return path.read_text().strip()
    made = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:48] or "host"
    made = f"{made}-{secrets.token_hex(4)}"
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{HOST_ID_FILE}.{os.getpid()}")
    temp.write_text(made + "\n")
    try:
        os.link(temp, path)  # first writer wins: processes starting together agree
    except FileExistsError:
        made = path.read_text().strip()
    finally:
        temp.unlink(missing_ok=True)
    return made


async def redis_now(client: Redis) -> float:
    """Redis's clock (Unix s): the one clock every host's records are ordered by."""
    seconds, micros = await client.time()
    return int(seconds) + int(micros) / 1e6


async def heartbeat(client: Redis, host: str, data_dir: Path) -> dict[str, float]:
    """Register ``host`` as journaling now; return the registry, also kept on disk."""
    now = await redis_now(client)
    await client.hset(keys.HOSTS, host, repr(now))
    hosts = await registered_hosts(client)
    gone = [h for h, seen in hosts.items() if seen < now - HOST_FORGET]
    if gone:
        await client.hdel(keys.HOSTS, *gone)
    return remember_hosts(data_dir, hosts, forget_before=now - HOST_FORGET)


def remember_hosts(
    data_dir: Path, hosts: dict[str, float], forget_before: float = 0.0
) -> dict[str, float]:
    """Merge ``hosts`` into the registry kept in ``data_dir`` (hosts last seen before
    ``forget_before`` left out); return the merge."""
    known = known_hosts(data_dir)
    merged = {h: max(seen, known.get(h, 0.0)) for h, seen in hosts.items()}
    merged.update({h: seen for h, seen in known.items() if h not in merged})
    merged = {h: seen for h, seen in merged.items() if seen >= forget_before}
    # Written when a host appears or has beaten a while since: a beat is needed to within
    # HOST_STALE, not every second.
    if merged.keys() != known.keys() or any(
        seen - known[h] > HOST_STALE / 3 for h, seen in merged.items()
    ):
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = data_dir / f".{HOSTS_FILE}.tmp"
        temp.write_text(json.dumps(merged, sort_keys=True))
        temp.replace(data_dir / HOSTS_FILE)
    return merged


async def registered_hosts(client: Redis) -> dict[str, float]:
    """keys.HOSTS: host id -> Redis time of its last heartbeat."""
    raw = await client.hgetall(keys.HOSTS)
    return {_text(h): float(seen) for h, seen in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def known_hosts(data_dir: Path) -> dict[str, float]:
    """The registry as this host last saw it (host id -> Redis time of its last beat)."""
    try:
        raw = json.loads((data_dir / HOSTS_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {str(h): float(t) for h, t in raw.items()} if isinstance(raw, dict) else {}


def needed_hosts(hosts: dict[str, float], since: float) -> set[str]:
    """The hosts whose journals a restore of a snapshot begun at ``since`` needs."""
    return {h for h, seen in hosts.items() if seen >= since - HOST_STALE}


class Lease:
    """One host at a time holds ``key`` (lua/lease.lua); ``hold`` takes or renews it."""

    def __init__(self, client: Redis, key: str, host: str, ttl: float) -> None:
        self.client = client
        self.key = key
        # The host, not the process: serve's start-up check and its snapshot process
        # hold it in turn, and a host restarted within the TTL has it back at once.
        self.token = host
        self.ttl_ms = int(ttl * 1000)
        self._scripts = Scripts(client)

    async def hold(self) -> bool:
        return bool(await self._scripts.run("lease", [self.key], [self.token, self.ttl_ms]))

    async def give_up(self) -> None:
        await self._scripts.run("lease", [self.key], [self.token, 0])


class RestoreRunningError(RuntimeError):
    """Another restore (this host's or another's) is running: its marker is live."""


@contextlib.asynccontextmanager
async def restore_marker(client: Redis, value: str) -> AsyncIterator[None]:
    """keys.RESTORING, with a TTL renewed while the block runs: a restore that dies
    leaves no marker behind for long, so others tell a live restore from a dead one.
    Taken atomically (WATCH): raises RestoreRunningError while another one is live."""
    async with client.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(keys.RESTORING)
            if int(await pipe.pttl(keys.RESTORING)) > 0:
                raise RestoreRunningError("a restore is running")
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.set(keys.RESTORING, value, px=MARKER_TTL_MS)
            await pipe.execute()
        except WatchError:
            raise RestoreRunningError("a restore has just started") from None

    async def renew() -> None:
        while True:
            await asyncio.sleep(MARKER_RENEW)
            await client.set(keys.RESTORING, value, px=MARKER_TTL_MS)

    task = asyncio.create_task(renew())
    try:
        yield
    except BaseException:
        await _stop(task)
        with contextlib.suppress(Exception):
            # Without a TTL: the restore died, whoever looks next restores again.
            await client.set(keys.RESTORING, value)
        raise
    await _stop(task)
    await client.delete(keys.RESTORING)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def restore_running(client: Redis) -> bool:
    """Whether a live restore (its marker renewed) is running, here or on another host.
    A marker without a TTL is of a restore that died (or of a version before the TTL)."""
    return int(await client.pttl(keys.RESTORING)) > 0
