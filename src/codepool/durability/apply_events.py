"""A restore's events: the project stream as the snapshot had it, each event with a user
indexed under that user again (snapshots leave the per-user lists out), and the events
of the journaled changes the snapshot missed, queued for whoever they would have told."""

from __future__ import annotations

from typing import Any

from codepool import keys
from codepool.durability.plan import US, Op, ProjectJournal, reflected
from codepool.durability.snapshot_format import Clock
from codepool.durability.writer import Writer

EVENTS_PER_CALL = 500  # ~8,000 script arguments


def event_fields(op: Op) -> list[bytes]:
    """The event a script wrote for a change (issue.lua, redeem.lua, release.lua; alerts:
    fire_alerts in lua/includes/common.lua)."""
    if op.kind == "alert":
        if op.code.startswith(b"soon:"):
            _, seconds, rate, empty_at = op.code.split(b":")
            return [
                b"type", b"POOL_EMPTY_SOON", b"time", op.when, b"pool_id", op.pool.encode(),
                b"available", str(op.available).encode(), b"rate_per_minute", rate,
                b"empty_at", empty_at, b"threshold_seconds", seconds,
            ]  # fmt: skip
        if op.code == b"exhausted":
            return [
                b"type", b"POOL_EXHAUSTED", b"time", op.when, b"pool_id", op.pool.encode(),
                b"available", b"0",
            ]  # fmt: skip
        return [
            b"type", b"POOL_LOW", b"time", op.when, b"pool_id", op.pool.encode(),
            b"threshold", op.code, b"available", str(op.available).encode(),
        ]  # fmt: skip
    if op.kind == "issue":
        return [
            b"type", b"REDEEMED_VOUCHER", b"time", op.when, b"user_id", op.user,
            b"reward_id", op.reward, b"pool_id", op.pool.encode(), b"code", op.code,
            b"purchase_id", op.purchase,
        ] + ([b"hold_expires_at", op.hold] if op.hold else [])  # fmt: skip
    kind = b"VOUCHER_USED" if op.kind == "redeem" else b"VOUCHER_RELEASED"
    return [
        b"type", kind, b"time", op.when, b"code", op.code, b"pool_id", op.pool.encode(),
        b"user_id", op.user, b"reward_id", op.reward, b"purchase_id", op.purchase,
    ] + ([b"reason", op.reason] if op.reason else [])  # fmt: skip


def stream_id(raw: bytes) -> tuple[int, int]:
    ms, _, seq = raw.partition(b"-")
    return int(ms), int(seq or 0)


class Events:
    """One project's events during a restore."""

    def __init__(self, project: str, journal: ProjectJournal, w: Writer) -> None:
        self.project = project
        self.j = journal
        self.w = w
        self.done = False
        self.last_event: tuple[int, int] = (0, 0)
        self.missed: list[tuple[str, list[bytes]]] = []  # (stream id, fields)

    async def entries(self, key: str, entries: list[tuple[bytes, list[bytes]]]) -> None:
        """Entries of the project stream, as the snapshot read them."""
        for entry_id, fields in entries:
            await self.w.call("XADD", key, entry_id, *fields)
            await self.user_event(entry_id, fields)
        if entries:
            self.last_event = max(self.last_event, stream_id(entries[-1][0]))

    async def user_event(self, entry_id: bytes, fields: list[bytes]) -> None:
        """An event of the project stream with a user goes into that user's index too, as
        add_user_event (lua/includes/common.lua) writes and trims it."""
        named = dict(zip(fields[::2], fields[1::2], strict=True))
        user = named.get(b"user_id")
        if user:
            key = keys.user_events(self.project, user.decode())
            await self.w.call("RPUSH", key, US.join([entry_id, named[b"type"]]))
            await self.w.call("LTRIM", key, -self.w.user_events_maxlen, -1)

    async def end(self, clock: Clock) -> None:
        if self.done:
            return
        self.done = True
        missed = [
            op
            for op in self.j.ops
            if op.kind not in ("replay", "confirm")
            and not (op.kind == "issue" and not op.reward)
            and not reflected(op, clock)
        ]
        missed.sort(key=lambda o: o.order)  # Redis's order (see apply_lists._list_ops)
        last = self.last_event
        for op in missed:
            ms = int(float(op.when or b"0") * 1000)
            last = (ms, 0) if (ms, 0) > last else (last[0], last[1] + 1)
            self.missed.append((f"{last[0]}-{last[1]}", event_fields(op)))
        self.last_event = last

    async def write_missed(self) -> None:
        """The missed changes' events, and their outbox entries for whoever hears of them
        (the project webhook, a pool's notify targets; restored by now), the way the
        scripts that first wrote them did: lua/restore_events.lua."""
        names = [keys.events(self.project), keys.outbox(self.project), keys.webhook(self.project)]
        if self.missed:
            self.w.keys.add(names[0])
        for i in range(0, len(self.missed), EVENTS_PER_CALL):
            chunk = self.missed[i : i + EVENTS_PER_CALL]
            args: list[Any] = [
                keys.pool(self.project, "\0"),
                len(chunk),
                keys.user_events(self.project, "\0"),
                self.w.user_events_maxlen,
            ]
            for event_id, fields in chunk:
                args += [event_id, len(fields), *fields]
            await self.w.scripts.run("restore_events", names, args)
