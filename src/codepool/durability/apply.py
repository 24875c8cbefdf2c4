"""Restores one project: its snapshot frames (in snapshot order) plus its journal.

Each kind of key has its own part (durability.apply_codes, apply_lists, apply_events,
apply_counters, apply_pools); this module hands each frame to its part, writes the keys
no part needs to touch as they are, and at the project's end (:meth:`finish`) writes
everything the snapshot had no key for, then the pool hashes.
"""

from __future__ import annotations

import time

from codepool import keys
from codepool.durability.apply_codes import AvailableLists, IssuedRecords
from codepool.durability.apply_counters import MinuteCounters
from codepool.durability.apply_events import Events
from codepool.durability.apply_lists import HandoutLists
from codepool.durability.apply_pools import PoolHashes
from codepool.durability.keyspace import classify
from codepool.durability.plan import NO_CLOCK, Clocks, ProjectJournal
from codepool.durability.snapshot_format import (
    Avail,
    Clock,
    Counters,
    Footer,
    Frame,
    HashSlice,
    Header,
    KeyEnd,
    ListSlice,
    ProjectEnd,
    SetSlice,
    StreamSlice,
    StringKey,
    ZSetSlice,
)
from codepool.durability.writer import Writer, reversed_pairs


class ProjectRestore:
    """Restores one project from its frames (in snapshot order) and its journal."""

    def __init__(self, project: str, journal: ProjectJournal, w: Writer) -> None:
        self.project = project
        self.j = journal
        self.w = w
        self.clocks = Clocks()
        self.keys_seen: set[str] = set()
        self.idem_seen: set[str] = set()
        self.issued = IssuedRecords(project, journal, w, self.clocks)
        self.available = AvailableLists(project, journal, w, self.issued)
        self.lists = HandoutLists(project, journal, w, self.clocks)
        self.events = Events(project, journal, w)
        self.counters = MinuteCounters(project, journal, w)
        self.pools = PoolHashes(project, journal, w, self.clocks)

    @property
    def stats_available(self) -> int:
        return self.pools.stats_available

    # -- frames ---------------------------------------------------------------------

    async def frame(self, frame: Frame) -> None:
        if isinstance(frame, Counters):
            await self.counters.day(frame)
            return
        if isinstance(frame, Avail):
            await self.issued.end(frame.clock)  # (a no-op once the issued section ended)
            self.clocks.note(frame.key, frame.clock)
            await self.available.slice(frame)
            return
        if isinstance(frame, KeyEnd):
            await self._key_end(frame)
            return
        if isinstance(frame, ProjectEnd | Header | Footer):
            raise ValueError(f"unexpected frame {type(frame).__name__}")
        self.keys_seen.add(frame.key)
        kind = classify(frame.key)
        if kind is None:
            raise ValueError(f"not a project key: {frame.key}")
        if isinstance(frame, HashSlice):
            self.clocks.note(frame.key, frame.clock)
            if kind.kind == "issued":
                await self.issued.slice(frame)
            elif kind.kind == "pool":
                flat = frame.flat
                self.pools.hashes[kind.id] = dict(zip(flat[::2], flat[1::2], strict=True))
            elif kind.kind == "reward_users":
                await self.lists.reward_users(frame, kind.id)
            else:
                await self.w.call("HSET", frame.key, *frame.flat)
        elif isinstance(frame, ListSlice):
            self.clocks.note(frame.key, frame.clock)
            await self.w.push(frame.key, frame.items)
        elif isinstance(frame, SetSlice):
            await self.w.call("SADD", frame.key, *frame.members)
        elif isinstance(frame, ZSetSlice):
            await self.w.call("ZADD", frame.key, *reversed_pairs(frame.flat))
        elif isinstance(frame, StreamSlice):
            self.clocks.note(frame.key, frame.clock)
            if kind.kind == "events":
                await self.events.entries(frame.key, frame.entries)
            else:
                for entry_id, fields in frame.entries:
                    await self.w.call("XADD", frame.key, entry_id, *fields)
        elif isinstance(frame, StringKey):
            if kind.kind == "idem":
                self.idem_seen.add(frame.key)
            await self._string(frame.key, frame.value.decode(), frame.expires_ms / 1000)

    async def _string(self, key: str, value: str, expires: float) -> None:
        if expires == 0:
            await self.w.call("SET", key, value)
        elif expires > time.time():
            await self.w.call("SET", key, value, "PXAT", int(expires * 1000))

    async def _key_end(self, end: KeyEnd) -> None:
        kind = classify(end.key)
        if kind is None:
            return
        self.clocks.note(end.key, end.clock)
        if kind.kind == "issued":
            await self.issued.end(end.clock or NO_CLOCK)
        elif kind.kind == "avail":
            await self.available.end(kind.id)
        elif kind.kind in ("log", "user"):
            await self.lists.list_end(end.key, kind.kind, kind.id)
        elif kind.kind == "reward_users":
            await self.lists.reward_users_end(end.key, kind.id)
        elif kind.kind == "events":
            await self.events.end(end.clock or NO_CLOCK)
        if end.expires_ms:
            await self.w.call("PEXPIREAT", end.key, end.expires_ms)

    # -- the end --------------------------------------------------------------------

    async def finish(self, end_clock: Clock) -> int:
        """Everything the snapshot had no key for, then the pool hashes; returns the
        number of placeholder pools."""
        await self.issued.end(end_clock)
        pool_hashes = self.pools.hashes
        journal_pools = set(self.j.by_pool)
        placeholders = sorted(journal_pools - set(pool_hashes))
        for pool in sorted(set(pool_hashes) | journal_pools):
            await self.available.end(pool)
            await self.lists.list_end(keys.pool_log(self.project, pool), "log", pool)
        for user in self.j.by_user:
            name = user.decode()
            await self.lists.list_end(keys.user_codes(self.project, name), "user", name)
        for reward in self.j.by_reward:
            name = reward.decode()
            if keys.reward(self.project, name) in self.keys_seen:  # not a deleted reward
                await self.lists.reward_users_end(keys.reward_users(self.project, name), name)
        for key, (value, expires) in self.j.idempotency.items():
            if key not in self.idem_seen:
                await self._string(key, value, expires)
        await self.events.end(NO_CLOCK)
        await self.counters.end()
        await self.w.flush()
        counts = await self.pools.recount_and_rebuild(self.lists.rebuild)
        for pool in sorted(set(pool_hashes) | journal_pools):
            await self.pools.write(
                pool, counts.get(pool, (0, 0)), pool in placeholders, self.available.length[pool]
            )
        # The quota's count is what the restored pools hold, not the snapshot's counter
        # (read at another moment of a fuzzy snapshot, maybe mid-commit).
        await self.w.call("SET", keys.project_stored(self.project), str(self.pools.stored))
        await self.w.flush()
        # Through a script, with every key of the project in place: the same outbox rules
        # as the scripts whose writes were lost.
        await self.events.write_missed()
        return len(placeholders)
