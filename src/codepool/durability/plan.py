"""What a restore must apply: the journal indexed per project, which journaled changes
a snapshot slice already reflects (by its clock), and a code's issued record with the
missed ones applied. Pure computation: nothing here talks to Redis.

A journaled change is *reflected* in a slice when its counter is below that slice's
clock (see durability.restore for the whole method):

    hand-out at position x      reflected iff x < popped      (of its pool)
    release pushing at position y reflected iff y < end
    redeem number s              reflected iff s <= redeemed
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import NamedTuple

from codepool.durability.records import ConfirmRecord, IssueRecord, Record, RedeemRecord
from codepool.durability.snapshot_format import Clock

RS, US = b"\x1e", b"\x1f"
NO_CLOCK: Clock = {}


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
    order: int  # place in the journal: Redis's order of the changes, over every host
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


class ProjectJournal:
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


def index_journal(records: Iterable[Record]) -> dict[str, ProjectJournal]:
    projects: dict[str, ProjectJournal] = defaultdict(ProjectJournal)
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


def held(held: int, ops: list[Op], clock: Clock) -> int:
    for op in sorted(ops, key=lambda o: o.order):
        if reflected(op, clock):
            continue
        if op.kind == "issue":
            held += 1
        elif op.kind == "release" and held > 0:
            held -= 1
    return held


class Clocks:
    """The clocks a restore saw per key (first and last slice) and the highest popped
    count per pool of any slice."""

    def __init__(self) -> None:
        self.first: dict[str, Clock] = {}
        self.last: dict[str, Clock] = {}
        self.max_popped: dict[str, int] = defaultdict(int)

    def note(self, key: str, clock: Clock | None) -> None:
        if clock is None:
            return
        self.first.setdefault(key, clock)
        self.last[key] = clock
        for pool, (popped, _, _) in clock.items():
            self.max_popped[pool] = max(self.max_popped[pool], popped)
