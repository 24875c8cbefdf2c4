"""The snapshot file: its frames, writing them, verifying and reading a file back.

File: ``snapshots/snapshot-<start µs>.cps`` = MAGIC, then frames ``[u32 length][u32
crc32][u8 kind][msgpack]``, then a trailer (crc32 of everything before it + MAGIC_END).
What the frames hold, and in which order, is durability.snapshot's business.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Generator
from pathlib import Path
from typing import IO, Final

import msgspec

FORMAT_VERSION: Final = 1
MAGIC: Final = b"CODEPOOL-SNAP-1\n"
MAGIC_END: Final = b"\nCODEPOOL-END-1\n"
SUFFIX: Final = ".cps"
_FRAME = struct.Struct(">IIB")
_TRAILER = struct.Struct(">I")


# pool id -> (codes popped, end position of the available list, redeems), see snapshot_read.lua
Clock = dict[str, tuple[int, int, int]]


# -- frames ---------------------------------------------------------------------------
# array_like: field names are not repeated in every frame. Binary values stay bytes.


class Header(msgspec.Struct, tag="H", array_like=True):
    version: int
    started_at: float  # Unix time before the first read
    host: str
    pid: int
    # Redis's clock before the first read: journal records of changes Redis made since
    # are the ones a restore needs (0 in files older than it: started_at then).
    redis_started_at: float = 0.0
    # The hosts registered as journaling (keys.HOSTS: host id -> Redis time of its last
    # heartbeat): a restore needs the journals of those alive since the snapshot began.
    hosts: dict[str, float] = {}

    @property
    def since(self) -> float:
        """From when journal records are needed to restore this snapshot."""
        return self.redis_started_at or self.started_at


class Avail(msgspec.Struct, tag="A", array_like=True):
    """Codes of a pool's available list at positions start, start+1, ... (newline-joined:
    codes hold no whitespace)."""

    key: str
    pool: str
    start: int
    codes: bytes
    count: int
    clock: Clock


class HashSlice(msgspec.Struct, tag="h", array_like=True):
    key: str
    flat: list[bytes]  # field, value, field, value, ...
    clock: Clock | None


class ListSlice(msgspec.Struct, tag="l", array_like=True):
    key: str
    items: list[bytes]
    clock: Clock | None


class SetSlice(msgspec.Struct, tag="s", array_like=True):
    key: str
    members: list[bytes]


class ZSetSlice(msgspec.Struct, tag="z", array_like=True):
    key: str
    flat: list[bytes]  # member, score, ...


class StreamSlice(msgspec.Struct, tag="x", array_like=True):
    key: str
    entries: list[tuple[bytes, list[bytes]]]
    clock: Clock | None


class StringKey(msgspec.Struct, tag="k", array_like=True):
    key: str
    value: bytes
    expires_ms: int  # absolute Unix ms, 0 = no expiry


class Counters(msgspec.Struct, tag="c", array_like=True):
    """A pool's per-minute counters of one day (keys.pool_stats), read with the clock:
    a restore adds the journaled changes the clock does not reflect."""

    key: str
    value: bytes
    expires_ms: int
    clock: Clock


class KeyEnd(msgspec.Struct, tag="e", array_like=True):
    """After a key's slices: its expiry (absolute Unix ms, 0 none), and the clock of its
    last slice (None for keys read without one)."""

    key: str
    expires_ms: int
    clock: Clock | None


class ProjectEnd(msgspec.Struct, tag="P", array_like=True):
    project: str
    clock: Clock


class Footer(msgspec.Struct, tag="F", array_like=True):
    finished_at: float
    frames: int
    keys: int
    codes: int


Frame = (
    Header
    | Avail
    | HashSlice
    | ListSlice
    | SetSlice
    | ZSetSlice
    | StreamSlice
    | StringKey
    | KeyEnd
    | ProjectEnd
    | Footer
    | Counters  # last: the kind byte of the others stays what older files hold
)
_KIND = {cls: i for i, cls in enumerate(Frame.__args__)}
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Frame)


class SnapshotError(RuntimeError):
    """A snapshot file is missing, incomplete or corrupt."""


class SnapshotInfo(msgspec.Struct, frozen=True, kw_only=True):
    path: Path
    started_at: float
    seconds: float
    size: int
    keys: int
    codes: int


class FrameWriter:
    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._crc = zlib.crc32(MAGIC)
        self.frames = 0
        file.write(MAGIC)

    def add(self, frame: Frame) -> None:
        payload = _encoder.encode(frame)
        head = _FRAME.pack(len(payload), zlib.crc32(payload), _KIND[type(frame)])
        self._crc = zlib.crc32(payload, zlib.crc32(head, self._crc))
        self._file.write(head)
        self._file.write(payload)
        self.frames += 1

    def finish(self) -> None:
        self._file.write(_TRAILER.pack(self._crc) + MAGIC_END)


def verify(path: Path) -> None:
    """Raise SnapshotError unless ``path`` is a complete snapshot with a good checksum."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise SnapshotError(f"{path}: not a codepool snapshot")
            tail_at = size - _TRAILER.size - len(MAGIC_END)
            if tail_at < len(MAGIC):
                raise SnapshotError(f"{path}: truncated")
            crc = zlib.crc32(MAGIC)
            remaining = tail_at - len(MAGIC)
            while remaining:
                block = f.read(min(remaining, 1 << 22))
                if not block:
                    raise SnapshotError(f"{path}: truncated")
                crc = zlib.crc32(block, crc)
                remaining -= len(block)
            trailer = f.read()
    except OSError as exc:
        raise SnapshotError(f"{path}: {exc}") from exc
    if trailer[_TRAILER.size :] != MAGIC_END or _TRAILER.unpack(trailer[: _TRAILER.size])[0] != crc:
        raise SnapshotError(f"{path}: incomplete or corrupt (checksum mismatch)")


def read_header(path: Path) -> Header:
    """A snapshot's header (its first frame), without verifying the file."""
    frames = read_frames(path)
    try:
        frame = next(frames)
    except (StopIteration, OSError, msgspec.DecodeError) as exc:
        raise SnapshotError(f"{path}: unreadable header") from exc
    finally:
        frames.close()
    if not isinstance(frame, Header):
        raise SnapshotError(f"{path}: no header")
    return frame


def read_frames(path: Path) -> Generator[Frame]:
    """The frames of a verified snapshot, in order (Header first, Footer last)."""
    with path.open("rb", buffering=1 << 20) as f:
        f.read(len(MAGIC))
        while True:
            head = f.read(_FRAME.size)
            if len(head) < _FRAME.size:
                raise SnapshotError(f"{path}: ends without a footer")
            length, crc, _ = _FRAME.unpack(head)
            payload = f.read(length)
            if len(payload) != length or zlib.crc32(payload) != crc:
                raise SnapshotError(f"{path}: corrupt frame")
            frame = _decoder.decode(payload)
            yield frame
            if isinstance(frame, Footer):
                return
