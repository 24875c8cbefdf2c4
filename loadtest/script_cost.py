"""Redis's own work per purchase in lua/issue.lua, in instructions, free of timing noise.

Wall-clock figures of a script (commandstats' usec_per_call, the bench's "µs of Redis
script time") move with whatever else shares the cores. This counts the instructions
redis-server executes inside EVALSHA under valgrind's callgrind, which is the same from
run to run, so a change to a script can be judged on a busy machine:

    python -m loadtest.script_cost            # needs valgrind (apt-get install valgrind)

It loads one pool, then makes purchase-shaped calls as the bench's flash sale does
(15 single-code purchases a call, by fans taking turns, each counted against the user
rate limit), twice: ``--calls`` after a warm-up, and a quarter of that. The difference
divided by the requests between them is the cost of one purchase, without start-up
and loading.

The server runs with the AOF on, as the embedded one does: feeding it is a fifth of a
purchase's instructions (``--no-aof`` leaves it out).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis

from codepool.embedded_binary import find_redis_server
from codepool.models import RewardIn
from codepool.settings import load_settings
from codepool.store.base import Backend
from codepool.store.issuing import IssueRequest, issue_call
from codepool.store.rewards import RewardStore
from loadtest.snapshot_bench import PROJECT, make_pool

POOL_CODES = 40_000


async def _calls(url: str, calls: int, args: argparse.Namespace) -> None:
    client = Redis.from_url(url)
    backend = Backend(client, load_settings())
    pool = await make_pool(backend, "p", POOL_CODES, "C")
    reward = (await RewardStore(backend).create(PROJECT, RewardIn(name="r", pool_id=pool))).id
    fan = 0

    async def one() -> None:
        nonlocal fan
        requests = []
        for _ in range(args.per_call):
            fan = (fan + 1) % args.fans
            user = f"fan-{fan}"
            requests.append(
                IssueRequest(
                    count=1,
                    user_id=user,
                    reward_id=reward,
                    rate_key=f"user:{user}",
                    rate_limit=args.rate_limit,
                )
            )
        await issue_call(backend, PROJECT, pool, requests)

    # Warm-up: every fan has bought once, so the reward's users hash has its final
    # encoding (a hash table past 512 fields, as in a real sale).
    for _ in range(args.fans // args.per_call + 1):
        await one()
    for _ in range(calls):
        await one()
    await client.aclose()


def _instructions(calls: int, args: argparse.Namespace) -> int:
    """Instructions redis-server ran inside EVALSHA over a run of ``calls`` calls."""
    with tempfile.TemporaryDirectory(prefix="codepool-cost-") as tmp:
        out = Path(tmp) / "callgrind.out"
        sock = Path(tmp) / "redis.sock"
        server = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                "--toggle-collect=evalShaCommand",
                f"--callgrind-out-file={out}",
                find_redis_server(),
                "--port",
                "0",
                "--unixsocket",
                str(sock),
                "--save",
                "",
                "--appendonly",
                "yes" if args.aof else "no",
                "--dir",
                tmp,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while not sock.exists():
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server under valgrind did not start")
                time.sleep(0.2)
            asyncio.run(_calls(f"unix://{sock}", calls, args))
        finally:
            server.terminate()
            server.wait()
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise SystemExit("no totals in callgrind's output")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=400, help="measured script calls")
    parser.add_argument("--per-call", type=int, default=15, help="requests per call")
    parser.add_argument("--fans", type=int, default=5000)
    parser.add_argument("--rate-limit", type=float, default=10.0, help="0: no limit")
    parser.add_argument(
        "--aof", action=argparse.BooleanOptionalAction, default=True, help="AOF on (default)"
    )
    args = parser.parse_args()
    if subprocess.run(["valgrind", "--version"], check=False, capture_output=True).returncode != 0:
        raise SystemExit("valgrind is needed (apt-get install valgrind)")
    short = args.calls // 4
    low, high = _instructions(short, args), _instructions(args.calls, args)
    per_request = (high - low) / ((args.calls - short) * args.per_call)
    print(f"issue.lua, purchase shape: {per_request:,.0f} instructions in Redis per request")
    sys.stdout.flush()
    os._exit(0)  # redis-py's finalizers would complain about the server already gone


if __name__ == "__main__":
    main()
