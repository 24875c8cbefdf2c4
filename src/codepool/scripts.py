"""The Lua scripts in ``lua/``: found, assembled and registered once per client.

Each file in ``lua/`` is one atomic operation. ``--@include "name.lua"`` pulls in a
helper from ``lua/includes/`` (pasted in place, as BullMQ does), so a script that
Redis runs is always one self-contained text. redis-py's ``register_script`` then
handles EVALSHA and reloads after a NOSCRIPT (a restarted or failed-over Redis).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any, cast

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from codepool import errors
from codepool.redispipes import eval_then_wait

_INCLUDE = re.compile(r'^--@include "([\w.-]+)"\s*$', re.MULTILINE)

# redis-py accepts str/bytes/int/float as script arguments.
Arg = str | bytes | int | float


class Status(enum.IntEnum):
    """Return codes shared by the scripts (see each script's header)."""

    OK = 1
    REPLAYED = 2
    EXHAUSTED = -1
    EXPIRED = -2
    PER_USER_LIMIT = -3
    IDEMPOTENCY_MISMATCH = -4
    NO_POOL = -5
    NO_REWARD = -6
    REWARD_MOVED = -7
    GIVEN_BACK = -8
    STALE_CREDENTIAL = -9
    RATE_LIMITED = -10


def lua_dir() -> Traversable:
    """Where the scripts are: inside the installed package, else the source checkout."""
    packaged = resources.files("codepool") / "lua"
    if packaged.is_dir():
        return packaged
    # Editable installs and a plain checkout: lua/ sits at the repository root.
    return cast(Traversable, Path(__file__).resolve().parents[2] / "lua")


@cache
def script_sources() -> dict[str, str]:
    """Script name (file stem) -> full source with includes pasted in."""
    root = lua_dir()
    includes = root / "includes"

    def paste(match: re.Match[str]) -> str:
        return (includes / match.group(1)).read_text(encoding="utf-8")

    sources: dict[str, str] = {}
    for entry in sorted(root.iterdir(), key=lambda t: t.name):
        if entry.is_file() and entry.name.endswith(".lua"):
            sources[entry.name[:-4]] = _INCLUDE.sub(paste, entry.read_text(encoding="utf-8"))
    if not sources:
        raise RuntimeError(f"no Lua scripts found in {root}")
    return sources


class Scripts:
    """Every script registered on one client; call them with ``await scripts.run(...)``."""

    def __init__(self, client: Redis, replica_acks: int = 0, acks_timeout: float = 1.0) -> None:
        self._client = client
        self._acks = replica_acks
        self._acks_timeout_ms = max(1, round(acks_timeout * 1000))
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(source) for name, source in script_sources().items()
        }

    @property
    def client(self) -> Redis:
        """The client the scripts run on (for plain commands alongside them)."""
        return self._client

    @property
    def names(self) -> list[str]:
        return sorted(self._scripts)

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run script ``name`` (file stem in lua/) with KEYS and ARGV."""
        return await self._scripts[name](keys=list(keys), args=list(args))

    async def run_acked(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """:meth:`run` for a change someone is told of (a hand-out, redeem, release,
        confirm): with CODEPOOL_REPLICA_ACKS=N, only once N replicas of the keys' shard
        hold it (WAIT, pipelined after the EVALSHA on the same connection: no extra
        round trip). Fewer: 503 not_replicated, and the change stays done on the master
        (a retry with the same Idempotency-Key gets the same codes, and waits again)."""
        if not self._acks:
            return await self.run(name, keys, args)
        script = self._scripts[name]
        reply, acks = await eval_then_wait(
            self._client,
            script.sha,
            cast(str, script.script),
            keys,
            args,
            self._acks,
            self._acks_timeout_ms,
        )
        if acks < self._acks:
            raise errors.NotReplicated(acks=acks, wanted=self._acks, retry_after=1)
        return reply
