"""What the journal holds: one record per change a client was told of, and its framing.

Which records a snapshot holds is decided by counters, not by time: a hand-out carries
its position in the pool (lua/issue.lua), a redeem the pool's redeem count after it, a
release the position it put the code at; each slice of a snapshot carries the pool
counters it was read at (durability.plan). Record times only bound what a restore needs
to read.

Frames: ``[u32 length][u32 crc32][msgpack record]`` (durability.journal writes them,
durability.journal_files reads them).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import msgspec

FRAME = struct.Struct(">II")


class Handout(msgspec.Struct, array_like=True, frozen=True):
    """The codes one request got from one issue.lua call."""

    codes: list[str]
    # Position of codes[0] in the pool; -1 for an answer replayed from an idempotency
    # record (the codes were popped by an earlier call, which has its own record unless
    # its journal write failed).
    position: int
    # assigned_time exactly as the issued record holds it (the text issue.lua got).
    at: str
    user: str
    reward: str
    purchase: str
    # The idempotency record issue.lua stored ("" for none), its key and expiry (Unix s).
    idem_key: str = ""
    idem_value: str = ""
    idem_expires: float = 0.0
    # hold_expires_at as the issued record holds it ("" not held).
    hold: str = ""


class IssueRecord(msgspec.Struct, tag="i", array_like=True, frozen=True):
    written: float  # Unix time of the write: after the script returned
    project: str
    pool: str
    handouts: list[Handout]
    # Low-stock alerts the call fired (thresholds, "exhausted") and the available count
    # they fired at; their time is the hand-outs' `at`. Older files lack both.
    alerts: list[str] = []
    available: int = -1
    # Redis's clock (TIME, µs) in the script call: it orders the records of every host
    # and process the way Redis made the changes (0 in files older than it).
    redis_us: int = 0


class _InstanceRecord(msgspec.Struct, array_like=True, frozen=True):
    """What every record of a change to one code instance starts with: when it was
    written, where, and the instance as its issued record names it (`at` is its
    assigned_time as text). Subclasses add their fields after these, so each record's
    array keeps the order journal files already hold."""

    written: float
    project: str
    pool: str
    code: str
    at: str
    user: str
    reward: str
    purchase: str


class RedeemRecord(_InstanceRecord, tag="d", frozen=True):
    redeemed_at: str  # what redeem.lua set
    seq: int  # the pool's redeemed count after this redeem
    redis_us: int = 0


class ReleaseRecord(_InstanceRecord, tag="r", frozen=True):
    released_at: str
    position: int  # where release.lua put the code in the available list
    reason: str = ""  # "hold_expired": the hold reaper's (lua/reap_holds.lua)
    redis_us: int = 0


class ConfirmRecord(_InstanceRecord, tag="c", frozen=True):
    """A hold made final (lua/confirm.lua). No counter tells whether a snapshot holds it:
    a restore applies it again, which changes nothing where it is already applied."""

    redis_us: int = 0


Record = IssueRecord | RedeemRecord | ReleaseRecord | ConfirmRecord

_encoder = msgspec.msgpack.Encoder()
decoder = msgspec.msgpack.Decoder(Record)


def redis_time(record: Record) -> float:
    """When Redis made the change (Unix s): its clock where the record has it, else the
    clock of the host that wrote the record (files from before records carried it)."""
    return record.redis_us / 1e6 if record.redis_us else record.written


def idempotency_value(
    fingerprint: str, at: str, purchase: str, available: int, codes: Sequence[str]
) -> str:
    """The idempotency record issue.lua stores for a request (see its header)."""
    return "\x1f".join([fingerprint, at, purchase, str(available), ",".join(codes)])


def encode_frames(records: Sequence[Record]) -> bytes:
    out = bytearray()
    for record in records:
        payload = _encoder.encode(record)
        out += FRAME.pack(len(payload), zlib.crc32(payload))
        out += payload
    return bytes(out)
