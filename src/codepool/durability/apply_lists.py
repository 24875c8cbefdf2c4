"""A restore's lists made of hand-outs: pool logs, user code lists, and the per-user
counts of a reward (per_user_limit): the missed changes appended or applied the way the
scripts would have; a list a release shifted under the reader is rebuilt from the issued
records (durability.apply_pools)."""

from __future__ import annotations

from collections import defaultdict

from codepool.durability.plan import NO_CLOCK, Clocks, Op, ProjectJournal, held, reflected
from codepool.durability.snapshot_format import HashSlice
from codepool.durability.writer import Writer


class HandoutLists:
    """One project's pool logs, user code lists and reward user counts during a restore."""

    def __init__(self, project: str, journal: ProjectJournal, w: Writer, clocks: Clocks) -> None:
        self.project = project
        self.j = journal
        self.w = w
        self.clocks = clocks
        self.lists_done: set[str] = set()
        self.rebuild: set[str] = set()  # list keys to rebuild from issued (see list_end)
        self.reward_users_done: set[str] = set()
        self.reward_users_seen: dict[str, set[bytes]] = defaultdict(set)

    def _list_ops(self, kind: str, owner: str) -> list[Op]:
        if kind == "log":
            ops = [o for o in self.j.by_pool.get(owner, []) if o.kind in ("issue", "release")]
        else:
            ops = [
                o for o in self.j.by_user.get(owner.encode(), []) if o.kind in ("issue", "release")
            ]
        # The journal's order is Redis's (records.redis_time), whichever host wrote it;
        # `when` is the writing host's clock, which may be off.
        return sorted(ops, key=lambda o: o.order)

    async def list_end(self, key: str, kind: str, owner: str) -> None:
        if key in self.lists_done:
            return
        self.lists_done.add(key)
        first = self.clocks.first.get(key, NO_CLOCK)
        last = self.clocks.last.get(key, NO_CLOCK)
        for op in self._list_ops(kind, owner):
            if op.kind == "release" and reflected(op, last) and not reflected(op, first):
                # A release while the list was read: its LREM shifted the list under the
                # reader, which may have skipped an entry. Rebuilt from the records.
                self.rebuild.add(key)
            if reflected(op, last):
                continue
            if op.kind == "issue":
                await self.w.call("RPUSH", key, op.code)
            else:
                await self.w.call("LREM", key, -1, op.code)

    # -- per-user reward counts -----------------------------------------------------

    async def reward_users(self, frame: HashSlice, reward: str) -> None:
        clock = frame.clock or NO_CLOCK
        ops_by_user: dict[bytes, list[Op]] = defaultdict(list)
        for op in self.j.by_reward.get(reward.encode(), []):
            ops_by_user[op.user].append(op)
        out: list[bytes] = []
        for user, raw in zip(frame.flat[::2], frame.flat[1::2], strict=True):
            ops = ops_by_user.get(user)
            if ops:
                self.reward_users_seen[reward].add(user)
                raw = str(held(int(raw), ops, clock)).encode()  # noqa: PLW2901
            out += [user, raw]
        if out:
            await self.w.call("HSET", frame.key, *out)

    async def reward_users_end(self, key: str, reward: str) -> None:
        if reward in self.reward_users_done:
            return
        self.reward_users_done.add(reward)
        first = self.clocks.first.get(key, NO_CLOCK)
        ops_by_user: dict[bytes, list[Op]] = defaultdict(list)
        for op in self.j.by_reward.get(reward.encode(), []):
            if op.user not in self.reward_users_seen[reward]:
                ops_by_user[op.user].append(op)
        for user, ops in ops_by_user.items():
            # issue.lua's HINCRBY makes the field; a release only ever lowers it to 0.
            if any(op.kind == "issue" and not reflected(op, first) for op in ops):
                await self.w.call("HSET", key, user, held(0, ops, first))
