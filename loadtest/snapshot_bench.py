"""Durability figures: snapshot time and size, Redis latency meanwhile, journal cost.

    python loadtest/snapshot_bench.py --codes 10000000        # the closing-note figures
    python loadtest/snapshot_bench.py --codes 200000          # quick

Starts its own embedded Redis (AOF on, as ``codepool serve`` runs it) and:

1. Journal cost: issue throughput through the coalescing issuer (the path purchases
   take, minus HTTP) with the hand-out journal off and on, in alternating rounds on
   the same Redis, as a ratio.
2. Snapshot: loads a pool of N 10-character codes (pipelined RPUSH into a staging list
   and the upload commit script), hands out some, then times a snapshot while a
   separate process sends PING and one-code issue calls back to back, and reports the
   longest wait either saw during the snapshot, against the same probe before it.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import redis
from redis.asyncio import Redis

from codepool import keys
from codepool.durability import snapshot, snapshot_format
from codepool.durability.journal import Journal
from codepool.durability.loop import SNAPSHOT_NICENESS
from codepool.embedded import EmbeddedRedis
from codepool.issuer import Issuer
from codepool.models import PoolIn, ProjectIn
from codepool.settings import load_settings
from codepool.store.base import Backend
from codepool.store.codes import CodeStore
from codepool.store.issuing import IssueRequest
from codepool.store.pools import PoolStore
from codepool.store.projects import ProjectStore

PROJECT = "bench"
LOAD_CHUNK = 50_000


async def make_pool(backend: Backend, name: str, codes: int, prefix: str) -> str:
    """A pool of ``codes`` distinct 10-character codes, loaded the fast way."""
    if not await ProjectStore(backend).exists(PROJECT):
        await ProjectStore(backend).create(ProjectIn(id=PROJECT, name="Bench"))
    pool = await PoolStore(backend).create(PROJECT, PoolIn(name=name))
    staging = keys.pool_staging(PROJECT, pool.id, "load")
    client = backend.client
    for start in range(0, codes, LOAD_CHUNK * 4):
        async with client.pipeline(transaction=False) as pipe:
            for chunk in range(start, min(start + LOAD_CHUNK * 4, codes), LOAD_CHUNK):
                end = min(chunk + LOAD_CHUNK, codes)
                pipe.rpush(staging, *(f"{prefix}{i:09d}" for i in range(chunk, end)))
            await pipe.execute()
    await CodeStore(backend).commit(PROJECT, pool.id, "load")
    return pool.id


async def issue_rate(issuer: Issuer, pool_id: str, requests: int, concurrency: int) -> float:
    """Issue requests per second, ``concurrency`` of them in flight at any time."""
    left = requests

    async def one_client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            result = await issuer.issue(PROJECT, pool_id, IssueRequest(count=1, user_id="u"))
            assert result.codes, result

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)


async def journal_cost(
    url: str, directory: Path, requests: int, concurrency: int, rounds: int
) -> None:
    settings = load_settings({}, redis_url=url)
    client = Redis.from_url(url, max_connections=64)
    plain = Backend(client, settings)
    journal = Journal(directory / "journal")
    journaled = Backend(client, settings, journal)
    pool_id = await make_pool(plain, "journal-cost", requests * rounds * 2 + 10, "J")
    without: list[float] = []
    with_journal: list[float] = []
    for _ in range(rounds):
        without.append(await issue_rate(Issuer(plain, 256), pool_id, requests, concurrency))
        with_journal.append(
            await issue_rate(Issuer(journaled, 256), pool_id, requests, concurrency)
        )
    await journal.close()
    await client.aclose()
    off, on = statistics.median(without), statistics.median(with_journal)
    print(f"issue throughput, {concurrency} in flight, {requests} requests x {rounds} rounds:")
    print(f"  journal off: {off:9.0f} req/s   (rounds: {', '.join(f'{r:.0f}' for r in without)})")
    print(
        f"  journal on:  {on:9.0f} req/s   (rounds: {', '.join(f'{r:.0f}' for r in with_journal)})"
    )
    print(
        f"  ratio on/off: {on / off:.2f}   ({journal.writes} fsyncs for {journal.records} records)"
    )


def probe(url: str, pool_key: str, avail_key: str, conn: Connection) -> None:
    """Separate process: PING and a one-code pop (the core of issue.lua) back to back;
    sends (time, latency, kind) samples back until told to stop."""
    client = redis.Redis.from_url(url)
    pop = client.register_script(
        "local c = redis.call('LPOP', KEYS[2]) "
        "if c then redis.call('HINCRBY', KEYS[1], 'popped', 1) "
        "redis.call('HINCRBY', KEYS[1], 'assigned', 1) "
        "redis.call('HSET', KEYS[3], c, 'probe') end return c"
    )
    samples: list[tuple[float, float]] = []
    conn.send("ready")
    while not conn.poll():
        t0 = time.perf_counter()
        client.ping()
        t1 = time.perf_counter()
        pop(keys=[pool_key, avail_key, keys.issued(PROJECT)])
        t2 = time.perf_counter()
        samples.append((t1, max(t1 - t0, t2 - t1)))
        time.sleep(0.0005)
    conn.send(samples)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def window_max(
    samples: list[tuple[float, float]], start: float, end: float
) -> tuple[float, float, int]:
    inside = sorted(lat for t, lat in samples if start <= t <= end)
    if not inside:
        return 0.0, 0.0, 0
    return inside[-1], inside[int(len(inside) * 0.99)], len(inside)


async def quiet_persistence(client: Redis) -> None:
    """Measure the snapshot, not Redis's own persistence: let the AOF rewrite / RDB save
    the load set off finish, and keep new ones from starting meanwhile (on 2 cores a
    forked child rewriting 10M codes takes a whole core). Then log every call over 1 ms."""
    await client.config_set("save", "")
    while True:
        persistence = await client.info("persistence")
        if not (persistence["rdb_bgsave_in_progress"] or persistence["aof_rewrite_in_progress"]):
            break
        await asyncio.sleep(0.2)
    await client.config_set("auto-aof-rewrite-percentage", 0)
    await client.config_set("slowlog-log-slower-than", 1000)
    await client.config_set("slowlog-max-len", 100_000)
    await client.slowlog_reset()
    # Stalls outside commands (an AOF write waiting for the disk) show up here.
    await client.config_set("latency-monitor-threshold", 5)
    await client.execute_command("LATENCY", "RESET")  # type: ignore[no-untyped-call]
    await client.config_resetstat()


def redis_side(slow: list[Any], evalsha: dict[str, Any], events: list[Any]) -> None:
    """What Redis itself measured: time inside commands (no network, no scheduling)."""
    longest = max((entry["duration"] for entry in slow), default=0)
    calls, per_call = evalsha.get("calls", 0), evalsha.get("usec_per_call", 0) / 1000
    print(
        f"  Redis itself, script calls (snapshot slices and probe pops): {calls} calls, "
        f"{per_call:.2f} ms each on average"
    )
    print(
        f"  Redis itself (SLOWLOG, calls over 1 ms): {len(slow)} calls, "
        f"longest {longest / 1000:.2f} ms"
    )
    for entry in sorted(slow, key=lambda e: -int(e["duration"]))[:3]:
        command = (
            b" ".join(entry["command"].split()[:5])
            if isinstance(entry["command"], bytes)
            else entry["command"]
        )
        print(f"    {int(entry['duration']) / 1000:.2f} ms: {command!r:.120}")
    for name, _, _, worst in events:
        print(f"  Redis latency monitor: {_text(name)} worst {int(worst)} ms")


async def snapshot_figures(url: str, directory: Path, codes: int, issue: int) -> None:
    settings = load_settings({}, redis_url=url)
    client = Redis.from_url(url, socket_timeout=600)
    backend = Backend(client, settings)
    t0 = time.perf_counter()
    pool_id = await make_pool(backend, "big", codes, "S")
    print(f"\nloaded {codes:,} codes in {time.perf_counter() - t0:.1f} s")
    issuer = Issuer(backend, 256)
    t0 = time.perf_counter()
    left = issue
    while left:
        n = min(left, 1000)
        await issuer.issue(PROJECT, pool_id, IssueRequest(count=n, user_id="partner"))
        left -= n
    print(f"handed out {issue:,} codes in {time.perf_counter() - t0:.1f} s")
    info = await client.info("memory")
    print(f"redis used_memory: {info['used_memory_human']}")
    await quiet_persistence(client)

    parent, child = multiprocessing.Pipe()
    prober = multiprocessing.get_context("spawn").Process(
        target=probe,
        args=(url, keys.pool(PROJECT, pool_id), keys.pool_available(PROJECT, pool_id), child),
    )
    prober.start()
    assert parent.recv() == "ready"
    await asyncio.sleep(2.0)  # the probe's baseline
    base_start, base_end = time.perf_counter() - 2.0, time.perf_counter()
    snap_start = time.perf_counter()
    # As in `codepool serve`, where the snapshot process runs below Redis and the workers
    # (durability.SNAPSHOT_NICENESS); the probe process keeps its priority.
    os.nice(SNAPSHOT_NICENESS)
    info_s = await snapshot.take_snapshot(client, directory / "snapshots")
    snap_end = time.perf_counter()
    await asyncio.sleep(0.5)
    parent.send("stop")
    samples: list[tuple[float, float]] = parent.recv()
    prober.join()
    slow = await client.slowlog_get(100_000)
    evalsha = (await client.info("commandstats")).get("cmdstat_evalsha", {})
    events = await client.execute_command("LATENCY", "LATEST")  # type: ignore[no-untyped-call]
    await client.aclose()
    base_max, base_p99, base_n = window_max(samples, base_start, base_end)
    snap_max, snap_p99, snap_n = window_max(samples, snap_start, snap_end)
    print(
        f"snapshot: {info_s.seconds:.1f} s, {info_s.size:,} bytes, {info_s.keys} keys, "
        f"{info_s.codes:,} available codes"
    )
    print(f"  bytes per code (file size / codes in the pool): {info_s.size / codes:.1f}")
    print(f"  codes per second: {codes / info_s.seconds:,.0f}")
    print(
        f"  probe (PING + one-code pop) before: max {base_max * 1000:.2f} ms, "
        f"p99 {base_p99 * 1000:.2f} ms over {base_n} calls"
    )
    print(
        f"  probe during the snapshot:         max {snap_max * 1000:.2f} ms, "
        f"p99 {snap_p99 * 1000:.2f} ms over {snap_n} calls"
    )
    redis_side(slow, evalsha, events)
    t0 = time.perf_counter()
    snapshot_format.verify(info_s.path)
    print(f"  verify (checksum) {time.perf_counter() - t0:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--codes", type=int, default=10_000_000, help="codes in the big pool")
    parser.add_argument(
        "--issue", type=int, default=100_000, help="codes handed out before the snapshot"
    )
    parser.add_argument(
        "--requests", type=int, default=20_000, help="issue requests per journal round"
    )
    parser.add_argument("--concurrency", type=int, default=200, help="issue requests in flight")
    parser.add_argument("--rounds", type=int, default=3, help="alternating journal off/on rounds")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where Redis and the files go (default: a temp dir)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="codepool-snapbench-", dir=args.dir) as temp:
        directory = Path(temp)
        with EmbeddedRedis(directory / "redis") as server:
            asyncio.run(
                journal_cost(server.url, directory, args.requests, args.concurrency, args.rounds)
            )
            asyncio.run(snapshot_figures(server.url, directory, args.codes, args.issue))
    return 0


if __name__ == "__main__":
    sys.exit(main())
