"""Redis loses the tail of its AOF, cut anywhere: the journal puts every change back.

A kill -9 or a power cut with `appendfsync everysec` loses Redis's last writes, up to
about two seconds of them. codepool's answer is the hand-out journal, fsynced before a
client is told anything, which `codepool serve` applies at start ("caught-up"). The kill
test (tests/e2e/test_crash.py) lands in that window only by chance. Here the window is
made on purpose: a sale runs against a real redis-server writing its AOF with
`appendfsync always`, then copies of the data directory get that AOF cut at many
byte offsets (mid-command, mid-MULTI, between scripts) and each starts again; one is cut
to nothing (Redis lost everything: restored from a snapshot taken before the sale plus
the journal). Each must come back to exactly the state the uncut Redis held, so nothing
a client was told is lost or handed out again, and everyone who was to hear of a change
(webhook, alert emails) still does.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from redis.asyncio import Redis

from codepool import keys
from codepool.app import create_app
from codepool.durability import snapshot, snapshot_dir, startup
from codepool.embedded import EmbeddedRedis
from tests.apphelpers import (
    Tenant,
    app_client,
    journaled_settings,
    make_pool,
    make_reward,
    make_tenant,
    serve_app,
    user_token,
)
from tests.statehelpers import Dump, assert_same_state, dump

pytestmark = pytest.mark.real

CUTS = 12  # random cut points, besides "nothing lost" (150 a run also passed, 3 times)
AOF = "appendonly.aof"  # Redis 6.2's one AOF file (7.x keeps a multi-part directory)
EVENT_TYPES = ("REDEEMED_VOUCHER", "VOUCHER_USED", "VOUCHER_RELEASED", "POOL_LOW", "POOL_EXHAUSTED")


async def _sale(url: str, data_dir: Path, t: Tenant, pool: str, reward: str, partners: str) -> None:
    """Purchases (some retried), redeems and releases, and partner issues that run their
    small pool dry, get 409s, give codes back and run it dry again, through two app
    processes' worth of apps, concurrently: coalesced script calls, as in a flash sale,
    crossing low-stock thresholds. Every request is answered and journaled."""
    rng = random.Random(11)
    partner_codes: list[str] = []
    async with AsyncExitStack() as stack:
        workers = [
            await stack.enter_async_context(
                serve_app(create_app(journaled_settings(url, data_dir)))
            )
            for _ in range(2)
        ]

        async def buyer(i: int) -> None:
            w = workers[i % 2]
            headers = {**user_token(t, f"u{i % 40}"), "Idempotency-Key": f"buy-{i}"}
            path = f"/v1/projects/{t.id}/rewards/{reward}/purchase"
            r = await w.post(path, headers=headers)
            assert r.status_code == 201, r.text
            code = r.json()["code"]
            if i % 9 == 0:  # a retry gets the same code
                again = await w.post(path, headers=headers)
                assert again.json()["code"] == code, again.text
            if i % 4 == 0:
                await asyncio.sleep(rng.random() / 100)
                action, who = ("redeem", t.pos) if i % 8 == 0 else ("release", t.admin)
                r = await w.post(
                    f"/v1/projects/{t.id}/codes/{action}", json={"code": code}, headers=who
                )
                assert r.status_code == 200, r.text

        async def partner(i: int) -> None:
            w = workers[i % 2]
            r = await w.post(
                f"/v1/projects/{t.id}/pools/{partners}/issue",
                json={"count": 1 + i % 5, "user_id": f"partner-{i % 2}"},
                headers=t.admin,
            )
            if r.status_code == 409:
                assert r.json()["error"]["code"] == "pool_exhausted", r.text
                return
            assert r.status_code == 200, r.text
            codes = [x["code"] for x in r.json()["codes"]]
            partner_codes.extend(codes[1:])
            if i % 3 == 0:  # given back
                code = codes[0]
                r = await w.post(
                    f"/v1/projects/{t.id}/codes/release", json={"code": code}, headers=t.admin
                )
                assert r.status_code == 200, r.text

        traffic = [buyer(i) for i in range(240)] + [partner(i) for i in range(40)]
        rng.shuffle(traffic)
        await asyncio.gather(*traffic)
        # Run the partners' pool dry (releases may have refilled it), give one code back
        # (which re-arms POOL_EXHAUSTED) and take it again: it fires once more.
        partners_url = f"/v1/projects/{t.id}/pools/{partners}"
        available = (await workers[0].get(partners_url, headers=t.admin)).json()["available"]
        if available:
            r = await workers[0].post(
                f"{partners_url}/issue", json={"count": available}, headers=t.admin
            )
            assert r.status_code == 200, r.text
        back = {"code": partner_codes[0]}
        r = await workers[0].post(f"/v1/projects/{t.id}/codes/release", json=back, headers=t.admin)
        assert r.status_code == 200, r.text
        r = await workers[1].post(f"{partners_url}/issue", json={"count": 1}, headers=t.admin)
        assert r.json()["codes"][0]["code"] == back["code"], r.text


async def _after_cut(source: Path, target: Path, size: int) -> tuple[str, Dump]:
    """Start Redis on a copy of ``source`` whose AOF is cut to ``size`` bytes; let
    codepool make its state good; return what it did and the state."""
    shutil.copytree(source, target)
    with (target / "redis" / AOF).open("r+b") as f:
        f.truncate(size)
    with EmbeddedRedis(target / "redis") as server:
        client = Redis.from_url(server.url)
        try:
            outcome = await startup.ensure_state(client, journaled_settings(server.url, target))
            state = await dump(client)
            state.pop(keys.EPOCH.encode())
        finally:
            await client.aclose()
    return outcome, state


async def test_any_cut_of_the_aof_comes_back_to_the_same_state(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with EmbeddedRedis(data / "redis") as server:
        client = Redis.from_url(server.url)
        try:
            # Every reply after its AOF write: the file then holds every change in order,
            # and any prefix of it is a state Redis really passed through.
            await client.config_set("appendfsync", "always")
            settings = journaled_settings(server.url, data)
            assert await startup.ensure_state(client, settings) == "initialized"
            async with app_client(client, journal=True, data_dir=str(data), notify=False) as c:
                t = await make_tenant(c)
                codes = [f"C-{i:04d}" for i in range(500)] + ["TWICE"] * 4
                # Someone to tell of everything: outbox entries are part of the state.
                hooks = {"url": "http://127.0.0.1:9/hook", "events": list(EVENT_TYPES)}
                r = await c.put(f"/v1/projects/{t.id}/webhook", json=hooks, headers=t.admin)
                assert r.status_code == 200, r.text
                pool = await make_pool(
                    c,
                    t,
                    codes,
                    low_stock_thresholds=[300, 200, 10],
                    notify={"webhook_url": "http://127.0.0.1:9/alerts"},
                )
                reward = await make_reward(c, t, pool["id"], per_user_limit=12)
                partners = await make_pool(
                    c,
                    t,
                    [f"P-{i:03d}" for i in range(50)],
                    name="partners",
                    low_stock_thresholds=[20, 0],
                    notify={"emails": ["ops@example.com"]},
                )
            # A snapshot on disk, older than every cut: a catch-up must work from what
            # Redis kept plus the journal, not go back to it.
            await snapshot.take_snapshot(client, snapshot_dir.snapshots_dir(data))
            aof = data / "redis" / AOF
            if not aof.is_file():
                pytest.skip(f"{server!r} keeps no single {AOF} to cut")
            start = aof.stat().st_size
            await _sale(server.url, data, t, pool["id"], reward["id"], partners["id"])
            live = await dump(client)
            live.pop(keys.EPOCH.encode())
            events = live[keys.events(t.id).encode()][1]
            alerts = Counter(f[b"type"] for _, f in events if f[b"type"].startswith(b"POOL_"))
            assert alerts[b"POOL_EXHAUSTED"] >= 2 and alerts[b"POOL_LOW"] >= 3, alerts
        finally:
            await client.aclose()
    end = aof.stat().st_size
    assert end > start + 100_000, "the sale wrote too little to cut"

    # Cut to nothing, Redis lost everything: the pre-sale snapshot plus the whole sale's
    # journal ("restored"). Cut anywhere in the sale: "caught-up". Not cut: "kept".
    rng = random.Random(5)
    cuts = [0, *sorted(rng.sample(range(start, end), CUTS)), end]
    for n, size in enumerate(cuts):
        outcome, state = await _after_cut(data, tmp_path / f"cut-{n}", size)
        expected = "restored" if size == 0 else "kept" if size == end else "caught-up"
        assert outcome == expected, (size, end, outcome)
        assert_same_state(state, live, f"AOF cut to {size} of {end} bytes", ids_renewed=True)
