"""The issued record of a code string, as lua/issue.lua writes it.

Value of the project's issued hash (field = code string): one entry per instance of
the string that left `available`, entries separated by \\x1e, fields by \\x1f:
pool_id, status (a|r), assigned_time, redeemed_time, user_id, reward_id, purchase_id,
and hold_expires_at while the instance is held (an eighth field, absent otherwise).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Literal

import msgspec

from codepool.models import CodeEntry
from codepool.store.base import Backend

RS, US = b"\x1e", b"\x1f"
_STATUS: dict[bytes, Literal["assigned", "redeemed"]] = {b"a": "assigned", b"r": "redeemed"}


class Instance(msgspec.Struct, frozen=True, kw_only=True):
    pool_id: str
    status: Literal["assigned", "redeemed"]
    assigned_time: float
    redeemed_time: float | None
    user_id: str | None
    reward_id: str | None
    purchase_id: str | None
    hold_expires_at: float | None = None

    def entry(self, code: str) -> CodeEntry:
        return CodeEntry(
            code=code,
            status=self.status,
            assigned_time=self.assigned_time,
            redeemed_time=self.redeemed_time,
            user_id=self.user_id,
            reward_id=self.reward_id,
            hold_expires_at=self.hold_expires_at,
        )


def parse_record(record: bytes) -> list[Instance]:
    instances = []
    for raw in record.split(RS):
        pool_id, status, at, rt, user, reward, purchase, *held = raw.split(US)
        instances.append(
            Instance(
                pool_id=pool_id.decode(),
                status=_STATUS[status],
                assigned_time=float(at),
                redeemed_time=float(rt) if rt else None,
                user_id=user.decode() or None,
                reward_id=reward.decode() or None,
                purchase_id=purchase.decode() or None,
                hold_expires_at=float(held[0]) if held else None,
            )
        )
    return instances


async def walk(
    backend: Backend,
    code_list: str,
    issued: str,
    belongs: Callable[[Instance], bool],
    slice_size: int = 5000,
) -> AsyncIterator[list[tuple[str, Instance]]]:
    """The instances behind a list of codes (a pool's log, a user's codes), in list order.

    A string handed out k > 1 times stands k times in the list; all its instances that
    ``belongs`` accepts are given at its first sighting. Only such strings are
    remembered, so memory follows the number of repeated strings, not the list.
    """
    repeated: set[bytes] = set()
    start = 0
    while True:
        flat = await backend.scripts.run("read_codes", [code_list, issued], [start, slice_size])
        batch: list[tuple[str, Instance]] = []
        for code, record in zip(flat[::2], flat[1::2], strict=True):
            if not record:
                continue
            mine = [i for i in parse_record(record) if belongs(i)]
            if len(mine) > 1:
                if code in repeated:
                    continue
                repeated.add(code)
            text_code = code.decode()
            batch.extend((text_code, i) for i in mine)
        if batch:
            yield batch
        if len(flat) < 2 * slice_size:
            return
        start += slice_size
