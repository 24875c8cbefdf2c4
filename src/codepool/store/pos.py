"""Point of sale: validate (read-only), redeem and release; one script call each."""

from __future__ import annotations

import time
from typing import Any, Literal

from codepool import errors, keys
from codepool.durability.records import ConfirmRecord, RedeemRecord, ReleaseRecord
from codepool.models import CodeInstance, Validation
from codepool.scripts import Arg
from codepool.settings import Settings
from codepool.store import codeindex
from codepool.store.base import Backend, now, text
from codepool.store.stats import stats_templates

OK, EXPIRED, UNKNOWN, NOT_ISSUED, REDEEMED, NOT_HELD = 1, -2, -10, -11, -12, -14
Reason = Literal["unknown_code", "not_issued", "already_redeemed", "pool_expired"]
_REASONS: dict[int, Reason | None] = {
    OK: None,
    EXPIRED: "pool_expired",
    REDEEMED: "already_redeemed",
}
# keys.py builds the templates: "\0" stands where the script puts the id it reads.
_ID = "\0"


def _templates(project_id: str) -> dict[str, str]:
    return {
        "pool": keys.pool(project_id, _ID),
        "avail": keys.pool_available(project_id, _ID),
        "log": keys.pool_log(project_id, _ID),
        "user": keys.user_codes(project_id, _ID),
        "reward_users": keys.reward_users(project_id, _ID),
        "user_events": keys.user_events(project_id, _ID),
    }


def give_back_args(project_id: str, settings: Settings, at: float) -> list[Arg]:
    """The ARGV tail release.lua and reap_holds.lua both hand to give_back (common.lua):
    the key templates of what a code going back touches, the user events cap, and the
    per-minute counters of ``at``'s day and the day before."""
    t = _templates(project_id)
    return [
        t["pool"],
        t["avail"],
        t["log"],
        t["user"],
        t["reward_users"],
        t["user_events"],
        settings.user_events_maxlen,
        *stats_templates(project_id, at),
    ]


def _event_keys(project_id: str, bucket: str) -> list[str]:
    """KEYS of redeem.lua and release.lua: the records, the code's index bucket, where
    their event goes, and the index's uploads."""
    return [
        keys.issued(project_id),
        bucket,
        keys.events(project_id),
        keys.outbox(project_id),
        keys.webhook(project_id),
        keys.code_index_uploads(project_id),
    ]


def _opt(value: Any) -> str | None:
    return text(value) or None


def _time(value: Any) -> float | None:
    raw = text(value)
    return float(raw) if raw else None


def _instance(code: str, raw: list[Any]) -> CodeInstance:
    return CodeInstance(
        code=code,
        pool_id=text(raw[1]),
        status="redeemed" if text(raw[2]) == "redeemed" else "assigned",
        assigned_time=_time(raw[3]),
        redeemed_time=_time(raw[4]),
        user_id=_opt(raw[5]),
        reward_id=_opt(raw[6]),
        purchase_id=_opt(raw[7]),
    )


def _identity(raw: list[Any]) -> dict[str, str]:
    """The fields that name an instance in its issued record, as the journal keeps them."""
    return {
        "at": text(raw[3]),
        "user": text(raw[5]),
        "reward": text(raw[6]),
        "purchase": text(raw[7]),
    }


def _raise_for(code: str, raw: list[Any]) -> None:
    status = int(raw[0])
    if status == UNKNOWN:
        raise errors.UnknownCode(code=code)
    if status == NOT_ISSUED:
        raise errors.NotIssued(code=code, pool_id=text(raw[1]))
    if status == REDEEMED:
        inst = _instance(code, raw)
        raise errors.AlreadyRedeemed(
            code=code, pool_id=inst.pool_id, redeemed_time=inst.redeemed_time
        )
    if status == EXPIRED:
        raise errors.PoolExpired(code=code, pool_id=text(raw[1]))
    if status == NOT_HELD:
        raise errors.NotHeld(code=code, pool_id=text(raw[1]))


class PosStore:
    def __init__(self, backend: Backend) -> None:
        self._b = backend

    async def validate(self, project_id: str, code: str) -> Validation:
        t = _templates(project_id)
        bucket, uploads, crc = codeindex.lookup_args(project_id, code)
        raw = await self._b.scripts.run(
            "validate",
            [keys.issued(project_id), bucket, uploads],
            [code, now(), t["pool"], t["avail"], crc],
        )
        status = int(raw[0])
        if status == UNKNOWN:
            return Validation(valid=False, status=None, reason="unknown_code")
        if status == NOT_ISSUED:
            return Validation(
                valid=False, status="available", reason="not_issued", pool_id=text(raw[1])
            )
        inst = _instance(code, raw)
        return Validation(
            valid=status == OK,
            status=inst.status,
            reason=_REASONS[status],
            pool_id=inst.pool_id,
            reward_id=inst.reward_id,
            user_id=inst.user_id,
            purchase_id=inst.purchase_id,
            assigned_time=inst.assigned_time,
            redeemed_time=inst.redeemed_time,
            hold_expires_at=_time(raw[8]) if len(raw) > 8 else None,
        )

    async def redeem(self, project_id: str, code: str) -> CodeInstance:
        t = _templates(project_id)
        at = now()
        stats_t, _ = stats_templates(project_id, at)
        bucket, _, crc = codeindex.lookup_args(project_id, code)
        raw = await self._b.scripts.run_acked(
            "redeem",
            _event_keys(project_id, bucket),
            [
                code,
                at,
                self._b.settings.events_maxlen,
                t["pool"],
                t["avail"],
                t["user_events"],
                self._b.settings.user_events_maxlen,
                stats_t,
                crc,
            ],
        )
        _raise_for(code, raw)
        if self._b.journal is not None:
            # Before the answer: a restore must not let the code be redeemed again.
            await self._journal(
                RedeemRecord(
                    written=time.time(),
                    project=project_id,
                    pool=text(raw[1]),
                    code=code,
                    **_identity(raw),
                    redeemed_at=text(raw[4]),
                    seq=int(raw[8]),
                    redis_us=int(raw[9]),
                )
            )
        return _instance(code, raw)

    async def confirm(self, project_id: str, code: str) -> CodeInstance:
        """Make a held hand-out final (lua/confirm.lua): the hold reaper leaves it."""
        t = _templates(project_id)
        bucket, uploads, crc = codeindex.lookup_args(project_id, code)
        raw = await self._b.scripts.run_acked(
            "confirm",
            [keys.issued(project_id), bucket, uploads],
            [code, t["pool"], t["avail"], crc],
        )
        _raise_for(code, raw)
        if self._b.journal is not None:
            # Before the answer: a restore must not bring the hold back to expire.
            await self._journal(
                ConfirmRecord(
                    written=time.time(), project=project_id, pool=text(raw[1]), code=code,
                    **_identity(raw), redis_us=int(raw[8]),
                )
            )  # fmt: skip
        inst = _instance(code, raw)
        inst.hold_expires_at = None
        return inst

    async def _journal(self, record: RedeemRecord | ReleaseRecord | ConfirmRecord) -> None:
        assert self._b.journal is not None
        try:
            await self._b.journal.append([record])
        except Exception:
            # Done in Redis, but a restore after a data loss would not know it.
            raise errors.NotReady("the change could not be recorded", reason="journal") from None

    async def release(self, project_id: str, code: str) -> CodeInstance:
        released_at = now()
        bucket, _, crc = codeindex.lookup_args(project_id, code)
        raw = await self._b.scripts.run_acked(
            "release",
            _event_keys(project_id, bucket),
            [
                code,
                released_at,
                self._b.settings.events_maxlen,
                *give_back_args(project_id, self._b.settings, released_at),
                crc,
            ],
        )
        _raise_for(code, raw)
        if self._b.journal is not None:
            await self._journal(
                ReleaseRecord(
                    written=time.time(),
                    project=project_id,
                    pool=text(raw[1]),
                    code=code,
                    **_identity(raw),
                    released_at=repr(released_at),
                    position=int(raw[9]),
                    redis_us=int(raw[10]),
                )
            )
        inst = _instance(code, raw)
        inst.status = "available"
        inst.available = int(raw[8])
        return inst
