"""Bulk issue in Redis: issue.lua's time per code against the least any design needs.

    python -m loadtest.bulk_floor                    # 3M codes a side, as make bench's bulk
    python -m loadtest.bulk_floor --codes 200000     # quick

The bulk target (300,000 codes/s, ``count=1000``) is bound by Redis, which runs every
script call on one core. This tells how far Redis itself can go on this machine. On one
embedded Redis (AOF on, as ``codepool serve`` runs it), with no HTTP, it times in
alternating rounds, each writing into an issued hash that grows the same way:

- **issue.lua**, codepool's hand-out step, issuing 1000 codes a call from a pool (as
  ``POST .../pools/{id}/issue`` with ``count=1000``): the pop, the issued record
  of each code (checked for an earlier hand-out of the same string first), the pool's
  hand-out log, counters and answer;
- **the floor**: the least any design must do that keeps a record per code for the
  tills to look up. It reads 1000 codes at an offset (no pop), writes their records
  in one HSET and advances one counter. It keeps no log, does no check for repeated
  strings and answers with the bare list. So it is not a usable design, only a bound.

For each it prints the script time per code (Redis's own ``commandstats``) and the rate
that allows if Redis did nothing else, ``1e6 / us`` codes/s. In the bench (``make
bench``) Redis also reads requests, writes answers and the AOF, and shares the
machine's cores with the workers and the load generator, so the rate there is lower.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

from redis.asyncio import Redis

from codepool import keys
from codepool.embedded import EmbeddedRedis
from codepool.scripts import Status
from codepool.settings import load_settings
from codepool.store.base import Backend, now
from codepool.store.issuing import IssueRequest, issue_call
from loadtest.bench import evalsha_totals
from loadtest.snapshot_bench import PROJECT, make_pool

PER_CALL = 1000

# Not a codepool script (those are in lua/): the bound described above, kept here next
# to the measurement that uses it.
FLOOR = """
-- KEYS[1] counter hash   KEYS[2] codes list   KEYS[3] records hash
-- ARGV[1] codes to read  ARGV[2] the record each gets
-- Returns the codes read (fewer at the end of the list).
local at = tonumber(redis.call('HGET', KEYS[1], 'read') or '0')
local codes = redis.call('LRANGE', KEYS[2], at, at + tonumber(ARGV[1]) - 1)
if #codes > 0 then
  local flat = {}
  for i = 1, #codes do flat[2 * i - 1], flat[2 * i] = codes[i], ARGV[2] end
  redis.call('HSET', KEYS[3], unpack(flat))
  redis.call('HINCRBY', KEYS[1], 'read', #codes)
end
return codes
"""


async def script_usec(client: Redis) -> int:
    """Microseconds Redis has spent in EVALSHA so far."""
    return evalsha_totals(await client.info("commandstats"))[1]


async def issue_round(backend: Backend, pool_id: str, codes: int) -> tuple[float, list[str]]:
    """issue.lua's script time per code over ``codes`` codes, and the codes."""
    told: list[str] = []
    before = await script_usec(backend.client)
    while len(told) < codes:
        count = min(PER_CALL, codes - len(told))
        call = await issue_call(backend, PROJECT, pool_id, [IssueRequest(count=count)])
        result = call.results[0]
        if result.status != Status.OK:
            raise RuntimeError(f"issue.lua answered {result.status.name}")
        told += result.codes
    return (await script_usec(backend.client) - before) / codes, told


async def floor_round(client: Redis, sha: str, pool_id: str, codes: int) -> tuple[float, int]:
    """The floor's script time per code over ``codes`` codes, and how many it read."""
    # The same record an admin issue writes (pool, status, time, no user/reward/purchase).
    record = "\x1f".join([pool_id, "a", repr(now()), "", "", "", ""])
    state, records = f"floor:{{{PROJECT}}}:state", f"floor:{{{PROJECT}}}:records"
    source = keys.pool_available(PROJECT, pool_id)
    read = 0
    before = await script_usec(client)
    while read < codes:
        count = min(PER_CALL, codes - read)
        got = await client.evalsha(sha, 3, state, source, records, count, record)
        if len(got) != count:
            raise RuntimeError(f"the floor read {len(got)} codes, not {count}")
        read += count
    return (await script_usec(client) - before) / codes, read


def per_code(label: str, rounds: list[float]) -> float:
    middle = statistics.median(rounds)
    print(
        f"  {label:<10} {middle:5.2f} us of script time per code = {1e6 / middle:9,.0f} codes/s "
        f"if Redis did nothing else   (rounds: {', '.join(f'{r:.2f}' for r in rounds)})"
    )
    return middle


async def measure(url: str, codes: int, rounds: int) -> int:
    client = Redis.from_url(url)
    backend = Backend(client, load_settings({}, redis_url=url))
    issue_pool = await make_pool(backend, "bulk-issue", codes, "I")
    floor_pool = await make_pool(backend, "bulk-floor", codes, "F")
    sha = await client.script_load(FLOOR)
    step = codes // rounds
    issue_us: list[float] = []
    floor_us: list[float] = []
    told: list[str] = []
    read = 0
    for _ in range(rounds):
        us, got = await issue_round(backend, issue_pool, step)
        issue_us.append(us)
        told += got
        us, n = await floor_round(client, sha, floor_pool, step)
        floor_us.append(us)
        read += n
    issued = await client.hlen(keys.issued(PROJECT))
    records = await client.hlen(f"floor:{{{PROJECT}}}:records")
    await client.aclose()

    twice = len(told) - len(set(told))
    print(f"bulk issue in Redis, {PER_CALL} codes a call, {rounds} rounds of {step:,} codes each:")
    ours = per_code("issue.lua", issue_us)
    bound = per_code("floor", floor_us)
    print(f"  issue.lua / floor: {ours / bound:.2f} x the time per code")
    print(
        f"  codes handed out twice: {twice}; issued records {issued:,}, floor records {records:,}"
    )
    return 0 if twice == 0 and issued == len(told) and records == read else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--codes", type=int, default=3_000_000, help="codes each side issues")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where Redis's files go (default: a temp dir)"
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.codes < args.rounds * PER_CALL:
        parser.error(f"--codes must be at least {PER_CALL} x --rounds")
    with (
        tempfile.TemporaryDirectory(prefix="codepool-bulkfloor-", dir=args.dir) as temp,
        EmbeddedRedis(Path(temp) / "redis") as server,
    ):
        return asyncio.run(measure(server.url, args.codes, args.rounds))


if __name__ == "__main__":
    sys.exit(main())
