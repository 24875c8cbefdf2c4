"""The outbox and delivery scripts, on fakeredis and on a real redis-server."""

from __future__ import annotations

import json
from typing import cast

import pytest
from redis.asyncio import Redis

from codepool import errors, keys
from codepool.models import WebhookEvent
from codepool.notify.records import DeadInfo, Delivery
from codepool.notify.store import GROUP, Claimed, DeliveryStore
from codepool.scripts import Status
from codepool.settings import load_settings
from codepool.store.base import Backend
from codepool.store.issuing import IssueRequest, issue_batch, issue_call
from codepool.store.pos import PosStore
from codepool.store.trace import StreamEntries, parse_user_event
from tests.scripthelpers import POOL, P, create_pool, fill

NOW = 1_700_000_000_000  # ms


@pytest.fixture
def backend(redis: Redis) -> Backend:
    return Backend(redis, load_settings({}))


@pytest.fixture
def store(backend: Backend) -> DeliveryStore:
    return DeliveryStore(backend)


async def _pool(b: Backend, codes: list[str], thresholds: str, notify: str) -> None:
    await create_pool(b, name="Summer", thresholds=thresholds, notify=notify)
    await fill(b, codes)


async def _outbox(b: Backend) -> list[dict[str, str]]:
    entries = cast(StreamEntries, await b.client.xrange(keys.outbox(P)))
    return [{k.decode(): v.decode() for k, v in f.items()} for _, f in entries]


async def _events(b: Backend) -> list[tuple[str, str]]:
    entries = cast(StreamEntries, await b.client.xrange(keys.events(P)))
    return [(i.decode(), f[b"type"].decode()) for i, f in entries]


async def test_pool_alerts_reach_the_outbox_only_when_the_pool_notifies_someone(
    backend: Backend,
) -> None:
    await _pool(backend, ["A", "B", "C"], "2", json.dumps({"emails": [], "webhook_url": None}))
    await issue_batch(backend, P, POOL, [IssueRequest(count=1)])  # 2 left: POOL_LOW
    assert [t for _, t in await _events(backend)] == ["POOL_LOW"]
    assert await _outbox(backend) == []  # nobody to tell

    notify = json.dumps({"emails": ["ops@example.com"], "webhook_url": None})
    await backend.client.hset(keys.pool(P, POOL), "notify", notify)
    await issue_batch(backend, P, POOL, [IssueRequest(count=2)])  # 0 left: POOL_EXHAUSTED
    events = await _events(backend)
    [entry] = await _outbox(backend)
    assert entry == {
        "event_id": events[-1][0],  # the id of the event the same script wrote
        "hook": "",
        "notify": notify,
        "pool_name": "Summer",
        "type": "POOL_EXHAUSTED",
        "time": entry["time"],
        "pool_id": POOL,
        "available": "0",
    }


async def test_project_webhook_takes_the_types_it_subscribed_to(backend: Backend) -> None:
    await _pool(backend, ["A", "B", "C"], "", "{}")
    await backend.client.hset(
        keys.reward(P, "r1"), mapping={"pool_id": POOL, "per_user_limit": "", "hide_code": "0"}
    )
    await issue_batch(backend, P, POOL, [IssueRequest(count=1, user_id="u", reward_id="r1")])
    assert await _outbox(backend) == []  # no webhook yet

    await backend.client.hset(
        keys.webhook(P), mapping={"url": "https://h.example/x", "events": "REDEEMED_VOUCHER"}
    )
    await issue_batch(
        backend,
        P,
        POOL,
        [
            IssueRequest(count=1, user_id="u", reward_id="r1", purchase_id="p2"),
            IssueRequest(count=1, user_id="v", reward_id="r1", purchase_id="p3"),
        ],
    )
    entries = await _outbox(backend)
    assert [(e["type"], e["code"], e["user_id"], e["hook"]) for e in entries] == [
        ("REDEEMED_VOUCHER", "B", "u", "https://h.example/x"),
        ("REDEEMED_VOUCHER", "C", "v", "https://h.example/x"),
    ]
    event_ids = [i for i, t in await _events(backend) if t == "REDEEMED_VOUCHER"][1:]
    assert [e["event_id"] for e in entries] == event_ids

    pos = PosStore(backend)
    await pos.redeem(P, "B")  # VOUCHER_USED: not subscribed
    await pos.release(P, "C")  # VOUCHER_RELEASED: not subscribed
    assert len(await _outbox(backend)) == 2
    await backend.client.hset(keys.webhook(P), "events", "VOUCHER_USED,VOUCHER_RELEASED")
    await pos.redeem(P, "A")
    await issue_batch(backend, P, POOL, [IssueRequest(count=1, user_id="w", reward_id="r1")])
    await pos.release(P, "C")
    assert [e["type"] for e in await _outbox(backend)][2:] == ["VOUCHER_USED", "VOUCHER_RELEASED"]


async def test_an_issue_call_reports_the_alerts_it_fired(backend: Backend) -> None:
    """The journal keeps them (a restore fires again those Redis lost)."""
    await _pool(backend, ["A", "B", "C", "D"], "3,1,0", "{}")
    call = await issue_call(backend, P, POOL, [IssueRequest(count=1)])
    assert (call.available, call.alerts) == (3, ["3"])
    call = await issue_call(backend, P, POOL, [IssueRequest(count=1)])
    assert (call.available, call.alerts) == (2, [])
    call = await issue_call(backend, P, POOL, [IssueRequest(count=1), IssueRequest(count=1)])
    assert (call.available, call.alerts) == (0, ["1", "0", "exhausted"])
    call = await issue_call(backend, P, POOL, [IssueRequest(count=1)])
    assert call.alerts == [] and call.results[0].status == Status.EXHAUSTED


async def test_restored_events_reach_whoever_the_lost_ones_would_have(backend: Backend) -> None:
    """restore_events.lua: events under the ids given, and outbox entries by the rules of
    the scripts that first wrote them (project webhook types, a pool's notify)."""
    notify = json.dumps({"emails": ["ops@example.com"], "webhook_url": None})
    await _pool(backend, ["A"], "5", notify)
    await backend.client.hset(keys.pool(P, "quiet"), mapping={"name": "Quiet", "notify": "{}"})
    await backend.client.hset(
        keys.webhook(P), mapping={"url": "https://h.example/x", "events": "VOUCHER_USED"}
    )
    events = [
        ("5-0", ["type", "VOUCHER_USED", "time", "0.005", "code", "A", "pool_id", POOL,
                 "user_id", "u:1"]),
        ("5-1", ["type", "VOUCHER_RELEASED", "time", "0.005", "code", "B", "pool_id", POOL,
                 "user_id", ""]),
        ("7-0", ["type", "POOL_LOW", "time", "0.007", "pool_id", POOL, "threshold", "5"]),
        ("8-0", ["type", "POOL_LOW", "time", "0.008", "pool_id", "quiet", "threshold", "1"]),
    ]  # fmt: skip
    args: list[str | int] = [keys.pool(P, "\0"), len(events), keys.user_events(P, "\0"), 100]
    for event_id, fields in events:
        args += [event_id, len(fields), *fields]
    names = [keys.events(P), keys.outbox(P), keys.webhook(P)]
    assert await backend.scripts.run("restore_events", names, args) == 4
    assert await _events(backend) == [(i, f[1]) for i, f in events]
    # An event with a user also goes to the user's own stream, under the same id.
    mine = cast(list[bytes], await backend.client.lrange(keys.user_events(P, "u:1"), 0, -1))
    assert [parse_user_event(item) for item in mine] == [(b"5-0", b"VOUCHER_USED")]
    assert await backend.client.exists(keys.user_events(P, "")) == 0
    entries = await _outbox(backend)
    assert [(e["event_id"], e["type"], e["hook"], e["notify"]) for e in entries] == [
        ("5-0", "VOUCHER_USED", "https://h.example/x", ""),
        ("7-0", "POOL_LOW", "", notify),  # the quiet pool's alert: nobody to tell
    ]
    assert entries[1]["pool_name"] == "Summer"


def _delivery(event_id: str, n: int) -> Delivery:
    event = WebhookEvent(id=event_id, type="POOL_LOW", time=1.0, project_id=P, available=1)
    return Delivery(id=f"{event_id}.{n}", kind="webhook", url="http://x", event=event, created_at=1)


async def test_fan_out_queues_each_entry_once_and_empties_the_outbox(
    backend: Backend, store: DeliveryStore
) -> None:
    await store.ensure_group(P)
    entry_id = await backend.client.xadd(keys.outbox(P), {"event_id": "1-0", "type": "POOL_LOW"})
    [(_, entries)] = await store.read([P], "w1", 10, 1)
    assert [e[0] for e in entries] == [entry_id]
    deliveries = [_delivery("1-0", 0), _delivery("1-0", 1)]
    assert await store.fan_out(P, entry_id, deliveries, NOW) == 2
    # A second worker that took the entry over finds it gone: nothing queued twice.
    assert await store.fan_out(P, entry_id, deliveries, NOW) == 0
    assert await backend.client.xlen(keys.outbox(P)) == 0
    assert (await backend.client.xpending(keys.outbox(P), GROUP))["pending"] == 0
    queue = await backend.client.zrange(keys.delivery_queue(P), 0, -1, withscores=True)
    assert queue == [(b"1-0.0", float(NOW)), (b"1-0.1", float(NOW))]
    assert await backend.client.hlen(keys.deliveries(P)) == 2


async def test_entries_a_vanished_reader_held_are_taken_over(
    backend: Backend, store: DeliveryStore
) -> None:
    await store.ensure_group(P)
    await store.ensure_group(P)  # BUSYGROUP is fine
    entry_id = await backend.client.xadd(keys.outbox(P), {"event_id": "1-0", "type": "POOL_LOW"})
    await store.read([P], "crashed", 10, 1)
    assert await store.read([P], "w2", 10, 1) == []  # delivered to "crashed" already
    taken = await store.take_over(P, "w2", 0, 10)
    assert [e[0] for e in taken] == [entry_id]


async def _queue(store: DeliveryStore, *deliveries: Delivery) -> None:
    for d in deliveries:
        entry_id = await store._b.client.xadd(keys.outbox(P), {"x": "1"})
        await store.fan_out(P, entry_id, [d], NOW)


async def test_claim_leases_due_deliveries_and_counts_attempts(
    backend: Backend, store: DeliveryStore
) -> None:
    await store.ensure_group(P)
    await _queue(store, _delivery("1-0", 0))
    await backend.client.zadd(keys.delivery_queue(P), {"ghost": NOW})  # record gone
    lease = NOW + 60_000
    [first] = await store.claim(P, NOW, lease, 10)
    assert (first.id, first.attempt, first.lease_ms) == ("1-0.0", 1, lease)
    assert first.record == await backend.client.hget(keys.deliveries(P), "1-0.0")
    assert await backend.client.zscore(keys.delivery_queue(P), "ghost") is None
    # Leased: nobody else takes it until the lease ends; then it comes back, attempt 2.
    assert await store.claim(P, NOW + 1000, NOW + 61_000, 10) == []
    [again] = await store.claim(P, lease, lease + 60_000, 10)
    assert again.attempt == 2
    assert await store.due_projects([P, "other"], lease + 60_000) == [P]


async def test_retry_and_bury_need_the_lease_and_complete_forgets(
    backend: Backend, store: DeliveryStore
) -> None:
    await store.ensure_group(P)
    await _queue(store, _delivery("1-0", 0), _delivery("2-0", 0))
    claimed = await store.claim(P, NOW, NOW + 100, 10)
    first, second = sorted(claimed, key=lambda c: c.id)
    stale = Claimed(
        project_id=P, id=first.id, attempt=1, record=first.record, lease_ms=first.lease_ms - 1
    )
    assert not await store.retry(stale, NOW + 500)
    assert await store.retry(first, NOW + 500)
    assert await backend.client.zscore(keys.delivery_queue(P), first.id) == NOW + 500
    assert not await store.bury(first, DeadInfo(attempts=1, error="x", died_at=1))  # lease moved

    await store.complete(second)
    assert await backend.client.zscore(keys.delivery_queue(P), second.id) is None
    assert not await backend.client.hexists(keys.deliveries(P), second.id)
    assert not await backend.client.hexists(keys.delivery_attempts(P), second.id)


async def test_bury_keeps_the_newest_dead_letters_and_requeue_brings_one_back(
    backend: Backend, store: DeliveryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("codepool.notify.store.DEAD_LETTERS_MAX", 2)
    await store.ensure_group(P)
    await _queue(store, *(_delivery(f"{i}-0", 0) for i in (1, 2, 3)))
    for claimed in sorted(await store.claim(P, NOW, NOW + 100, 10), key=lambda c: c.id):
        assert await store.bury(
            claimed, DeadInfo(attempts=claimed.attempt, error="HTTP 500", died_at=2)
        )
    page = await store.dead_page(P, 0, 10)
    assert [d.id for d in page.data] == ["3-0.0", "2-0.0"] and page.matched == 2
    assert (page.data[0].attempts, page.data[0].error, page.data[0].url) == (
        1,
        "HTTP 500",
        "http://x",
    )
    # The oldest dropped out with its record.
    assert not await backend.client.hexists(keys.deliveries(P), "1-0.0")
    assert await backend.client.zcard(keys.delivery_queue(P)) == 0

    await store.requeue(P, "2-0.0", NOW + 5)
    assert [d.id for d in (await store.dead_page(P, 0, 10)).data] == ["3-0.0"]
    [back] = await store.claim(P, NOW + 5, NOW + 100, 10)
    assert (back.id, back.attempt) == ("2-0.0", 1)  # a fresh count
    for missing in ("2-0.0", "1-0.0", "nope"):
        with pytest.raises(errors.DeliveryNotFound):
            await store.requeue(P, missing, NOW)
