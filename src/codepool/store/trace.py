"""The trace: the project's event stream, and what each user holds."""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Sequence
from typing import cast

from codepool import errors, keys
from codepool.models import Event, Page, Voucher, event_optionals
from codepool.store.base import Backend, text, window
from codepool.store.records import walk

# Stream entries read per XRANGE while filtering, and at most per request: a filtered
# listing over a huge stream answers with what it found and says it is limited.
EVENT_READ = 1000
EVENT_SCAN_LIMIT = 100_000
# A user's events (and an admin's ?user_id=) come from the user's own index
# (keys.user_events, capped by settings.user_events_maxlen): a call reads at most this
# many items of it, then the page's events by id, however large the project and
# whatever the filter.
USER_EVENT_SCAN_LIMIT = 2_000
_STREAM_ID = re.compile(r"(\d{1,20})-(\d{1,20})")
# Stream ids are two unsigned 64-bit numbers; Redis refuses anything larger.
_U64 = 2**64 - 1


def first_id(after: str | None) -> tuple[int, int] | None:
    """The first event id (ms, seq) an ``after`` admits: ``after`` is an event id
    (exclusive) or a Unix time in seconds; None: from the start."""
    if not after:
        return None
    stream_id = _STREAM_ID.fullmatch(after)
    if stream_id:
        ms, seq = int(stream_id.group(1)), int(stream_id.group(2))
        if ms > _U64 or seq > _U64:
            raise errors.BadRequest("after is not a valid event id", after=after)
    else:
        try:
            seconds = float(after)
        except ValueError:
            raise errors.BadRequest(
                "after must be an event id or a Unix time", after=after
            ) from None
        # nan, inf and times no stream id can hold (ms past 2**64) are a 400, not a 500.
        if not math.isfinite(seconds) or not 0 <= seconds < _U64 / 1000:
            raise errors.BadRequest(
                "after must be a Unix time from 0 to 1.8e16 seconds", after=after
            )
        ms, seq = int(seconds * 1000), _U64
    # Inclusive, computed here: Redis refuses an exclusive start at the very last id.
    if seq < _U64:
        return ms, seq + 1
    if ms < _U64:
        return ms + 1, 0
    raise errors.BadRequest("no event can come after this id", after=after)


def after_to_stream_id(after: str | None) -> str:
    """``after`` as XRANGE's (inclusive) start."""
    first = first_id(after)
    return "-" if first is None else f"{first[0]}-{first[1]}"


StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]
# Batches of entries, each with whether more may follow it.
Batches = AsyncIterator[tuple[StreamEntries, bool]]


def parse_user_event(item: bytes) -> tuple[bytes, bytes]:
    """An item of a user's event index (keys.user_events): (event id, type)."""
    event_id, _, kind = item.partition(b"\x1f")
    return event_id, kind


def _id(raw: bytes) -> tuple[int, int]:
    ms, _, seq = raw.partition(b"-")
    return int(ms), int(seq or 0)


def _event(entry_id: bytes, fields: dict[bytes, bytes]) -> Event:
    f = {k.decode(): v.decode() for k, v in fields.items()}
    return Event(id=entry_id.decode(), type=f["type"], time=float(f["time"]), **event_optionals(f))


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
        hide_codes: bool = False,
    ) -> Page[Event]:
        """Events oldest first, filtered; ``matched`` counts matches in what was scanned.

        With ``user_id`` only that user's own index is read (never a scan of the project
        stream), at most USER_EVENT_SCAN_LIMIT items, then the page's events by id.
        ``hide_codes`` (a user reading): no code of a hide_code reward, nor of a reward
        that is gone (it may have been one).
        """
        first = first_id(after)
        if user_id:
            return await self._user_page(
                project_id, user_id, event_type, first, skip, count, hide_codes=hide_codes
            )
        data: list[Event] = []
        matched = 0
        exhausted = False
        async for entries, more in self._stream_batches(keys.events(project_id), first):
            for entry_id, fields in entries:
                if event_type and fields.get(b"type", b"").decode() != event_type:
                    continue
                matched += 1
                if matched > skip and len(data) < count:
                    data.append(_event(entry_id, fields))
            if not more:
                exhausted = True
                break
            if len(data) >= count:
                break
        if hide_codes:
            await self._hide(project_id, data)
        return Page(
            data=data, matched=matched, matched_limited=not exhausted, skip=skip, limit=count
        )

    async def _stream_batches(self, stream: str, first: tuple[int, int] | None) -> Batches:
        """The project stream from ``first`` on, at most EVENT_SCAN_LIMIT entries."""
        start, scanned = "-" if first is None else f"{first[0]}-{first[1]}", 0
        while scanned < EVENT_SCAN_LIMIT:
            read = min(EVENT_READ, EVENT_SCAN_LIMIT - scanned)
            raw = await self._b.client.xrange(stream, min=start, max="+", count=read)
            entries = cast(StreamEntries, raw)
            scanned += len(entries)
            yield entries, len(entries) == read
            if len(entries) < read:
                return
            start = "(" + entries[-1][0].decode()

    async def _user_page(
        self,
        project_id: str,
        user_id: str,
        event_type: str | None,
        first: tuple[int, int] | None,
        skip: int,
        count: int,
        *,
        hide_codes: bool,
    ) -> Page[Event]:
        """A user's events from their own index (keys.user_events): one LRANGE of at most
        USER_EVENT_SCAN_LIMIT items (id and type; the list is capped at
        settings.user_events_maxlen), then the page's events by id, pipelined. An event
        the project stream no longer holds (trimmed) is left out of the page."""
        key = keys.user_events(project_id, user_id)
        items = cast(list[bytes], await self._b.client.lrange(key, 0, USER_EVENT_SCAN_LIMIT - 1))
        wanted = event_type.encode() if event_type else None
        ids = []
        for item in items:
            event_id, kind = parse_user_event(item)
            if (wanted is None or kind == wanted) and (first is None or _id(event_id) >= first):
                ids.append(event_id)
        data: list[Event] = []
        page = ids[skip : skip + count]
        if page:
            stream = keys.events(project_id)
            async with self._b.client.pipeline(transaction=False) as pipe:
                for event_id in page:
                    pipe.xrange(stream, min=event_id, max=event_id, count=1)
                found = cast(list[StreamEntries], await pipe.execute())
            data = [_event(entry_id, fields) for got in found for entry_id, fields in got]
            if hide_codes:
                await self._hide(project_id, data)
        return Page(
            data=data,
            matched=len(ids),
            matched_limited=len(items) == USER_EVENT_SCAN_LIMIT,
            skip=skip,
            limit=count,
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
                hold_expires_at=inst.hold_expires_at,
            )
            for code, inst in await window(held, skip, count)
        ]
        if hide_codes:
            await self._hide(project_id, data)
        return Page(data=data, matched=total, matched_limited=False, skip=skip, limit=count)

    async def _hide(self, project_id: str, items: Sequence[Voucher | Event]) -> None:
        """Blank the codes a user must not see: of a hide_code reward, or of a reward that
        no longer exists (its hide_code can no longer be told, and may have been set)."""
        reward_ids = sorted({v.reward_id for v in items if v.reward_id and v.code})
        if not reward_ids:
            return
        async with self._b.client.pipeline(transaction=False) as pipe:
            for reward_id in reward_ids:
                pipe.hget(keys.reward(project_id, reward_id), "hide_code")
            hidden = {
                r
                for r, flag in zip(reward_ids, await pipe.execute(), strict=True)
                if flag is None or text(flag) == "1"
            }
        for v in items:
            if v.reward_id in hidden:
                v.code = None
