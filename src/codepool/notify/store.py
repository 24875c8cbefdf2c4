"""The Redis side of notifications: webhook config, outbox, delivery queue, dead letters.

Every change that touches more than one key is one script in lua/ (fan_out,
claim_deliveries, complete_delivery, retry_delivery, bury_delivery, requeue_dead).
Times on the delivery queue are Unix milliseconds: exact in a sorted-set score, so a
worker can tell its own lease from another's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, cast

import msgspec
from redis.crc import key_slot
from redis.exceptions import ResponseError

from codepool import errors, keys
from codepool.models import DeadDelivery, Page, WebhookConfig, WebhookIn
from codepool.notify.records import DeadInfo, Delivery
from codepool.rediscluster import is_cluster
from codepool.redispipes import on_masters
from codepool.store.base import Backend, text

# The consumer group every worker reads the outboxes through.
GROUP = "notify"
# Dead letters kept per project; older ones are dropped with their records.
DEAD_LETTERS_MAX = 1000

Entries = list[tuple[bytes, dict[bytes, bytes] | None]]
_delivery_decoder = msgspec.json.Decoder(Delivery)
_dead_decoder = msgspec.json.Decoder(DeadInfo)
_encoder = msgspec.json.Encoder()


# How often an idle delivery worker reads the outboxes again on Redis Cluster.
CLUSTER_POLL = 0.1


def _pairs(flat: list[bytes] | None) -> dict[bytes, bytes] | None:
    """A raw stream entry's fields (None: the entry was deleted while pending)."""
    if flat is None:
        return None
    return dict(zip(flat[::2], flat[1::2], strict=True))


class Claimed(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery a worker has leased: send it, then complete, retry or bury it."""

    project_id: str
    id: str
    attempt: int  # 1 on the first attempt
    record: bytes  # Delivery as JSON; decoded by the worker, which buries what it cannot read
    lease_ms: int  # the lease end the claim set: proof of ownership for retry/bury


def decode_delivery(record: bytes) -> Delivery:
    return _delivery_decoder.decode(record)


class DeliveryStore:
    def __init__(self, backend: Backend) -> None:
        self._b = backend

    # -- the project webhook ----------------------------------------------------------

    async def put_webhook(self, project_id: str, data: WebhookIn) -> WebhookConfig:
        events: list[str] = list(dict.fromkeys(data.events))
        # One HSET sets both fields: a script never sees a url with the old events.
        await self._b.client.hset(
            keys.webhook(project_id), mapping={"url": data.url, "events": ",".join(events)}
        )
        return WebhookConfig(url=data.url, events=events)

    async def get_webhook(self, project_id: str) -> WebhookConfig:
        url, events = await self._b.client.hmget(keys.webhook(project_id), ["url", "events"])
        if url is None:
            raise errors.WebhookNotFound(project_id=project_id)
        return WebhookConfig(url=text(url), events=[e for e in text(events).split(",") if e])

    async def delete_webhook(self, project_id: str) -> None:
        if not await self._b.client.delete(keys.webhook(project_id)):
            raise errors.WebhookNotFound(project_id=project_id)

    async def project_contact(self, project_id: str) -> tuple[str, str] | None:
        """(name, webhook_secret) of a project, read at each attempt so a rotated secret
        signs the very next one; None if the project is gone."""
        name, secret = await self._b.client.hmget(
            keys.project(project_id), ["name", "webhook_secret"]
        )
        if name is None or secret is None:
            return None
        return text(name), text(secret)

    # -- the outbox ---------------------------------------------------------------------

    async def project_ids(self) -> list[str]:
        return sorted(text(m) for m in await self._b.client.smembers(keys.PROJECTS))

    async def outbox_projects(self, project_ids: Sequence[str]) -> list[str]:
        """The projects whose outbox exists, each with the consumer group ready."""
        async with self._b.client.pipeline(transaction=False) as pipe:
            for project_id in project_ids:
                pipe.exists(keys.outbox(project_id))
            found = [p for p, n in zip(project_ids, await pipe.execute(), strict=True) if n]
        for project_id in found:
            await self.ensure_group(project_id)
        return found

    async def ensure_group(self, project_id: str) -> None:
        try:
            # From the start of the stream: entries written while no worker ran count too.
            await self._b.client.xgroup_create(
                keys.outbox(project_id), GROUP, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(
        self, project_ids: Sequence[str], consumer: str, count: int, block_ms: int
    ) -> list[tuple[str, Entries]]:
        """New outbox entries of these projects for ``consumer``, waiting up to ``block_ms``.

        One blocking read over every project's outbox keeps an idle worker to one command
        per poll. On Redis Cluster the outboxes live in different slots: see _read_slots.
        """
        if is_cluster(self._b.client):
            return await self._read_slots(project_ids, consumer, count, block_ms)
        by_key = {keys.outbox(p): p for p in project_ids}
        raw = await self._b.client.xreadgroup(
            GROUP, consumer, dict.fromkeys(by_key, ">"), count=count, block=max(1, block_ms)
        )
        streams = cast(list[tuple[bytes, Entries]], raw or [])
        return [(by_key[text(stream)], entries) for stream, entries in streams]

    async def _read_slots(
        self, project_ids: Sequence[str], consumer: str, count: int, block_ms: int
    ) -> list[tuple[str, Entries]]:
        """:meth:`read` on a cluster: one XREADGROUP per slot (a command's keys must share
        one), each master's sent as one pipeline, the masters at once; not blocking (a
        blocked read would hold a connection per slot), so an idle worker looks again
        every CLUSTER_POLL seconds until ``block_ms`` is up."""
        by_key = {keys.outbox(p): p for p in project_ids}
        by_slot: dict[int, list[str]] = {}
        for p in project_ids:
            by_slot.setdefault(key_slot(keys.outbox(p).encode()), []).append(p)
        commands: list[tuple[Any, ...]] = []
        first_keys: list[str] = []
        for projects in by_slot.values():
            streams = [keys.outbox(p) for p in projects]
            commands.append(
                ("XREADGROUP", "GROUP", GROUP, consumer, "COUNT", count, "STREAMS", *streams)
                + (">",) * len(streams)
            )
            first_keys.append(streams[0])
        deadline = time.monotonic() + block_ms / 1000
        while True:
            replies = await on_masters(self._b.client, commands, first_keys)
            found: list[tuple[str, Entries]] = []
            for reply in replies:
                if isinstance(reply, ResponseError) and "NOGROUP" in str(reply):
                    raise reply
                if isinstance(reply, Exception) or not reply:
                    continue  # MOVED (resharding): read again next poll
                for stream, entries in reply:
                    found.append((by_key[text(stream)], [(i, _pairs(f)) for i, f in entries]))
            if found or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(min(CLUSTER_POLL, max(0.0, deadline - time.monotonic())))

    async def take_over(
        self, project_id: str, consumer: str, min_idle_ms: int, count: int
    ) -> Entries:
        """Entries another consumer read and then sat on for ``min_idle_ms`` (it vanished)."""
        raw = await self._b.client.xautoclaim(
            keys.outbox(project_id),
            GROUP,
            consumer,
            min_idle_time=min_idle_ms,
            start_id="0-0",
            count=count,
        )
        return cast(Entries, raw[1])

    async def fan_out(
        self, project_id: str, entry_id: bytes | str, deliveries: Sequence[Delivery], due_ms: int
    ) -> int:
        """Queue the entry's deliveries and take it off the outbox, in one step."""
        args: list[Any] = [GROUP, entry_id, due_ms]
        for d in deliveries:
            args += [d.id, _encoder.encode(d)]
        queued: int = await self._b.scripts.run(
            "fan_out",
            [keys.outbox(project_id), keys.deliveries(project_id), keys.delivery_queue(project_id)],
            args,
        )
        return queued

    # -- the delivery queue ---------------------------------------------------------

    async def due_projects(self, project_ids: Sequence[str], now_ms: int) -> list[str]:
        """The projects with a delivery due now (one round trip for all of them)."""
        async with self._b.client.pipeline(transaction=False) as pipe:
            for project_id in project_ids:
                pipe.zrangebyscore(keys.delivery_queue(project_id), "-inf", now_ms, start=0, num=1)
            due = await pipe.execute()
        return [p for p, ids in zip(project_ids, due, strict=True) if ids]

    async def claim(self, project_id: str, now_ms: int, lease_ms: int, count: int) -> list[Claimed]:
        flat = await self._b.scripts.run(
            "claim_deliveries", self._delivery_keys(project_id), [now_ms, lease_ms, count]
        )
        return [
            Claimed(project_id=project_id, id=text(i), attempt=int(n), record=r, lease_ms=lease_ms)
            for i, n, r in zip(flat[::3], flat[1::3], flat[2::3], strict=True)
        ]

    async def complete(self, claimed: Claimed) -> None:
        await self._b.scripts.run(
            "complete_delivery", self._delivery_keys(claimed.project_id), [claimed.id]
        )

    async def retry(self, claimed: Claimed, due_ms: int) -> bool:
        """Schedule the next attempt; False if the lease was lost (someone else has it)."""
        done: int = await self._b.scripts.run(
            "retry_delivery",
            [keys.delivery_queue(claimed.project_id)],
            [claimed.id, claimed.lease_ms, due_ms],
        )
        return done == 1

    async def bury(self, claimed: Claimed, info: DeadInfo) -> bool:
        """Move to the dead letters; False if the lease was lost."""
        p = claimed.project_id
        done: int = await self._b.scripts.run(
            "bury_delivery",
            [*self._delivery_keys(p), keys.dead_letters(p), keys.dead_info(p)],
            [claimed.id, claimed.lease_ms, _encoder.encode(info), DEAD_LETTERS_MAX],
        )
        return done == 1

    @staticmethod
    def _delivery_keys(project_id: str) -> list[str]:
        return [
            keys.delivery_queue(project_id),
            keys.deliveries(project_id),
            keys.delivery_attempts(project_id),
        ]

    # -- dead letters -----------------------------------------------------------------

    async def dead_page(self, project_id: str, skip: int, count: int) -> Page[DeadDelivery]:
        """Dead letters, newest first."""
        client = self._b.client
        async with client.pipeline(transaction=True) as pipe:
            pipe.llen(keys.dead_letters(project_id))
            pipe.lrange(keys.dead_letters(project_id), skip, skip + count - 1)
            total, ids = await pipe.execute()
        data: list[DeadDelivery] = []
        if ids:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hmget(keys.deliveries(project_id), ids)
                pipe.hmget(keys.dead_info(project_id), ids)
                records, infos = await pipe.execute()
            for record, info in zip(records, infos, strict=True):
                if record is None or info is None:  # requeued or dropped meanwhile
                    continue
                d, dead = _delivery_decoder.decode(record), _dead_decoder.decode(info)
                data.append(
                    DeadDelivery(
                        id=d.id,
                        kind=d.kind,
                        url=d.url or None,
                        to=d.to,
                        event=d.event,
                        attempts=dead.attempts,
                        error=dead.error,
                        created_at=d.created_at,
                        died_at=dead.died_at,
                    )
                )
        return Page(data=data, matched=int(total), matched_limited=False, skip=skip, limit=count)

    async def requeue(self, project_id: str, delivery_id: str, now_ms: int) -> None:
        """Queue a dead letter again, due now, with a fresh count of attempts."""
        p = project_id
        result = await self._b.scripts.run(
            "requeue_dead",
            [
                keys.dead_letters(p),
                keys.dead_info(p),
                keys.deliveries(p),
                keys.delivery_attempts(p),
                keys.delivery_queue(p),
            ],
            [delivery_id, now_ms],
        )
        if result == -1:
            raise errors.DeliveryNotFound(id=delivery_id)
