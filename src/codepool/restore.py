"""Restore: a snapshot plus the journal written since, back into an empty Redis.

The snapshot was read slice by slice while codes were handed out (codepool.snapshot);
each slice carries the clock it was read at. The journal (codepool.journal) holds every
hand-out, redeem and release, each with its counter. A journaled change is *reflected*
in a slice when its counter is below that slice's clock:

    hand-out at position x      reflected iff x < popped      (of its pool)
    release pushing at position y reflected iff y < end
    redeem number s              reflected iff s <= redeemed

Everything not reflected is applied, exactly once, to the data of that slice:

- available list: codes are kept by position; a position the journal says was handed
  out is dropped, so no acknowledged code is ever available again; a release the
  snapshot missed is put back at its position. The issued hash is read before the
  available lists, so a code read as available cannot already be in it.
- issued records: missed hand-outs are added, missed redeems and releases applied.
- pool log, user code lists, per-user reward counts, idempotency records and events:
  missed changes appended or applied the way the scripts would have. Missed events,
  and the low-stock alerts missed hand-outs fired (the journal keeps them with the
  hand-outs; reflected with them), go through lua/restore_events.lua, which queues
  them in the outbox for whoever the lost writes would have told.
- per-user event indexes (keys.user_events; snapshots leave them out): rebuilt from the
  project stream as it is written back, each event with a user under the same id, and
  missed events through restore_events.lua, which writes both. A user's events older
  than the project stream keeps (settings.events_maxlen) are not rebuilt.
- pool hashes: `armed` from the restored available count (a threshold is armed
  exactly while more than it is available); `soon_armed` (empty-soon alerts) as the
  snapshot had it, less the thresholds whose alerts the journal fires again, plus those
  the forecast at the restore (restored counters, restored stock) is above.
- per-minute counters (one string per pool and day, read with the clock): the
  journaled hand-outs, redeems and releases a day's read does not reflect are counted
  into the minute of their time; a day the snapshot has no key for is counted from
  the journal alone. So the series stays exact across a restore.
- the code index (keys.code_index; snapshots leave it out): rebuilt from the restored
  available lists before the restore is marked complete (_rebuild_code_index).
- counters are recounted from what was written (total = available + assigned +
  redeemed), so they are exact whatever the snapshot's timing.

A pool the snapshot does not know (created after it, or no snapshot at all) comes back
as a placeholder ("restored-<id>": nothing available, its hand-outs as issued), so the
admin can rename it and upload again with duplicates=skip.

The restore runs under the ``cp:restoring`` marker; pool hashes (without which no code
can be handed out) are written last per project and the project registry last of all,
then ``cp:epoch`` marks the state complete. A restore that dies half-way is redone from
scratch (everything of codepool is flushed first). Only the snapshot's own records are
replayed on top of it (records written since its start), so restoring twice gives the
same state.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
from redis.asyncio import Redis

from codepool import keys
from codepool.journal import ConfirmRecord, IssueRecord, Record, RedeemRecord
from codepool.scripts import Scripts
from codepool.settings import Settings
from codepool.snapshot import (
    FORMAT_VERSION,
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
    SnapshotError,
    StreamSlice,
    StringKey,
    ZSetSlice,
    classify,
    read_frames,
    scan_keys,
)
from codepool.store import codeindex, stats

log = logging.getLogger(__name__)

RS, US = b"\x1e", b"\x1f"
_NO_CLOCK: Clock = {}
WRITE_BATCH = 1_000
PUSH_CHUNK = 10_000
PLACEHOLDER_PREFIX = "restored-"
EVENTS_PER_CALL = 500  # ~8,000 script arguments
USER_EVENTS_MAXLEN = Settings().user_events_maxlen
_COUNTED = {"issue": 0, "redeem": 1, "release": 2}  # op kind -> counter kind (stats.py)
_DAY_BYTES = stats.MINUTES_PER_DAY * stats.KINDS * stats.CELL


class RestoreStats(msgspec.Struct, kw_only=True):
    snapshot: str | None
    journal_records: int
    projects: int = 0
    keys: int = 0
    codes_available: int = 0
    journal_handouts: int = 0
    placeholders: int = 0
    seconds: float = 0.0


class Op(NamedTuple):
    """One journaled change of one code instance, or a low-stock alert ("alert": code
    is the threshold or b"exhausted", counter the first position its call handed out)."""

    kind: str  # issue | replay | redeem | release | alert | confirm
    pool: str
    code: bytes
    counter: int  # issue: position; release: position pushed at; redeem: seq; replay: -1
    at: bytes
    user: bytes
    reward: bytes
    purchase: bytes
    when: bytes  # issue/replay/alert: at; redeem: redeemed_at; release: released_at
    order: int  # place in the journal, to keep causal order among equal times
    available: int = -1  # alert: the pool's available count it fired at
    hold: bytes = b""  # issue/replay: hold_expires_at of a held hand-out
    reason: bytes = b""  # release: "hold_expired" for the hold reaper's


def reflected(op: Op, clock: Clock) -> bool:
    popped, end, redeemed = clock.get(op.pool, (0, 0, 0))
    if op.kind in ("issue", "alert"):  # an alert is written in its hand-outs' script call
        return op.counter < popped
    if op.kind == "release":
        return op.counter < end
    if op.kind == "redeem":
        return op.counter <= redeemed
    # replay: decided by the instance being there or not; confirm: applying it again
    # changes nothing (it drops a hold that is there, see apply_ops).
    return False


class _ProjectJournal:
    """The journal's changes of one project, indexed the ways the restore needs."""

    def __init__(self) -> None:
        self.by_code: dict[bytes, list[Op]] = defaultdict(list)
        self.by_pool: dict[str, list[Op]] = defaultdict(list)
        self.by_user: dict[bytes, list[Op]] = defaultdict(list)
        self.by_reward: dict[bytes, list[Op]] = defaultdict(list)
        # pool -> position -> code of every journaled hand-out
        self.handed_out: dict[str, dict[int, bytes]] = defaultdict(dict)
        self.releases: dict[str, list[Op]] = defaultdict(list)
        self.idempotency: dict[str, tuple[str, float]] = {}
        self.ops: list[Op] = []

    def add(self, op: Op) -> None:
        if op.kind == "alert":  # an event only: no code, list or count changes
            self.ops.append(op)
            return
        if op.kind == "confirm":  # the issued record only
            self.ops.append(op)
            self.by_code[op.code].append(op)
            return
        if op.kind == "issue":
            if op.counter in self.handed_out[op.pool]:
                return  # the same hand-out twice (a record read twice): once is enough
            self.handed_out[op.pool][op.counter] = op.code
        self.ops.append(op)
        self.by_code[op.code].append(op)
        self.by_pool[op.pool].append(op)
        if op.user:
            self.by_user[op.user].append(op)
        if op.reward and op.user:
            self.by_reward[op.reward].append(op)
        if op.kind == "release":
            self.releases[op.pool].append(op)


def index_journal(records: Iterable[Record]) -> dict[str, _ProjectJournal]:
    projects: dict[str, _ProjectJournal] = defaultdict(_ProjectJournal)
    order = 0
    for record in records:
        pj = projects[record.project]
        if isinstance(record, IssueRecord):
            for h in record.handouts:
                for k, code in enumerate(h.codes):
                    order += 1
                    pj.add(
                        Op(
                            "issue" if h.position >= 0 else "replay",
                            record.pool,
                            code.encode(),
                            h.position + k if h.position >= 0 else -1,
                            h.at.encode(),
                            h.user.encode(),
                            h.reward.encode(),
                            h.purchase.encode(),
                            h.at.encode(),
                            order,
                            hold=h.hold.encode(),
                        )
                    )
                if h.idem_key:
                    pj.idempotency.setdefault(h.idem_key, (h.idem_value, h.idem_expires))
            # The call's alerts share the fate of its first hand-out (positions grow in
            # handout order; replays have none) and its time.
            first = next((h for h in record.handouts if h.position >= 0), None)
            if first is not None:
                at = first.at.encode()
                for alert in record.alerts:
                    order += 1
                    pj.add(
                        Op("alert", record.pool, alert.encode(), first.position, at,
                           b"", b"", b"", at, order, record.available)
                    )  # fmt: skip
        elif isinstance(record, ConfirmRecord):
            order += 1
            pj.add(
                Op("confirm", record.pool, record.code.encode(), -1, record.at.encode(),
                   record.user.encode(), record.reward.encode(), record.purchase.encode(),
                   b"", order)
            )  # fmt: skip
        else:
            order += 1
            is_redeem = isinstance(record, RedeemRecord)
            pj.add(
                Op(
                    "redeem" if is_redeem else "release",
                    record.pool,
                    record.code.encode(),
                    record.seq if isinstance(record, RedeemRecord) else record.position,
                    record.at.encode(),
                    record.user.encode(),
                    record.reward.encode(),
                    record.purchase.encode(),
                    (
                        record.redeemed_at
                        if isinstance(record, RedeemRecord)
                        else record.released_at
                    ).encode(),
                    order,
                    reason=b"" if isinstance(record, RedeemRecord) else record.reason.encode(),
                )
            )
    return projects


def _new_instance(op: Op) -> list[bytes]:
    """An issued record entry as issue.lua writes it (hold_expires_at only when held)."""
    inst = [op.pool.encode(), b"a", op.at, b"", op.user, op.reward, op.purchase]
    return [*inst, op.hold] if op.hold else inst


def _same(inst: list[bytes], op: Op) -> bool:
    return (
        inst[0] == op.pool.encode()
        and inst[2] == op.at
        and inst[4] == op.user
        and inst[5] == op.reward
        and inst[6] == op.purchase
    )


def _identity(op: Op) -> tuple[str, bytes, bytes, bytes, bytes]:
    """What tells one instance of a code from another (as _same compares)."""
    return op.pool, op.at, op.user, op.reward, op.purchase


def apply_ops(record: bytes | None, ops: list[Op], clock: Clock) -> tuple[bytes | None, list[Op]]:
    """A code's issued record with the changes ``clock`` does not reflect applied, in the
    order the scripts made them; also the replayed hand-outs it had to add (their codes
    must leave the available list by value: their position is unknown)."""
    instances = [r.split(US) for r in record.split(RS)] if record else []
    added: list[Op] = []
    todo = [op for op in ops if not reflected(op, clock)]
    # A replayed answer is evidence of a hand-out only when the journal lacks that
    # hand-out's own record (its write failed). If it has it, that record decides; if
    # it has the instance's release, the instance is gone, whether the release is
    # reflected or not: a replay must not bring a released code back from the pool.
    known = {_identity(op) for op in ops if op.kind in ("issue", "release")}
    # A hand-out precedes the redeem or release of the same instance, whatever the
    # journal times say; instances are told apart by their identity fields.
    # A confirm comes after its hand-out and before a redeem or release of it.
    rank = {"issue": 0, "replay": 1, "confirm": 2, "redeem": 3, "release": 3}
    for op in sorted(todo, key=lambda o: (rank[o.kind], o.order)):
        if op.kind == "issue":
            instances.append(_new_instance(op))
        elif op.kind == "replay":
            if _identity(op) not in known and not any(_same(i, op) for i in instances):
                instances.append(_new_instance(op))
                added.append(op)
        elif op.kind == "confirm":  # the matching hold that ends first, as confirm.lua
            held = [i for i in instances if i[1] == b"a" and len(i) > 7 and _same(i, op)]
            if held:
                del min(held, key=lambda i: float(i[7]))[7:]
        elif op.kind == "redeem":
            for inst in instances:
                if inst[1] == b"a" and _same(inst, op):
                    inst[1], inst[3] = b"r", op.when
                    del inst[7:]  # a redeem ends a hold (redeem.lua)
                    break
        else:  # release: the most recent matching assigned instance, as release.lua picks
            for k in range(len(instances) - 1, -1, -1):
                if instances[k][1] == b"a" and _same(instances[k], op):
                    del instances[k]
                    break
    if not instances:
        return None, added
    return RS.join(US.join(i) for i in instances), added


class _Writer:
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


def _event_fields(op: Op) -> list[bytes]:
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


def _stream_id(raw: bytes) -> tuple[int, int]:
    ms, _, seq = raw.partition(b"-")
    return int(ms), int(seq or 0)


class _Project:
    """Restores one project from its frames (in snapshot order) and its journal."""

    def __init__(self, project: str, journal: _ProjectJournal, w: _Writer) -> None:
        self.project = project
        self.j = journal
        self.w = w
        self.pool_hashes: dict[str, dict[bytes, bytes]] = {}
        self.max_popped: dict[str, int] = defaultdict(int)
        self.first_clock: dict[str, Clock] = {}
        self.last_clock: dict[str, Clock] = {}
        self.issued_seen: set[bytes] = set()
        self.replays_added: dict[bytes, list[Op]] = {}
        self.keys_seen: set[str] = set()
        self.issued_done = False
        self.value_removals: dict[str, Counter[bytes]] = defaultdict(Counter)
        self.avail_done: set[str] = set()
        self.lists_done: set[str] = set()
        self.rebuild: set[str] = set()  # list keys to rebuild from issued (see _list_end)
        self.reward_users_done: set[str] = set()
        self.reward_users_seen: dict[str, set[bytes]] = defaultdict(set)
        self.idem_seen: set[str] = set()
        self.events_done = False
        self.last_event: tuple[int, int] = (0, 0)
        self.missed_events: list[tuple[str, list[bytes]]] = []  # (stream id, fields)
        self.avail_len: dict[str, int] = defaultdict(int)
        # available-list streaming state, per pool
        self._sorted_releases: dict[str, list[Op]] = {}
        self._next_release: dict[str, int] = defaultdict(int)
        self.stats_available = 0
        self.stored = 0  # code instances of the restored pools (keys.project_stored)
        self._counted: dict[str, list[tuple[int, Op]]] | None = None
        self.counters_done: set[str] = set()

    def _clock(self, key: str, clock: Clock | None) -> None:
        if clock is None:
            return
        self.first_clock.setdefault(key, clock)
        self.last_clock[key] = clock
        for pool, (popped, _, _) in clock.items():
            self.max_popped[pool] = max(self.max_popped[pool], popped)

    # -- frames ---------------------------------------------------------------------

    async def frame(self, frame: Frame) -> None:
        if isinstance(frame, Counters):
            await self._counters(frame)
            return
        if isinstance(frame, Avail):
            await self._avail(frame)
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
            self._clock(frame.key, frame.clock)
            if kind.kind == "issued":
                await self._issued(frame)
            elif kind.kind == "pool":
                flat = frame.flat
                self.pool_hashes[kind.id] = dict(zip(flat[::2], flat[1::2], strict=True))
            elif kind.kind == "reward_users":
                await self._reward_users(frame, kind.id)
            else:
                await self.w.call("HSET", frame.key, *frame.flat)
        elif isinstance(frame, ListSlice):
            self._clock(frame.key, frame.clock)
            await self.w.push(frame.key, frame.items)
        elif isinstance(frame, SetSlice):
            await self.w.call("SADD", frame.key, *frame.members)
        elif isinstance(frame, ZSetSlice):
            await self.w.call("ZADD", frame.key, *reversed_pairs(frame.flat))
        elif isinstance(frame, StreamSlice):
            self._clock(frame.key, frame.clock)
            for entry_id, fields in frame.entries:
                await self.w.call("XADD", frame.key, entry_id, *fields)
                if kind.kind == "events":
                    await self._user_event(entry_id, fields)
            if frame.entries and kind.kind == "events":
                self.last_event = max(self.last_event, _stream_id(frame.entries[-1][0]))
        elif isinstance(frame, StringKey):
            if kind.kind == "idem":
                self.idem_seen.add(frame.key)
            await self._string(frame.key, frame.value.decode(), frame.expires_ms / 1000)

    async def _user_event(self, entry_id: bytes, fields: list[bytes]) -> None:
        """An event of the project stream with a user goes into that user's index too, as
        add_user_event (lua/includes/common.lua) writes and trims it."""
        named = dict(zip(fields[::2], fields[1::2], strict=True))
        user = named.get(b"user_id")
        if user:
            key = keys.user_events(self.project, user.decode())
            await self.w.call("RPUSH", key, US.join([entry_id, named[b"type"]]))
            await self.w.call("LTRIM", key, -self.w.user_events_maxlen, -1)

    async def _string(self, key: str, value: str, expires: float) -> None:
        if expires == 0:
            await self.w.call("SET", key, value)
        elif expires > time.time():
            await self.w.call("SET", key, value, "PXAT", int(expires * 1000))

    async def _key_end(self, end: KeyEnd) -> None:
        kind = classify(end.key)
        if kind is None:
            return
        self._clock(end.key, end.clock)
        if kind.kind == "issued":
            await self._issued_end(end.clock or _NO_CLOCK)
        elif kind.kind == "avail":
            await self._avail_end(kind.id)
        elif kind.kind in ("log", "user"):
            await self._list_end(end.key, kind.kind, kind.id)
        elif kind.kind == "reward_users":
            await self._reward_users_end(end.key, kind.id)
        elif kind.kind == "events":
            await self._events_end(end.clock or _NO_CLOCK)
        if end.expires_ms:
            await self.w.call("PEXPIREAT", end.key, end.expires_ms)

    # -- issued ---------------------------------------------------------------------

    async def _issued(self, frame: HashSlice) -> None:
        clock = frame.clock or _NO_CLOCK
        out: list[bytes] = []
        for code, record in zip(frame.flat[::2], frame.flat[1::2], strict=True):
            ops = self.j.by_code.get(code)
            if ops is None:
                out += [code, record]
                continue
            self.issued_seen.add(code)
            new, added = apply_ops(record, ops, clock)
            # HSCAN may return a field twice; the later read (and its clock) decides.
            self.replays_added[code] = added
            if new is None:
                await self.w.call("HDEL", frame.key, code)
            else:
                out += [code, new]
        if out:
            await self.w.call("HSET", frame.key, *out)

    async def _issued_end(self, clock: Clock) -> None:
        """Codes with journaled changes that no slice held: their changes since the scan
        began (a code present for the whole scan is in it; one absent was made later)."""
        if self.issued_done:
            return
        self.issued_done = True
        first = self.first_clock.get(keys.issued(self.project), clock)
        out: list[bytes] = []
        for code, ops in self.j.by_code.items():
            if code in self.issued_seen:
                continue
            new, self.replays_added[code] = apply_ops(None, ops, first)
            if new is not None:
                out += [code, new]
            if len(out) >= 2 * WRITE_BATCH:
                await self.w.call("HSET", keys.issued(self.project), *out)
                out = []
        if out:
            await self.w.call("HSET", keys.issued(self.project), *out)
        # A replayed answer added back to the records must leave the available list.
        for added in self.replays_added.values():
            for op in added:
                self.value_removals[op.pool][op.code] += 1

    # -- per-minute counters --------------------------------------------------------

    def _counter_ops(self) -> dict[str, list[tuple[int, Op]]]:
        """Counter key -> (cell, change) of every journaled hand-out, redeem, release."""
        if self._counted is None:
            self._counted = defaultdict(list)
            once: set[tuple[str, str, int]] = set()
            for op in self.j.ops:
                kind = _COUNTED.get(op.kind)
                if kind is None:
                    continue
                # A hand-out is indexed once per position already; a redeem's number
                # and a release's position are unique per pool too.
                if (op.kind, op.pool, op.counter) in once:
                    continue
                once.add((op.kind, op.pool, op.counter))
                day, cell = stats.cell_of(float(op.when), kind)
                self._counted[keys.pool_stats(self.project, op.pool, day)].append((cell, op))
        return self._counted

    async def _counters(self, frame: Counters) -> None:
        self.counters_done.add(frame.key)
        value = bytearray(frame.value.ljust(_DAY_BYTES, b"\0"))
        for cell, op in self._counter_ops().get(frame.key, []):
            if not reflected(op, frame.clock):
                _bump(value, cell)
        await self._write_counters(frame.key, bytes(value), frame.expires_ms)

    async def _counters_end(self) -> None:
        """Days the snapshot has no counters of: every journaled change of the day (its
        key did not exist when the snapshot listed the keys, so all came later)."""
        for key, cells in self._counter_ops().items():
            if key in self.counters_done:
                continue
            value = bytearray(_DAY_BYTES)
            for cell, _ in cells:
                _bump(value, cell)
            day = int(key.rsplit(":", 1)[1])
            await self._write_counters(key, bytes(value), stats.expires_at(day) * 1000)

    async def _write_counters(self, key: str, value: bytes, expires_ms: int) -> None:
        if not expires_ms:
            await self.w.call("SET", key, value)
        elif expires_ms > time.time() * 1000:
            await self.w.call("SET", key, value, "PXAT", expires_ms)

    async def _soon_armed(self, pool: str, fields: dict[bytes, bytes], available: int) -> bytes:
        soon = [t for t in fields.get(b"soon", b"").decode().split(",") if t]
        if not soon:
            return b""
        armed = set(fields.get(b"soon_armed", b"").decode().split(","))
        clock = self.last_clock.get(keys.pool(self.project, pool), _NO_CLOCK)
        for op in self.j.ops:  # alerts the journal fires again were disarmed by them
            soon_alert = op.kind == "alert" and op.code.startswith(b"soon:")
            if soon_alert and op.pool == pool and not reflected(op, clock):
                armed.discard(op.code.split(b":")[1].decode())
        at = time.time()
        counts = await stats.recent_issued(self.w.client, self.project, pool, at)
        return ",".join(stats.armed_soon(soon, armed, counts, at, available)).encode()

    # -- available lists ------------------------------------------------------------

    def _pool_releases(self, pool: str) -> list[Op]:
        if pool not in self._sorted_releases:
            self._sorted_releases[pool] = sorted(
                self.j.releases.get(pool, []), key=lambda o: o.counter
            )
        return self._sorted_releases[pool]

    async def _emit(self, pool: str, codes: list[bytes]) -> None:
        removals = self.value_removals.get(pool)
        if removals:
            kept = []
            for code in codes:
                if removals.get(code, 0) > 0:
                    removals[code] -= 1
                else:
                    kept.append(code)
            codes = kept
        if codes:
            await self.w.push(keys.pool_available(self.project, pool), codes)
            self.avail_len[pool] += len(codes)

    async def _releases(self, pool: str, below: int | None, captured_from: int | None) -> None:
        """Codes put back by journaled releases at positions below ``below`` (all: None).

        Those at or above ``captured_from`` lie in the slice being written, which holds
        them (or not, if they went out again); the others lie where no slice was read
        (codes popped before their slice was read, or pushed after the last one) and go
        back now, in position order, unless the journal says they went out again.
        """
        releases = self._pool_releases(pool)
        handed = self.j.handed_out.get(pool, {})
        i = self._next_release[pool]
        back: list[bytes] = []
        while i < len(releases) and (below is None or releases[i].counter < below):
            op = releases[i]
            i += 1
            held = captured_from is not None and op.counter >= captured_from
            if not held and op.counter not in handed:
                back.append(op.code)
        self._next_release[pool] = i
        await self._emit(pool, back)

    async def _avail(self, frame: Avail) -> None:
        await self._issued_end(frame.clock)  # (a no-op once the issued section ended)
        self._clock(frame.key, frame.clock)
        pool = frame.pool
        await self._releases(pool, frame.start + frame.count, frame.start)
        handed = self.j.handed_out.get(pool, {})
        codes = frame.codes.split(b"\n")
        if handed:
            kept = []
            for offset, code in enumerate(codes):
                journaled = handed.get(frame.start + offset)
                if journaled is None:
                    kept.append(code)
                elif journaled != code:
                    # Positions of another history (should not happen): the journal is
                    # sure this position went out, so it stays out.
                    log.warning(
                        "restore: position %d of pool %s holds %r, journal says %r",
                        frame.start + offset, pool, code, journaled,
                    )  # fmt: skip
            codes = kept
        await self._emit(pool, codes)

    async def _avail_end(self, pool: str) -> None:
        if pool in self.avail_done:
            return
        self.avail_done.add(pool)
        await self._releases(pool, None, None)

    # -- lists: pool logs and user code lists -----------------------------------------

    def _list_ops(self, kind: str, owner: str) -> list[Op]:
        if kind == "log":
            ops = [o for o in self.j.by_pool.get(owner, []) if o.kind in ("issue", "release")]
        else:
            ops = [
                o for o in self.j.by_user.get(owner.encode(), []) if o.kind in ("issue", "release")
            ]
        return sorted(ops, key=lambda o: (float(o.when or b"0"), o.order))

    async def _list_end(self, key: str, kind: str, owner: str) -> None:
        if key in self.lists_done:
            return
        self.lists_done.add(key)
        first = self.first_clock.get(key, _NO_CLOCK)
        last = self.last_clock.get(key, _NO_CLOCK)
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

    async def _reward_users(self, frame: HashSlice, reward: str) -> None:
        clock = frame.clock or _NO_CLOCK
        ops_by_user: dict[bytes, list[Op]] = defaultdict(list)
        for op in self.j.by_reward.get(reward.encode(), []):
            ops_by_user[op.user].append(op)
        out: list[bytes] = []
        for user, raw in zip(frame.flat[::2], frame.flat[1::2], strict=True):
            ops = ops_by_user.get(user)
            if ops:
                self.reward_users_seen[reward].add(user)
                raw = str(_held(int(raw), ops, clock)).encode()  # noqa: PLW2901
            out += [user, raw]
        if out:
            await self.w.call("HSET", frame.key, *out)

    async def _reward_users_end(self, key: str, reward: str) -> None:
        if reward in self.reward_users_done:
            return
        self.reward_users_done.add(reward)
        first = self.first_clock.get(key, _NO_CLOCK)
        ops_by_user: dict[bytes, list[Op]] = defaultdict(list)
        for op in self.j.by_reward.get(reward.encode(), []):
            if op.user not in self.reward_users_seen[reward]:
                ops_by_user[op.user].append(op)
        for user, ops in ops_by_user.items():
            # issue.lua's HINCRBY makes the field; a release only ever lowers it to 0.
            if any(op.kind == "issue" and not reflected(op, first) for op in ops):
                await self.w.call("HSET", key, user, _held(0, ops, first))

    # -- events ---------------------------------------------------------------------

    async def _events_end(self, clock: Clock) -> None:
        if self.events_done:
            return
        self.events_done = True
        missed = [
            op
            for op in self.j.ops
            if op.kind not in ("replay", "confirm")
            and not (op.kind == "issue" and not op.reward)
            and not reflected(op, clock)
        ]
        missed.sort(key=lambda o: (float(o.when or b"0"), o.order))
        last = self.last_event
        for op in missed:
            ms = int(float(op.when or b"0") * 1000)
            last = (ms, 0) if (ms, 0) > last else (last[0], last[1] + 1)
            self.missed_events.append((f"{last[0]}-{last[1]}", _event_fields(op)))
        self.last_event = last

    async def _write_missed_events(self) -> None:
        """The missed changes' events, and their outbox entries for whoever hears of them
        (the project webhook, a pool's notify targets; restored by now), the way the
        scripts that first wrote them did: lua/restore_events.lua."""
        names = [keys.events(self.project), keys.outbox(self.project), keys.webhook(self.project)]
        if self.missed_events:
            self.w.keys.add(names[0])
        for i in range(0, len(self.missed_events), EVENTS_PER_CALL):
            chunk = self.missed_events[i : i + EVENTS_PER_CALL]
            args: list[Any] = [
                keys.pool(self.project, "\0"),
                len(chunk),
                keys.user_events(self.project, "\0"),
                self.w.user_events_maxlen,
            ]
            for event_id, fields in chunk:
                args += [event_id, len(fields), *fields]
            await self.w.scripts.run("restore_events", names, args)

    # -- the end --------------------------------------------------------------------

    async def finish(self, end_clock: Clock) -> int:
        """Everything the snapshot had no key for, then the pool hashes; returns the
        number of placeholder pools."""
        await self._issued_end(end_clock)
        journal_pools = set(self.j.by_pool)
        placeholders = sorted(journal_pools - set(self.pool_hashes))
        for pool in sorted(set(self.pool_hashes) | journal_pools):
            await self._avail_end(pool)
            await self._list_end(keys.pool_log(self.project, pool), "log", pool)
        for user in self.j.by_user:
            name = user.decode()
            await self._list_end(keys.user_codes(self.project, name), "user", name)
        for reward in self.j.by_reward:
            name = reward.decode()
            if keys.reward(self.project, name) in self.keys_seen:  # not a deleted reward
                await self._reward_users_end(keys.reward_users(self.project, name), name)
        for key, (value, expires) in self.j.idempotency.items():
            if key not in self.idem_seen:
                await self._string(key, value, expires)
        await self._events_end(_NO_CLOCK)
        await self._counters_end()
        await self.w.flush()
        counts = await self._recount_and_rebuild()
        for pool in sorted(set(self.pool_hashes) | journal_pools):
            await self._pool_hash(pool, counts.get(pool, (0, 0)), pool in placeholders)
        # The quota's count is what the restored pools hold, not the snapshot's counter
        # (read at another moment of a fuzzy snapshot, maybe mid-commit).
        await self.w.call("SET", keys.project_stored(self.project), str(self.stored))
        await self.w.flush()
        # Through a script, with every key of the project in place: the same outbox rules
        # as the scripts whose writes were lost.
        await self._write_missed_events()
        return len(placeholders)

    async def _recount_and_rebuild(self) -> dict[str, tuple[int, int]]:
        """Assigned and redeemed per pool, counted from the issued records now in Redis
        (exact whatever the snapshot's timing); and the lists to rebuild, rebuilt."""
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        wanted: dict[str, list[tuple[float, int, bytes]]] = {key: [] for key in self.rebuild}
        issued = keys.issued(self.project)
        seq = 0
        holds: list[bytes] = []  # ZADD arguments: hold_expires_at, code, ...
        async for code, record in self.w.client.hscan_iter(issued, count=1000):
            for raw in record.split(RS):
                f = raw.split(US)
                pool = f[0].decode()
                counts[pool][0 if f[1] == b"a" else 1] += 1
                if len(f) > 7 and f[1] == b"a":
                    holds += [f[7], code]
                if wanted:
                    seq += 1
                    for key in (
                        keys.pool_log(self.project, pool),
                        keys.user_codes(self.project, f[4].decode()) if f[4] else "",
                    ):
                        if key in wanted:
                            wanted[key].append((float(f[2]), seq, code))
        # Every hold in the records is in the holds set, scored no later than it ends
        # (LT: an entry the snapshot had keeps its score, as issue.lua's ZADD LT does).
        for i in range(0, len(holds), 2 * PUSH_CHUNK):
            await self.w.call(
                "ZADD", keys.holds(self.project), "LT", *holds[i : i + 2 * PUSH_CHUNK]
            )
        for key, entries in wanted.items():
            # Hand-out order is assigned time; within one script call (one time) it is
            # the order the snapshot read, which the skip did not change.
            read: list[bytes] = await self.w.client.lrange(key, 0, -1)  # type: ignore[assignment]
            where: dict[bytes, int] = {}
            for index, code in enumerate(read):
                where.setdefault(code, index)
            # An entry the reader skipped goes after the one the records list before it.
            entries.sort(key=lambda e: (e[0], e[1]))
            placed: list[tuple[float, float, int, bytes]] = []
            previous = -1.0
            for at, seq_no, code in entries:
                found = where.get(code)
                previous = float(found) if found is not None else previous + 1e-6
                placed.append((at, previous, seq_no, code))
            placed.sort()
            await self.w.call("DEL", key)
            await self.w.push(key, [code for _, _, _, code in placed])
        return {pool: (a, r) for pool, (a, r) in counts.items()}

    async def _pool_hash(self, pool: str, counts: tuple[int, int], placeholder: bool) -> None:
        key = keys.pool(self.project, pool)
        assigned, redeemed = counts
        available = self.avail_len[pool]
        self.stats_available += available
        self.stored += available + sum(counts)
        handed = self.j.handed_out.get(pool, {})
        popped = max(self.max_popped[pool], max(handed) + 1 if handed else 0)
        if placeholder:
            name = f"{PLACEHOLDER_PREFIX}{pool}"
            first_at = min((float(o.at) for o in self.j.by_pool[pool] if o.at), default=time.time())
            fields: dict[bytes, bytes] = {
                b"id": pool.encode(),
                b"name": name.encode(),
                b"created_at": repr(first_at).encode(),
                b"expires_at": b"",
                b"thresholds": b"",
                b"notify": b"{}",
                b"armed": b"",
                b"exhausted_armed": b"0",
                b"soon": b"",
                b"soon_armed": b"",
            }
            await self.w.call("SADD", keys.pools(self.project), pool)
            await self.w.call("HSETNX", keys.pool_names(self.project), name, pool)
            log.warning(
                "restore: pool %s of project %s is not in the snapshot; restored as %r with "
                "its %d journaled hand-out(s) and nothing available",
                pool, self.project, name, assigned + redeemed,
            )  # fmt: skip
        else:
            fields = {
                k: v
                for k, v in self.pool_hashes[pool].items()
                if not k.startswith(b"committing:") and k != b"ix"  # see _rebuild_code_index
            }
            # A threshold is armed exactly while more than it is available (issue.lua
            # fires and disarms it on the way down, a release or refill re-arms it on the
            # way up); the alerts of crossings since the snapshot are journaled.
            thresholds = fields.get(b"thresholds", b"").decode().split(",")
            armed = [t for t in thresholds if t and available > int(t)]
            fields[b"armed"] = ",".join(armed).encode()
            fields[b"exhausted_armed"] = b"1" if available > 0 else b"0"
            if b"soon" in fields:
                fields[b"soon_armed"] = await self._soon_armed(pool, fields, available)
        fields.update(
            {
                b"total": str(available + assigned + redeemed).encode(),
                b"assigned": str(assigned).encode(),
                b"redeemed": str(redeemed).encode(),
            }
        )
        if popped or b"popped" in fields:  # issue.lua creates it with the first hand-out
            fields[b"popped"] = str(popped).encode()
        flat: list[bytes] = []
        for k, v in fields.items():
            flat += [k, v]
        await self.w.call("HSET", key, *flat)


async def _rebuild_code_index(client: Redis, projects: set[str]) -> None:
    """Snapshots leave the code index out (its upload numbers and offsets name a past
    state): every restored pool is indexed again from its restored available list, in
    positions (codepool.store.codeindex.build_pool). The pool hashes came back without
    their ``ix`` field, so each is built once."""
    await codeindex.ensure_all(client, sorted(projects))


def _bump(value: bytearray, cell: int) -> None:
    """One more in a u32 big-endian counter cell (BITFIELD's layout)."""
    at = cell * stats.CELL
    value[at : at + stats.CELL] = (int.from_bytes(value[at : at + stats.CELL]) + 1).to_bytes(4)


def _held(held: int, ops: list[Op], clock: Clock) -> int:
    for op in sorted(ops, key=lambda o: o.order):
        if reflected(op, clock):
            continue
        if op.kind == "issue":
            held += 1
        elif op.kind == "release" and held > 0:
            held -= 1
    return held


def reversed_pairs(flat: list[bytes]) -> list[bytes]:
    """member, score, ... -> score, member, ... (ZADD's order)."""
    out: list[bytes] = []
    for member, score in zip(flat[::2], flat[1::2], strict=True):
        out += [score, member]
    return out


async def flush_codepool(client: Redis) -> int:
    """Delete every codepool key but the restore marker (UNLINK: freed off-thread)."""
    names = [n for n in await scan_keys(client) if n != keys.RESTORING]
    for i in range(0, len(names), WRITE_BATCH):
        await client.unlink(*names[i : i + WRITE_BATCH])
    return len(names)


async def has_state(client: Redis) -> bool:
    """Whether Redis holds any codepool key (the markers aside)."""
    if await client.exists(keys.PROJECTS):
        return True
    async for name in client.scan_iter(match=f"{keys.PREFIX}:*", count=1000):
        if name not in (keys.EPOCH.encode(), keys.RESTORING.encode()):
            return True
    return False


async def mark_complete(client: Redis, since: float | None = None) -> str:
    """Mark Redis as holding a whole codepool state (see keys.EPOCH), one that exists
    since ``since`` (default now): journal records written before belong to another."""
    epoch = f"{time.time() if since is None else since:.6f}-{secrets.token_hex(6)}"
    await client.set(keys.EPOCH, epoch)
    return epoch


def epoch_began(epoch: bytes | str) -> float:
    """When the state a ``cp:epoch`` value marks began (see mark_complete)."""
    raw = epoch.decode() if isinstance(epoch, bytes) else epoch
    try:
        return float(raw.split("-", 1)[0])
    except ValueError:
        return 0.0


async def restore(
    client: Redis,
    snapshot: Path | None,
    journal: list[Record],
    *,
    flush: bool = True,
    user_events_maxlen: int = USER_EVENTS_MAXLEN,
) -> RestoreStats:
    """Write ``snapshot`` (verified; None: start from nothing) plus ``journal`` into Redis.

    ``journal`` must hold the records written since the snapshot started (see
    journal.read_journal). With ``flush`` every codepool key is deleted first.
    ``user_events_maxlen``: settings.user_events_maxlen, for the rebuilt user lists.
    """
    started = time.time()
    await client.set(keys.RESTORING, f"{started}")
    if flush:
        await flush_codepool(client)
    stats = RestoreStats(
        snapshot=None if snapshot is None else str(snapshot), journal_records=len(journal)
    )
    by_project = index_journal(journal)
    stats.journal_handouts = sum(
        1 for pj in by_project.values() for op in pj.ops if op.kind == "issue"
    )
    w = _Writer(client, user_events_maxlen)
    projects_seen: set[str] = set()
    registry: set[bytes] = set()
    current: _Project | None = None
    frames: Iterator[Frame] = iter(()) if snapshot is None else read_frames(snapshot)
    for frame in frames:
        if isinstance(frame, Header) and frame.version != FORMAT_VERSION:
            raise SnapshotError(f"{snapshot}: format version {frame.version} is not supported")
        if isinstance(frame, Header | Footer):
            continue
        if isinstance(frame, ProjectEnd):
            if current is None:  # a project with no keys read: start and end it
                current = _Project(
                    frame.project, by_project.get(frame.project, _ProjectJournal()), w
                )
            stats.placeholders += await current.finish(frame.clock)
            stats.codes_available += current.stats_available
            projects_seen.add(frame.project)
            current = None
            continue
        key = frame.key
        kind = classify(key)
        if kind is None:
            if key == keys.PROJECTS and isinstance(frame, SetSlice):
                registry.update(frame.members)
            continue
        if current is None or current.project != kind.project:
            current = _Project(kind.project, by_project.get(kind.project, _ProjectJournal()), w)
        await current.frame(frame)
    # Projects the snapshot does not know (or no snapshot at all): journal only.
    for project in sorted(set(by_project) - projects_seen):
        only = _Project(project, by_project[project], w)
        stats.placeholders += await only.finish(_NO_CLOCK)
        stats.codes_available += only.stats_available
    await w.flush()
    # The registry last: only projects whose record came back (a project created after
    # the snapshot has no name or secrets to restore; root can create it again by id).
    present = []
    for member in sorted(registry | {p.encode() for p in by_project}):
        if await client.exists(keys.project(member.decode())):
            present.append(member)
    if present:
        await client.sadd(keys.PROJECTS, *present)
    stats.projects = len(present)
    stats.keys = len(w.keys)
    await _rebuild_code_index(client, projects_seen | set(by_project))
    # Records of hand-outs made from the restored state are all written after `started`.
    await mark_complete(client, since=started)
    await client.delete(keys.RESTORING)
    stats.seconds = time.time() - started
    return stats
