"""Per-minute counters and empty-soon alerts, in the scripts (fakeredis and a real server).

Time is driven through the scripts' `now` argument (the store's clock, patched), so a
test can put hand-outs in any minute, across midnight, and a sale at any pace.
"""

from __future__ import annotations

import random
import time
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from codepool import keys
from codepool.scripts import script_sources
from codepool.settings import load_settings
from codepool.store import issuing, pos
from codepool.store.base import Backend, text
from codepool.store.issuing import IssueRequest, issue_call
from codepool.store.pos import PosStore
from codepool.store.stats import (
    MINUTES_PER_DAY,
    StatsStore,
    forecast,
    handout_rate,
    minute_of,
    recent_issued,
    stats_keys,
)
from codepool.store.trace import StreamEntries
from tests.scripthelpers import POOL, P, create_pool, fill
from tests.servers import runs_on_jemalloc

# Today's midnight (UTC): the tests cross a day's key too, and the counters they write
# live (8 days after their day) for as long as the test needs them.
MIDNIGHT = float(time.time() // 86400 * 86400)


class Clock:
    """The time the store gives the scripts as `now`."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def backend(redis: Redis) -> Backend:
    return Backend(redis, load_settings({}))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(MIDNIGHT)
    monkeypatch.setattr(issuing, "now", c)
    monkeypatch.setattr(pos, "now", c)
    return c


async def _events(b: Backend, *kinds: str) -> list[dict[str, str]]:
    out = []
    for _, fields in cast(StreamEntries, await b.client.xrange(keys.events(P))):
        f = {text(k): text(v) for k, v in fields.items()}
        if f["type"] in kinds:
            out.append(f)
    return out


async def _issue(b: Backend, count: int = 1) -> int:
    call = await issue_call(b, P, POOL, [IssueRequest(count=count)])
    assert [len(r.codes) for r in call.results] == [count], call
    return call.available


async def _sale(b: Backend, clock: Clock, per_second: int, seconds: int, count: int = 1) -> None:
    """A steady sale: ``per_second`` hand-outs of ``count`` codes each second."""
    for _ in range(seconds * per_second):
        clock.t += 1 / per_second
        await _issue(b, count)


# -- the estimator: one formula in Lua and in Python --------------------------------


async def test_lua_and_python_rates_are_the_same_doubles(redis: Redis) -> None:
    source = "local rcall = redis.call\n" + script_sources()["issue"].split("local now, pool_id")[0]
    source += (
        "local counts = {}\nfor i = 1, 6 do counts[i] = tonumber(ARGV[i]) end\n"
        "return string.format('%.17g', handout_rate(counts, tonumber(ARGV[7])))"
    )
    rng = random.Random(17)
    cases: list[tuple[list[int], float]] = [
        ([0] * 6, 0.0),
        ([1, 0, 0, 0, 0, 0], 1 / 60),  # a lone request: not projected
        ([10, 0, 0, 0, 0, 0], 0.1),  # the minimum: projected over a quarter minute
        ([600, 1200, 0, 0, 0, 7], 0.99),
    ]
    for _ in range(300):
        counts = [rng.choice([0, 1, 9, 10, rng.randrange(100_000)]) for _ in range(6)]
        cases.append((counts, rng.choice([0.0, rng.random(), 1 / 3, 0.25])))
    for counts, elapsed in cases:
        lua = await redis.eval(source, 0, *counts, repr(elapsed))
        assert float(lua) == handout_rate(counts, elapsed), (counts, elapsed)


def test_the_estimator_reacts_to_a_spike_not_to_a_lone_request() -> None:
    # One purchase a second into a quiet minute: one a minute, not sixty.
    assert handout_rate([1, 0, 0, 0, 0, 0], 1 / 60) == 1.0
    # A flash sale of 10 a second, 6 seconds in: its full pace already (600 a minute).
    assert handout_rate([60, 0, 0, 0, 0, 0], 0.1) == 240.0  # 60 / a quarter minute
    assert handout_rate([150, 0, 0, 0, 0, 0], 0.25) == 600.0
    # Stopped: the last minute fades over the next (its share of the last 60 s) ...
    assert handout_rate([0, 600, 0, 0, 0, 0], 0.25) == 450.0
    # ... and the weighted mean of the whole minutes keeps a memory of it (the larger).
    assert handout_rate([0, 600, 0, 0, 0, 0], 0.5) == 600 / 1.9375
    assert handout_rate([0, 0, 600, 0, 0, 0], 0.5) == pytest.approx(600 * 0.5 / 1.9375)


# -- counters -------------------------------------------------------------------------


async def test_issue_redeem_release_count_into_their_minute_and_day(
    backend: Backend, clock: Clock
) -> None:
    await create_pool(backend)
    await fill(backend, [f"C{i}" for i in range(20)])
    clock.t = MIDNIGHT - 0.5  # the day before's last minute
    await _issue(backend, 3)
    clock.t = MIDNIGHT + 0.0  # the new day's first
    await _issue(backend, 2)
    call = await issue_call(backend, P, POOL, [IssueRequest(count=1)])
    code = call.results[0].codes[0]
    clock.t = MIDNIGHT + 61.0
    assert (await PosStore(backend).redeem(P, code)).status == "redeemed"
    second = (await issue_call(backend, P, POOL, [IssueRequest(count=1)])).results[0].codes[0]
    await PosStore(backend).release(P, second)

    stats = await StatsStore(backend).get(P, POOL, 3, at=MIDNIGHT + 61.0)
    assert [(p.t - MIDNIGHT, p.issued, p.redeemed, p.released) for p in stats.series] == [
        (-60.0, 3, 0, 0),
        (0.0, 3, 0, 0),
        (60.0, 1, 1, 1),
    ]
    assert stats.available == 20 - 7 + 1
    today, yesterday = stats_keys(P, POOL, MIDNIGHT)
    assert today.endswith(f":{int(MIDNIGHT // 86400)}")
    for key, day_end in ((today, MIDNIGHT + 86400), (yesterday, MIDNIGHT)):
        assert await backend.client.strlen(key) == MINUTES_PER_DAY * 3 * 4
        # Kept 8 days after its day ends.
        ttl = await backend.client.ttl(key)
        assert abs(time.time() + ttl - (day_end + 8 * 86400)) < 5


@pytest.mark.real
async def test_a_pool_day_of_counters_costs_17_kb(real_redis: Redis, clock: Clock) -> None:
    b = Backend(real_redis, load_settings({}))
    await create_pool(b)
    await fill(b, [f"C{i}" for i in range(1440)], per_call=500)
    for minute in range(0, MINUTES_PER_DAY, 7):  # hand-outs all day long
        clock.t = MIDNIGHT + minute * 60 + 1
        await _issue(b)
    usage = await real_redis.memory_usage(stats_keys(P, POOL, MIDNIGHT)[0])
    # The day's 17,280 bytes, as the allocator rounds them (jemalloc, which the embedded
    # Redis preloads where the system has it, to its 20,480 size class), plus the key.
    on_jemalloc = runs_on_jemalloc((await real_redis.info("server"))["process_id"])
    assert usage is not None and usage <= (20_480 if on_jemalloc else 17_280) + 120, usage


# -- empty-soon alerts ----------------------------------------------------------------


async def test_empty_soon_fires_once_per_crossing_and_a_refill_rearms(
    backend: Backend, clock: Clock
) -> None:
    await create_pool(backend, soon="300")
    # (500 codes per commit call, not 3: thousands of Lua calls are seconds on fakeredis)
    await fill(backend, [f"C{i:04d}" for i in range(2000)], at=clock.t, per_call=500)
    clock.t = MIDNIGHT + 3600
    # 10 a second = 600 a minute: 2000 codes last under 4 minutes. Seen as such within
    # 10 s (docs/stats.md): it fires then.
    await _sale(backend, clock, 10, 30)
    soon = await _events(backend, "POOL_EMPTY_SOON")
    assert len(soon) == 1, soon
    alert = soon[0]
    assert alert["threshold_seconds"] == "300" and alert["pool_id"] == POOL
    available = int(alert["available"])
    # The rate and empty_at it carries are the Python formula's on the same counters.
    at = float(alert["time"])
    counts = await recent_issued(backend.client, P, POOL, at)
    counts[0] -= _issued_since(at, clock)  # the counters as they stood then
    rate, empty_at = forecast(counts, at, available)
    assert float(alert["rate_per_minute"]) == rate and float(alert["empty_at"]) == empty_at
    assert empty_at - at <= 300

    await _sale(backend, clock, 10, 20)  # still within 300 s: no second alert
    assert len(await _events(backend, "POOL_EMPTY_SOON")) == 1
    assert await backend.client.hget(keys.pool(P, POOL), "soon_armed") == b""
    # A refill: the forecast moves back above 300 s, the alert is armed again ...
    await fill(backend, [f"R{i:05d}" for i in range(5000)], "refill", at=clock.t, per_call=500)
    assert await backend.client.hget(keys.pool(P, POOL), "soon_armed") == b"300"
    # ... and fires once more when the sale, faster now, brings the end near again.
    await _sale(backend, clock, 5, 12, count=20)
    soon = await _events(backend, "POOL_EMPTY_SOON")
    assert len(soon) == 2, soon


def _issued_since(at: float, clock: Clock) -> int:
    """Single-code hand-outs of the 10/s sale made after ``at`` in its minute (the sale
    went on after the alert)."""
    minute = minute_of(at)[0]
    end = min(clock.t, (minute + 1) * 60)
    return round((end - at) * 10) if end > at else 0


async def test_a_sale_fires_empty_soon_long_before_pool_low(backend: Backend, clock: Clock) -> None:
    # 1000 codes, low-stock alert at 100, empty-soon at 5 minutes; a sale of 4 a second
    # (240 a minute: the pool lasts about 4 minutes).
    await create_pool(backend, thresholds="100", soon="300")
    await fill(backend, [f"C{i:04d}" for i in range(1000)], at=clock.t, per_call=500)
    clock.t = MIDNIGHT + 7200 + 0.5
    await _sale(backend, clock, 4, 240)
    kinds = [
        (f["type"], int(f["available"]), float(f["time"]))
        for f in await _events(backend, "POOL_EMPTY_SOON", "POOL_LOW")
    ]
    assert [k for k, _, _ in kinds] == ["POOL_EMPTY_SOON", "POOL_LOW"], kinds
    (_, soon_left, soon_at), (_, low_left, low_at) = kinds
    # Within seconds of the start, with most of the pool left; POOL_LOW only minutes later.
    assert soon_at - (MIDNIGHT + 7200) < 15 and soon_left > 900
    assert low_left == 100 and low_at - soon_at > 180


async def test_a_lone_request_does_not_fire(backend: Backend, clock: Clock) -> None:
    # 100 codes, alert at 10 minutes: one purchase a second into a quiet minute is a rate
    # of 1 a minute (100 minutes left), not 60 (under 2 minutes).
    await create_pool(backend, soon="600")
    await fill(backend, [f"C{i}" for i in range(100)], at=clock.t)
    clock.t = MIDNIGHT + 600 + 1
    await _issue(backend)
    assert await _events(backend, "POOL_EMPTY_SOON") == []
    stats = await StatsStore(backend).get(P, POOL, 1, at=clock.t)
    assert stats.rate_per_minute == 1.0 and stats.empty_at == clock.t + 99 * 60
    # Ten more within seconds: a spike, projected; the pool would be dry in under 10 min.
    for _ in range(10):
        clock.t += 0.2
        await _issue(backend)
    soon = await _events(backend, "POOL_EMPTY_SOON")
    # The tenth code of the minute (RATE_MIN_CURRENT) starts the projection: 10 in a
    # (floored) quarter minute, 90 left, 135 s to empty.
    assert len(soon) == 1 and float(soon[0]["rate_per_minute"]) == 10 / 0.25
    assert soon[0]["available"] == "90"


async def test_the_rate_falling_rearms_at_the_next_step(backend: Backend, clock: Clock) -> None:
    await create_pool(backend, soon="120")
    await fill(backend, [f"C{i:03d}" for i in range(300)], at=clock.t)
    clock.t = MIDNIGHT + 60
    for _ in range(60):  # 60 in 3 s: 240 left at 240+/min
        clock.t += 0.05
        await _issue(backend)
    assert len(await _events(backend, "POOL_EMPTY_SOON")) == 1
    assert await backend.client.hget(keys.pool(P, POOL), "soon_armed") == b""
    clock.t += 600  # quiet for ten minutes: the rate has fallen to nothing
    await _issue(backend)
    assert await backend.client.hget(keys.pool(P, POOL), "soon_armed") == b"120"
    assert len(await _events(backend, "POOL_EMPTY_SOON")) == 1


async def test_a_release_rearms_when_it_lifts_the_forecast(backend: Backend, clock: Clock) -> None:
    await create_pool(backend, soon="60")
    await fill(backend, [f"C{i:02d}" for i in range(40)], at=clock.t)
    clock.t = MIDNIGHT + 60
    handed: list[str] = []
    for _ in range(20):  # 20 in 2 s: projected 80 a minute, 20 left: 15 s to empty
        clock.t += 0.1
        call = await issue_call(backend, P, POOL, [IssueRequest(count=1)])
        handed += call.results[0].codes
    assert len(await _events(backend, "POOL_EMPTY_SOON")) == 1
    clock.t += 50  # the same minute: still 20 / (20 / 0.87 min) = 52 s to empty
    await PosStore(backend).release(P, handed[0])
    assert await backend.client.hget(keys.pool(P, POOL), "soon_armed") == b""
    # Releases that lift the stock so the forecast is past 60 s re-arm it.
    for code in handed[1:15]:
        await PosStore(backend).release(P, code)
    assert await backend.client.hget(keys.pool(P, POOL), "soon_armed") == b"60"


async def test_update_pool_arms_only_thresholds_the_forecast_is_above(
    backend: Backend, clock: Clock
) -> None:
    await create_pool(backend)
    await fill(backend, [f"C{i:03d}" for i in range(200)], at=clock.t)
    clock.t = MIDNIGHT + 60
    for _ in range(40):  # 40 in 4 s: 160 a minute, 160 left: a minute to empty
        clock.t += 0.1
        await _issue(backend)
    update: list[Any] = [
        keys.pool_names(P),
        keys.pool(P, POOL),
        keys.pool_available(P, POOL),
        *stats_keys(P, POOL, clock.t),
    ]
    args: list[Any] = [POOL, "", "", "", "", "30,600", clock.t]
    assert await backend.scripts.run("update_pool", update, args) == 1
    pool = await backend.client.hmget(keys.pool(P, POOL), "soon", "soon_armed")
    assert pool == [b"30,600", b"30"]  # 600 s is already crossed: no alert for it
    args[5] = "-"
    assert await backend.scripts.run("update_pool", update, args) == 1
    assert await backend.client.hmget(keys.pool(P, POOL), "soon", "soon_armed") == [b"", b""]
