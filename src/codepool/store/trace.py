"""The trace: the project's event stream, and what each user holds."""

from __future__ import annotations

import re
from typing import Any, cast

from codepool import errors, keys
from codepool.models import Event, Page, Voucher
from codepool.store.base import Backend, text, window
from codepool.store.records import walk

# Stream entries read per XRANGE while filtering, and at most per request: a filtered
# listing over a huge stream answers with what it found and says it is limited.
EVENT_READ = 1000
EVENT_SCAN_LIMIT = 100_000
_STREAM_ID = re.compile(r"^\d+-\d+$")
_INT_FIELDS = frozenset({"threshold", "available", "threshold_seconds"})
_FLOAT_FIELDS = frozenset({"rate_per_minute", "empty_at"})  # POOL_EMPTY_SOON
_TEXT_FIELDS = ("user_id", "reward_id", "pool_id", "code", "purchase_id")


def after_to_stream_id(after: str | None) -> str:
    """``after`` is an event id (exclusive) or a Unix time in seconds."""
    if not after:
        return "-"
    if _STREAM_ID.match(after):
        return "(" + after
    try:
        seconds = float(after)
    except ValueError:
        raise errors.BadRequest("after must be an event id or a Unix time", after=after) from None
    if seconds < 0:
        raise errors.BadRequest("after must not be negative", after=after)
    return f"({int(seconds * 1000)}-999999999"


StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]


def _event(entry_id: bytes, fields: dict[bytes, bytes]) -> Event:
    f = {k.decode(): v.decode() for k, v in fields.items()}
    optional: dict[str, Any] = {name: f[name] for name in _TEXT_FIELDS if f.get(name)}
    optional.update({name: int(f[name]) for name in _INT_FIELDS if f.get(name)})
    optional.update({name: float(f[name]) for name in _FLOAT_FIELDS if f.get(name)})
    return Event(id=entry_id.decode(), type=f["type"], time=float(f["time"]), **optional)


class TraceStore:
    def __init__(self, backend: Backend) -> None:
        self._b = backend

    async def events(
        self,
        project_id: str,
        *,
        user_id: str | None,
        event_type: str | None,
        after: str | None,
        skip: int,
        count: int,
    ) -> Page[Event]:
        """Events oldest first, filtered; ``matched`` counts matches in what was scanned."""
        stream = keys.events(project_id)
        start = after_to_stream_id(after)
        data: list[Event] = []
        matched = scanned = 0
        exhausted = False
        while len(data) < count and scanned < EVENT_SCAN_LIMIT:
            raw = await self._b.client.xrange(stream, min=start, max="+", count=EVENT_READ)
            entries = cast(StreamEntries, raw)
            scanned += len(entries)
            for entry_id, fields in entries:
                if event_type and fields.get(b"type", b"").decode() != event_type:
                    continue
                if user_id and fields.get(b"user_id", b"").decode() != user_id:
                    continue
                matched += 1
                if matched > skip and len(data) < count:
                    data.append(_event(entry_id, fields))
            if len(entries) < EVENT_READ:
                exhausted = True
                break
            start = "(" + entries[-1][0].decode()
        return Page(
            data=data, matched=matched, matched_limited=not exhausted, skip=skip, limit=count
        )

    async def vouchers(
        self, project_id: str, user_id: str, skip: int, count: int, *, hide_codes: bool
    ) -> Page[Voucher]:
        """What the user holds, oldest first. ``hide_codes`` blanks codes of hide_code rewards."""
        code_list = keys.user_codes(project_id, user_id)
        total = await self._b.client.llen(code_list)
        held = walk(self._b, code_list, keys.issued(project_id), lambda i: i.user_id == user_id)
        data = [
            Voucher(
                code=code,
                status=inst.status,
                pool_id=inst.pool_id,
                reward_id=inst.reward_id,
                purchase_id=inst.purchase_id,
                assigned_time=inst.assigned_time,
                redeemed_time=inst.redeemed_time,
            )
            for code, inst in await window(held, skip, count)
        ]
        if hide_codes:
            await self._hide(project_id, data)
        return Page(data=data, matched=total, matched_limited=False, skip=skip, limit=count)

    async def _hide(self, project_id: str, vouchers: list[Voucher]) -> None:
        reward_ids = sorted({v.reward_id for v in vouchers if v.reward_id})
        if not reward_ids:
            return
        async with self._b.client.pipeline(transaction=False) as pipe:
            for reward_id in reward_ids:
                pipe.hget(keys.reward(project_id, reward_id), "hide_code")
            hidden = {
                r
                for r, flag in zip(reward_ids, await pipe.execute(), strict=True)
                if text(flag) == "1"
            }
        for v in vouchers:
            if v.reward_id in hidden:
                v.code = None
