"""codepool's throughput and latency figures, measured in one run on one server.

    make bench                                     # = python -m loadtest.bench (10M codes)
    python -m loadtest.bench --codes 1000000 --seconds 5    # quicker

Starts its own embedded Redis and `codepool serve` (2 workers), loads pools, drives
them with wrk when it is installed (loadtest/wrkload.py; --client picks) or else a lean
asyncio keep-alive client (loadtest/httpload.py), and prints every target as
measured / goal. Machines here are noisy and small, so HTTP rates are reported as a
ratio to the same server's /healthz rate measured in the same run, with the same
client and connection count, and next to each ratio the CPU per request of the server,
Redis and the load generator, for the route and for /healthz (loadtest/cpusplit.py),
which is what the ratio comes from when the cores are all busy. Every code any
response carried is checked for duplicates. Redis's own share of bulk issue, without
HTTP: python -m loadtest.bulk_floor.

    python -m loadtest.bench --cluster --phases issue,purchase --seconds 5

runs the same phases against a Redis Cluster it starts on this machine (3 masters, a
replica each; loadtest/cluster.py), then once more on a second server with
CODEPOOL_REPLICA_ACKS=1 and reports what WAIT costs per request as the ratio of the two
runs' route/healthz ratios. A project lives in one slot, so each run's Redis figures
(script calls, CPU) are those of the master that holds it; on 2 shared cores no scaling
can be read from this (docs/cluster.md has the arithmetic for a real deployment).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import math
import multiprocessing
import multiprocessing.pool
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
import redis
from redis.crc import key_slot

from codepool import keys
from codepool.embedded import EmbeddedRedis
from codepool.scripts import script_sources
from codepool.store import codeindex
from loadtest import cpusplit, httpload, wrkload
from loadtest.cluster import LocalCluster

ROOT_KEY = "bench-root-key-of-at-least-32-characters"
HOST = "127.0.0.1"


class Target(msgspec.Struct):
    name: str
    measured: float
    goal: float
    unit: str
    higher_is_better: bool = True

    @property
    def met(self) -> bool:
        return self.measured >= self.goal if self.higher_is_better else self.measured <= self.goal


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def start_server(
    data_dir: Path, redis_url: str, workers: int, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEPOOL_")}
    env.update(
        CODEPOOL_DATA_DIR=str(data_dir),
        CODEPOOL_ROOT_KEY=ROOT_KEY,
        CODEPOOL_REDIS_URL=redis_url,
        CODEPOOL_LOG_LEVEL="WARNING",
        # The till phases drive one pos key as fast as it goes (many tills' worth), which
        # the per-key limit would cap. The user limit stays on: the purchase phase spreads
        # its requests over enough fans that none exceeds it (the purchase phase).
        CODEPOOL_RATE_LIMIT_POS="0",
    )
    env.update(extra_env or {})
    log = (data_dir / "serve.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "codepool", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{HOST}:{port}/healthz", trust_env=False).status_code == 200:
                return proc, port
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not start; see {data_dir / 'serve.log'}")


def codes(prefix: str, n: int, start: int = 0) -> Iterator[bytes]:
    """n distinct 10-character codes, in blocks of 10,000 newline-separated."""
    for block in range(start, start + n, 10_000):
        yield "".join(
            f"{prefix}{i:08X}\n" for i in range(block, min(block + 10_000, start + n))
        ).encode()


class Bench:
    def __init__(
        self, port: int, args: argparse.Namespace, r: redis.Redis, project: str = "bench"
    ) -> None:
        self.port = port
        self.project = project
        self.args = args
        self.redis = r
        # wrk for the rate runs when it is there (and not turned off), else asyncio.
        self.wrk: str | None = wrkload.find() if args.client != "asyncio" else None
        if args.client == "wrk" and self.wrk is None:
            raise SystemExit("--client wrk: no wrk on PATH")
        self.http = httpx.Client(base_url=f"http://{HOST}:{port}", timeout=600, trust_env=False)
        root = {"Authorization": f"Bearer {ROOT_KEY}"}
        created = self.http.post(
            "/v1/projects", json={"id": project, "name": project}, headers=root
        ).json()
        self.user_secret: str = created["user_token_secret"]
        key = self.http.post(
            f"/v1/projects/{project}/keys", json={"role": "admin", "name": "b"}, headers=root
        ).json()
        self.admin = {"Authorization": f"Bearer {key['key']}", "Content-Type": "application/json"}
        pos = self.http.post(
            f"/v1/projects/{project}/keys", json={"role": "pos", "name": "p"}, headers=root
        ).json()
        self.pos = {"Authorization": f"Bearer {pos['key']}", "Content-Type": "application/json"}

    def pool(self, name: str, n: int, prefix: str) -> str:
        pool_id: str = self.http.post(
            f"/v1/projects/{self.project}/pools", json={"name": name}, headers=self.admin
        ).json()["id"]
        if n:
            self.upload(pool_id, n, prefix)
        return pool_id

    def upload(
        self, pool_id: str, n: int, prefix: str, start: int = 0, duplicates: str = "allow"
    ) -> float:
        started = time.perf_counter()
        r = self.http.post(
            f"/v1/projects/{self.project}/pools/{pool_id}/codes?duplicates={duplicates}",
            content=codes(prefix, n, start),
            headers={**self.admin, "Content-Type": "text/plain"},
        )
        elapsed = time.perf_counter() - started
        if r.status_code != 200 or r.json()["added"] != n:
            raise SystemExit(f"upload failed: {r.status_code} {r.text[:300]}")
        return elapsed

    def load(
        self,
        make: httpload.RequestMaker,
        *,
        duration: float | None = None,
        total: int | None = None,
        keep_bodies: bool = False,
        distinct: int = 1,
    ) -> httpload.Result:
        """Run ``make`` for ``duration`` seconds or ``total`` requests; ``distinct``:
        how many different requests it makes (request i = request i % distinct)."""
        if self.wrk is not None and duration is not None and total is None:
            return wrkload.run(
                self.wrk,
                HOST,
                self.port,
                [make(i) for i in range(distinct)],
                connections=self.args.connections,
                seconds=duration,
                keep_bodies=keep_bodies,
            )
        return asyncio.run(
            httpload.run(
                HOST,
                self.port,
                make,
                connections=self.args.connections,
                duration=duration,
                total=total,
                keep_bodies=keep_bodies,
            )
        )

    def lasts(self, seconds: float) -> float:
        """How long a timed run of ``seconds`` really runs (wrk: whole seconds)."""
        return seconds if self.wrk is None else wrkload.whole_seconds(seconds)

    def post(self, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
        return httpload.request("POST", path, f"{HOST}:{self.port}", headers, body)


def _shifted(make: httpload.RequestMaker, by: int) -> httpload.RequestMaker:
    return lambda i: make(by + i)


def check_unique(told: list[str], label: str) -> int:
    dups = len(told) - len(set(told))
    print(f"  {label}: {len(told)} codes told to clients, {dups} handed out twice")
    return dups


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def summary(label: str, res: httpload.Result) -> None:
    print(
        f"{label}: {res.rate:,.0f} req/s, p50 {ms(res.percentile(50))}, "
        f"p99 {ms(res.percentile(99))}, statuses {res.statuses}"
    )


class Run:
    """The measurements, in the order they run; each appends its targets."""

    def __init__(self, b: Bench, r: redis.Redis, args: argparse.Namespace, server_pid: int) -> None:
        self.b, self.r, self.args = b, r, args
        self.server_pid = server_pid
        self.redis_pid = int(r.info("server")["process_id"])
        self.targets: list[Target] = []
        self.duplicates = 0
        self.health_rate = 0.0
        self.told_by_purchase: list[str] = []
        # label -> (its rate, the /healthz rate measured interleaved with it)
        self.rates: dict[str, tuple[float, float]] = {}

    def health(self) -> None:
        """The yardstick: /healthz on the same server, with the same client."""
        req = self.healthz_request()
        self.b.load(lambda i: req, duration=1.0)  # warm up
        res = self.b.load(lambda i: req, duration=self.args.seconds)
        self.health_rate = res.rate
        summary("/healthz", res)

    def healthz_request(self) -> bytes:
        return httpload.request("GET", "/healthz", f"{HOST}:{self.b.port}", {})

    def versus_healthz(
        self, make: httpload.RequestMaker, distinct: int = 1
    ) -> tuple[httpload.Result, httpload.Result]:
        """A route's run and a /healthz run, interleaved in --turns turns each, so a
        machine that slows down or speeds up mid-run (shared hosts do) weighs on both
        alike. Returns (route, healthz), each merged over its turns."""
        health = self.healthz_request()
        route: list[httpload.Result] = []
        yardstick: list[httpload.Result] = []
        route_cpu, yardstick_cpu = cpusplit.Split(), cpusplit.Split()
        turn = self.args.seconds / self.args.turns
        sent = 0
        for _ in range(self.args.turns):
            yardstick.append(self.timed(yardstick_cpu, lambda i: health, turn, keep_bodies=False))
            # Request numbers go on across turns (distinct users, keys).
            route.append(self.timed(route_cpu, _shifted(make, sent), turn, distinct=distinct))
            sent += route[-1].requests
        # The spread of the turns shows how much the machine moved during the run.
        turns = " ".join(f"{r.rate / h.rate:.2f}" for r, h in zip(route, yardstick, strict=True))
        print(f"  rate / healthz rate per turn: {turns}")
        if route_cpu.requests:
            print(f"  CPU, this route: {route_cpu.line()}")
            print(f"  CPU, /healthz:   {yardstick_cpu.line()}")
        return httpload.merge(route), httpload.merge(yardstick)

    def timed(
        self,
        split: cpusplit.Split,
        make: httpload.RequestMaker,
        seconds: float,
        *,
        keep_bodies: bool = True,
        distinct: int = 1,
    ) -> httpload.Result:
        """A timed run, with the CPU each process used meanwhile added to ``split``."""
        before, started = cpusplit.sample(self.server_pid, self.redis_pid), time.perf_counter()
        res = self.b.load(make, duration=seconds, keep_bodies=keep_bodies, distinct=distinct)
        elapsed = time.perf_counter() - started
        after = cpusplit.sample(self.server_pid, self.redis_pid)
        if before is not None and after is not None:
            split.add(before, after, elapsed, res.requests)
        return res

    def single_issue(self) -> None:
        b = self.b
        pool = b.pool("issue", self.stock(), "I")
        req = b.post(f"/v1/projects/{b.project}/pools/{pool}/issue", b.admin, b'{"count":1}')
        calls = script_calls(self.r)
        res, health = self.versus_healthz(lambda i: req)
        coalesced(res, calls, script_calls(self.r))
        told = [c["code"] for body in res.bodies for c in msgspec.json.decode(body)["codes"]]
        self.duplicates += check_unique(told, "pool/issue")
        summary("pool/issue count=1", res)
        summary("  /healthz, interleaved", health)
        self.rate_targets("pool/issue", res, health, len(told))

    def purchase(self) -> None:
        """Single-code purchases by users with JWTs: the flash-sale path."""
        b = self.b
        pool = b.pool("sale", self.stock(), "S")
        body = {"name": "r", "pool_id": pool}
        reward = b.http.post(
            f"/v1/projects/{b.project}/rewards", json=body, headers=b.admin
        ).json()["id"]
        path = f"/v1/projects/{b.project}/rewards/{reward}/purchase"
        # Enough fans, taking turns, that none buys more than 5 times a second even if
        # the route ran at the /healthz rate: half the default per-user rate limit
        # (CODEPOOL_RATE_LIMIT_USER, 10/s), which refuses a fan who buys faster. The
        # limit stays on: the bench measures the path a deployment runs, counter
        # included. (5000 fans, as before, on a machine whose /healthz is under 25k/s.)
        fans = max(5000, math.ceil(self.health_rate / 5))
        expires = int(time.time()) + 3600  # user tokens must expire (at most 7 days out)
        tokens = [
            jwt.encode({"sub": f"fan-{i}", "exp": expires}, b.user_secret, algorithm="HS256")
            for i in range(fans)
        ]
        reqs = [b.post(path, {"Authorization": f"Bearer {t}"}) for t in tokens]
        calls = script_calls(self.r)
        res, health = self.versus_healthz(lambda i: reqs[i % len(reqs)], distinct=len(reqs))
        coalesced(res, calls, script_calls(self.r))
        told = [msgspec.json.decode(body)["code"] for body in res.bodies]
        self.duplicates += check_unique(told, "purchase")
        summary("purchase", res)
        summary("  /healthz, interleaved", health)
        self.rate_targets("purchase", res, health, len(told))
        self.told_by_purchase = told

    def pos(self) -> None:
        """Validate, then redeem, each code a purchase handed out (each once)."""
        b = self.b
        codes_ = self.told_by_purchase[:20_000]
        bodies = [msgspec.json.encode({"code": c}) for c in codes_]
        val = [b.post(f"/v1/projects/{b.project}/codes/validate", b.pos, body) for body in bodies]
        red = [b.post(f"/v1/projects/{b.project}/codes/redeem", b.pos, body) for body in bodies]
        summary("validate", b.load(lambda i: val[i], total=len(val)))
        redeem = b.load(lambda i: red[i], total=len(red))
        summary("redeem", redeem)
        self.targets.append(
            Target("redeem: each code once", redeem.statuses.get(200, 0), len(red), "codes")
        )

    def bulk(self) -> None:
        b = self.b
        n = self.args.bulk_codes
        pool = b.pool("bulk", n, "B")
        req = b.post(f"/v1/projects/{b.project}/pools/{pool}/issue", b.admin, b'{"count":1000}')
        self.r.config_resetstat()
        cpu_before = redis_cpu(self.r)
        res = asyncio.run(
            httpload.run(
                HOST, b.port, lambda i: req, connections=8, total=n // 1000, keep_bodies=True
            )
        )
        busy = (redis_cpu(self.r) - cpu_before) / res.seconds
        _, usec = script_calls(self.r)
        told = [c["code"] for body in res.bodies for c in msgspec.json.decode(body)["codes"]]
        self.duplicates += check_unique(told, "bulk issue")
        rate = len(told) / res.seconds
        print(f"bulk issue count=1000: {rate:,.0f} codes/s ({res.rate:,.0f} req/s, 8 connections)")
        if usec and told:
            # Every script call of the run (issue.lua, and the few of the delivery worker).
            per_code = usec / len(told)
            print(
                f"  Redis: {per_code:.2f} us of script time per code; "
                f"redis-server busy {busy:.0%} of a core"
            )
        self.targets.append(Target("bulk issue codes/s", rate, 300_000, "codes/s"))

    def upload_and_memory(self) -> None:
        # A project of its own: the issued hash of the earlier runs would otherwise grow
        # (and double its table) inside the measured window.
        b = Bench(self.b.port, self.args, self.r, project="memory")
        r, n = self.r, self.args.codes
        raw_seconds = raw_rpush(r, n)
        mem_before = used_memory(r)
        pool = b.pool("upload", 0, "U")
        seconds = b.upload(pool, n, "U")
        mem_available = used_memory(r)
        print(
            f"upload of {n:,} codes (text/plain, one request): {seconds:.1f} s "
            f"= {n / seconds:,.0f} codes/s; "
            f"raw pipelined RPUSH: {raw_seconds:.1f} s = {n / raw_seconds:,.0f} codes/s"
        )
        self.targets.append(Target("upload rate / raw RPUSH rate", raw_seconds / seconds, 0.5, "x"))
        per_available = (mem_available - mem_before) / n
        self.targets.append(Target("bytes per available code", per_available, 24, "B", False))
        req = b.post(f"/v1/projects/{b.project}/pools/{pool}/issue", b.admin, b'{"count":1000}')
        drained = asyncio.run(
            httpload.run(HOST, b.port, lambda i: req, connections=8, total=n // 1000)
        )
        per_assigned = (used_memory(r) - mem_before) / n
        print(
            f"memory: {per_available:.1f} B per available code, "
            f"{per_assigned:.1f} B per assigned code "
            f"(used_memory delta / {n:,}; drained {drained.statuses})"
        )
        self.targets.append(Target("bytes per assigned code", per_assigned, 150, "B", False))

    def index(self) -> None:
        """The code index (docs/index.md) at --codes codes in one pool: the upload
        rate, the memory split between the available list and the index, and the
        tills' answers (unknown, never handed out, assigned) p50/p99 while purchases
        run on another pool, with the slowest Redis calls meanwhile (SLOWLOG)."""
        b = Bench(self.b.port, self.args, self.r, project="index")
        r, n = self.r, self.args.codes
        raw_seconds = raw_rpush(r, n)
        mem_before = used_memory(r)
        pool = b.pool("tills", 0, "T")
        seconds = b.upload(pool, n, "T")
        mem_after = used_memory(r)
        print(
            f"index: upload of {n:,} codes {seconds:.1f} s = {n / seconds:,.0f} codes/s "
            f"({raw_seconds / seconds:.2f} x raw pipelined RPUSH, {raw_seconds:.1f} s)"
        )
        self.targets.append(Target("index: upload / raw RPUSH", raw_seconds / seconds, 0.5, "x"))
        self.memory_split(b.project, pool, n, mem_after - mem_before)
        # Codes the tills present: handed out (the first ones), never handed out
        # (anywhere in the pool past them), and in no pool. The closed-loop run sends
        # 20,000 of each kind (1,000 for small runs: the tills run while purchases load
        # the same two cores, 6 x sample requests in all; --till-sample sets it); each
        # paced run (quiet, then under the purchase load) its own share of
        # --till-requests, with assigned codes of its own (a redeem burns them).
        sample = self.args.till_sample or max(1000, min(20_000, n // 20) // 1000 * 1000)
        per = max(1, self.args.till_requests // len(TILL_KINDS))
        wanted = sample + 2 * per
        issued = [
            c["code"]
            for got in range(0, wanted, 1000)
            for c in b.http.post(
                f"/v1/projects/{b.project}/pools/{pool}/issue",
                json={"count": min(1000, wanted - got)},
                headers=b.admin,
            ).json()["codes"]
        ]
        rng = random.Random(20)

        def draw(assigned: list[str], count: int) -> dict[str, list[str]]:
            return {
                "assigned": assigned,
                "never issued": [f"T{rng.randrange(wanted, n):08X}" for _ in range(count)],
                "unknown": [f"Z{rng.randrange(n):08X}" for _ in range(count)],
            }

        kinds = draw(issued[:sample], sample)
        quiet = draw(issued[sample : sample + per], per)
        loaded = draw(issued[sample + per : sample + 2 * per], per)
        # The purchase load on another pool meanwhile (fans as in the purchase phase).
        sale = b.pool("index-sale", 2_000_000, "P")
        reward = b.http.post(
            f"/v1/projects/{b.project}/rewards",
            json={"name": "r", "pool_id": sale},
            headers=b.admin,
        ).json()["id"]
        expires = int(time.time()) + 3600
        buys = [
            b.post(
                f"/v1/projects/{b.project}/rewards/{reward}/purchase",
                {"Authorization": "Bearer " + jwt.encode(
                    {"sub": f"fan-{i}", "exp": expires}, b.user_secret, algorithm="HS256"
                )},
            )
            for i in range(5000)
        ]  # fmt: skip
        self.redis_per_answer(b.project, kinds)
        print(
            f"  paced tills: {self.args.till_rate:g} requests/s in all, the six kinds taking "
            f"turns, {per} of each; latency from each request's due time"
        )
        # The paced tills run in a process of their own (forked here, before any load
        # runs), so that this process's closed-loop purchase generator does not delay
        # their clock. The load generators' own objects (the prebuilt requests) are
        # frozen out of the cyclic collector: its full passes stalled this process for
        # 30-150 ms, which the closed-loop figures counted as the server's.
        gc.collect()
        gc.freeze()
        with multiprocessing.get_context("fork").Pool(1) as paced_pool:
            capture = Capture(r, self.server_pid)
            capture.start(0)  # every command: each till call's own Redis time
            res = paced_pool.apply(httpload.paced_in_process, self._paced_args(b, quiet))
            self.paced_report("quiet (no other load)", res, capture.stop(), quiet, False)
            results, paced_log, closed_log = asyncio.run(
                self._tills(b, kinds, buys, paced_pool, loaded)
            )
        gc.unfreeze()
        paced = results.pop("paced")
        assert isinstance(paced, httpload.Paced)
        self.paced_report("under the purchase load", paced, paced_log, loaded, True)
        print(
            "  closed loop, under the purchase load: 8 connections per kind, each sending "
            "its next request when answered"
        )
        for label, res_ in results.items():
            assert isinstance(res_, httpload.Result)
            if label == "purchase":
                summary("  purchase load meanwhile", res_)
                continue
            summary(f"  closed loop, {label}", res_)
            self.targets.append(
                Target(f"index: {label} p99", res_.percentile(99) * 1000, 20, "ms", False)
            )
        self.slowest(closed_log.slow, closed_log.before, closed_log.after)

    def _paced_args(
        self, b: Bench, kinds: dict[str, list[str]]
    ) -> tuple[str, int, list[bytes], float]:
        """paced_in_process's arguments: request i is till kind i % 6's (i // 6)th code."""
        reqs = [
            b.post(
                f"/v1/projects/{b.project}/codes/{action}",
                b.pos,
                msgspec.json.encode({"code": kinds[kind][j]}),
            )
            for j in range(len(kinds["assigned"]))
            for action, kind in TILL_KINDS
        ]
        return HOST, b.port, reqs, self.args.till_rate

    def paced_report(
        self,
        label: str,
        res: httpload.Paced,
        log: Captured,
        kinds: dict[str, list[str]],
        targets: bool,
    ) -> None:
        """Each kind's p50/p99/max from due time, the load generator's own lateness, and
        each till script call's Redis time (SLOWLOG at 0 us: every call) by kind."""
        late = sorted(res.late)
        print(
            f"  paced, {label}: {len(res.statuses)} requests in {res.seconds:.1f} s; "
            f"sent late (the load generator's own delay) p99 {ms(pct(late, 99))}, "
            f"max {ms(late[-1] if late else 0)}; {log.line()}"
        )
        of_code = {c: kind for kind, codes_ in kinds.items() for c in codes_}
        redis_us = log.till_calls(of_code)
        for k, (action, kind) in enumerate(TILL_KINDS):
            part = res.part(k, len(TILL_KINDS))
            took = sorted(part.latencies)
            logged = redis_us.get((action, kind), [])
            # One script call per request; those under the threshold were not logged.
            us = sorted([0] * max(0, part.requests - len(logged)) + logged)
            over = sum(1 for t in us if t > 1000)

            def at(p: float, us: list[int] = us) -> str:
                v = pct(us, p)
                return f"<{log.threshold}" if v < log.threshold else str(v)

            print(
                f"    {action} {kind}: p50 {ms(pct(took, 50))}, p99 {ms(pct(took, 99))}, "
                f"max {ms(took[-1] if took else 0)}, statuses {part.statuses}; "
                f"Redis per call p50 {at(50)} us, p99 {at(99)} us, "
                f"max {at(100)} us, over 1 ms: {over} of {len(us)}"
            )
            if targets:
                self.targets.append(
                    Target(f"paced: {action} {kind} p99", pct(took, 99) * 1000, 20, "ms", False)
                )
        others = log.slow_others(1000)
        print(
            "    other Redis commands over 1 ms meanwhile: "
            + (
                ", ".join(
                    f"{name} {len(t)} (max {max(t) / 1000:.1f} ms)" for name, t in others.items()
                )
                or "none"
            )
        )
        if not targets:
            worst = max((t for ts in redis_us.values() for t in ts), default=0)
            self.targets.append(
                Target("index: slowest till script, quiet", worst / 1000, 1, "ms", False)
            )

    async def _tills(
        self,
        b: Bench,
        kinds: dict[str, list[str]],
        buys: list[bytes],
        paced_pool: multiprocessing.pool.Pool,
        paced_kinds: dict[str, list[str]],
    ) -> tuple[dict[str, httpload.Result | httpload.Paced], Captured, Captured]:
        """While purchases run on 16 connections: the paced tills (in ``paced_pool``'s
        process), then each kind validated then redeemed, one after the other, 8 tills at
        once (closed loop). Returns the runs and what Redis logged in each part."""
        done = asyncio.Event()
        out: dict[str, httpload.Result | httpload.Paced] = {}

        async def purchases() -> None:
            runs = []
            while not done.is_set():
                runs.append(
                    await httpload.run(
                        HOST, b.port, lambda i: buys[i % len(buys)], connections=16, duration=2.0
                    )
                )
            out["purchase"] = httpload.merge(runs)

        load = asyncio.create_task(purchases())
        await asyncio.sleep(1.0)
        capture = Capture(self.r, self.server_pid)
        # Not every command, as in the quiet run: the purchases' would fill the log.
        await asyncio.to_thread(capture.start, 100)
        out["paced"] = await asyncio.to_thread(
            paced_pool.apply, httpload.paced_in_process, self._paced_args(b, paced_kinds)
        )
        paced_log = await asyncio.to_thread(capture.stop)
        await asyncio.to_thread(capture.start, 1000)
        for action in ("validate", "redeem"):
            for kind, codes_ in kinds.items():
                reqs = [
                    b.post(
                        f"/v1/projects/{b.project}/codes/{action}",
                        b.pos,
                        msgspec.json.encode({"code": c}),
                    )
                    for c in codes_
                ]
                out[f"{action} {kind}"] = await httpload.run(
                    HOST, b.port, reqs.__getitem__, connections=8, total=len(reqs)
                )
        closed_log = await asyncio.to_thread(capture.stop)
        done.set()
        await load
        return out, paced_log, closed_log

    def memory_split(self, project: str, pool: str, n: int, delta: int) -> None:
        """INFO memory's delta per code, and MEMORY USAGE of the list and the buckets."""
        r = self.r
        listed = int(r.memory_usage(f"cp:{{{project}}}:pool:{pool}:avail", samples=0) or 0)
        pipe = r.pipeline(transaction=False)
        for bucket in range(1 << 15):
            pipe.memory_usage(f"cp:{{{project}}}:cx:{bucket}", samples=0)
        usage = pipe.execute()
        pipe = r.pipeline(transaction=False)
        for bucket in range(1 << 15):
            pipe.strlen(f"cp:{{{project}}}:cx:{bucket}")
        lengths = pipe.execute()
        indexed = sum(int(u or 0) for u in usage)
        print(
            f"  memory per available code: {delta / n:.2f} B (INFO used_memory delta) = "
            f"list {listed / n:.2f} B (MEMORY USAGE) + index {indexed / n:.2f} B "
            f"({sum(lengths) / n:.2f} B of entries in {sum(1 for x in lengths if x)} buckets)"
        )
        self.targets.append(Target("index: bytes per available code", delta / n, 24, "B", False))

    def redis_per_answer(self, project: str, kinds: dict[str, list[str]]) -> None:
        """Redis's own time per validate.lua call (INFO commandstats), by kind of code,
        with nothing else running: what the index costs Redis per answer."""
        r = self.r
        sha = hashlib.sha1(script_sources()["validate"].encode(), usedforsecurity=False).hexdigest()
        r.script_load(script_sources()["validate"])
        for kind, codes_ in kinds.items():
            before = evalsha_totals(r.info("commandstats"))
            for code in codes_[:2000]:
                bucket, uploads, crc = codeindex.lookup_args(project, code)
                r.evalsha(
                    sha,
                    3,
                    keys.issued(project),
                    bucket,
                    uploads,
                    code,
                    time.time(),
                    keys.pool(project, "\0"),
                    keys.pool_available(project, "\0"),
                    crc,
                )
            calls, usec = (
                a - b for a, b in zip(evalsha_totals(r.info("commandstats")), before, strict=True)
            )
            print(f"  Redis time per validate.lua, {kind}: {usec / max(calls, 1):.1f} us")

    def slowest(self, slow: list[Any], before: dict[str, Any], after: dict[str, Any]) -> None:
        """The Redis calls over 1 ms while the tills ran (SLOWLOG) by script, and the
        time per command of each kind meanwhile."""
        names = {
            hashlib.sha1(src.encode(), usedforsecurity=False).hexdigest(): name
            for name, src in script_sources().items()
        }
        by_script: dict[str, list[int]] = {}
        for e in slow:
            words = str(e["command"].decode(errors="replace")).split()
            name = names.get(words[1], words[1]) if len(words) > 1 else words[0]
            by_script.setdefault(name if words[0] == "EVALSHA" else words[0], []).append(
                int(e["duration"])
            )
        print(f"  Redis calls over 1 ms meanwhile: {len(slow)}")
        for name, took in sorted(by_script.items()):
            print(f"    {name}: {len(took)}, slowest {max(took) / 1000:.2f} ms")
        for name, stats in sorted(after.items()):
            if not isinstance(stats, dict) or not name.startswith("cmdstat_"):
                continue
            calls = int(stats["calls"]) - int(before.get(name, {}).get("calls", 0))
            if calls > 1000:
                usec = int(stats["usec"]) - int(before.get(name, {}).get("usec", 0))
                print(f"    {name[8:]}: {calls} calls, {usec / calls:.1f} us each on average")
        till = [t for name in TILL_SCRIPTS for t in by_script.get(name, [])]
        worst = max(till, default=0)
        answered = sum(
            int(after.get(f"cmdstat_{c}", {}).get("calls", 0))
            - int(before.get(f"cmdstat_{c}", {}).get("calls", 0))
            for c in ("evalsha",)
        )
        print(
            f"  till script calls over 1 ms: {len(till)} (of {answered:,} script calls of "
            "every kind meanwhile); plain GETs over 1 ms show how often the shared machine "
            "preempts redis-server mid-command"
        )
        self.targets.append(Target("index: slowest till script", worst / 1000, 1, "ms", False))

    def generate(self) -> None:
        """codes/generate of n codes next to an upload of n codes, in one project: the
        generated codes must be new to the uploaded ones too (the skip path checks each)."""
        b = Bench(self.b.port, self.args, self.r, project="generate")
        n = self.args.generate_codes or self.args.codes
        uploaded = b.pool("uploaded", 0, "U")
        upload_seconds = b.upload(uploaded, n, "U")
        pool = b.pool("generated", 0, "G")
        # 32^8 ~ 1.1e12: room for 10M live codes at a guess probability of 1e-5.
        body = msgspec.json.encode({"count": n, "pattern": "G-####-####", "check_character": True})
        started = time.perf_counter()
        r = b.http.post(
            f"/v1/projects/{b.project}/pools/{pool}/codes/generate", content=body, headers=b.admin
        )
        seconds = time.perf_counter() - started
        if r.status_code != 200 or r.json()["added"] != n:
            raise SystemExit(f"generate failed: {r.status_code} {r.text[:300]}")
        print(
            f"generate of {n:,} codes (G-####-#### + check character, new to {n:,} uploaded "
            f"ones): {seconds:.1f} s = {n / seconds:,.0f} codes/s; the upload of {n:,}: "
            f"{upload_seconds:.1f} s = {n / upload_seconds:,.0f} codes/s"
        )
        self.targets.append(
            Target("generate rate / upload rate", upload_seconds / seconds, 0.5, "x")
        )
        # duplicates=skip: n new codes into the pool of n (each one looked up).
        skip_seconds = b.upload(uploaded, n, "U", start=n, duplicates="skip")
        print(
            f"duplicates=skip upload of {n:,} new codes into the pool of {n:,}: "
            f"{skip_seconds:.1f} s = {n / skip_seconds:,.0f} codes/s"
        )
        self.targets.append(
            Target("skip upload rate / upload rate", upload_seconds / skip_seconds, 0.5, "x")
        )
        b.http.delete(f"/v1/projects/{b.project}/pools/{pool}", headers=b.admin)

    def report(self) -> None:
        print("\ntarget                                   measured      goal")
        for t in self.targets:
            mark = "ok  " if t.met else "MISS"
            sign = ">=" if t.higher_is_better else "<="
            print(f"{mark} {t.name:<36} {t.measured:>12,.2f} {sign} {t.goal:,.2f} {t.unit}")
        print(f"codes handed out twice: {self.duplicates}", flush=True)

    def stock(self) -> int:
        """Enough codes that a rate run never runs dry."""
        seconds = self.args.turns * self.b.lasts(self.args.seconds / self.args.turns)
        return int(max(self.health_rate, 1000) * seconds * 1.5)

    def rate_targets(
        self, label: str, res: httpload.Result, health: httpload.Result, told: int
    ) -> None:
        self.rates[label] = (res.rate, health.rate)
        self.targets.append(
            Target(f"{label} rate / healthz rate", res.rate / health.rate, 0.8, "x")
        )
        # Every request that did not come back with its codes (error statuses, requests
        # lost without an answer, which both clients count as status 0).
        failed = res.requests - told
        self.targets.append(Target(f"{label} errors", failed, 0, "", higher_is_better=False))


def pct(ordered: list[Any], p: float) -> Any:
    """The p-th percentile of an ascending list (0 if empty), as Result.percentile."""
    if not ordered:
        return 0
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def script_names() -> dict[str, str]:
    """SHA-1 -> name of each script the server loads (SLOWLOG shows only the SHA)."""
    return {
        hashlib.sha1(src.encode(), usedforsecurity=False).hexdigest(): name
        for name, src in script_sources().items()
    }


def preemptions(pid: int) -> int:
    """How often the kernel has taken the CPU from ``pid`` while it could run (0 off Linux)."""
    try:
        status = (Path("/proc") / str(pid) / "status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("nonvoluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0


class Captured:
    """What Redis logged while a part of the index phase ran: SLOWLOG entries (the
    wall time of each command inside redis-server: its own work, plus any time the
    kernel gave its core to another process mid-command), INFO commandstats before and
    after, the forks (AOF rewrites, snapshots) and how often redis-server was preempted."""

    def __init__(
        self,
        slow: list[Any],
        before: dict[str, Any],
        after: dict[str, Any],
        forks: int,
        preempted: int,
        threshold: int,
        waits: str,
    ) -> None:
        self.slow, self.before, self.after = slow, before, after
        self.threshold = threshold  # us: SLOWLOG's, what is under it was not logged
        self.forks, self.preempted = forks, preempted
        self.waits = waits
        self.names = script_names()

    def line(self) -> str:
        return (
            f"redis-server preempted {self.preempted:,} times, {self.forks} fork(s), "
            f"load average {os.getloadavg()[0]:.1f}\n    CPU {self.waits}"
        )

    def _words(self, entry: Any) -> list[str]:
        return str(entry["command"].decode(errors="replace")).split()

    def till_calls(self, of_code: dict[str, str]) -> dict[tuple[str, str], list[int]]:
        """(script, kind of code) -> the microseconds of each call, for the till scripts
        whose code (ARGV[1]) is one of ``of_code``'s."""
        out: dict[tuple[str, str], list[int]] = {}
        for e in self.slow:
            words = self._words(e)
            if len(words) < 4 or words[0] != "EVALSHA":
                continue
            name = self.names.get(words[1], "")
            at = 3 + int(words[2])
            if name in ("validate", "redeem") and at < len(words) and words[at] in of_code:
                out.setdefault((name, of_code[words[at]]), []).append(int(e["duration"]))
        return out

    def slow_others(self, threshold: int) -> dict[str, list[int]]:
        """Commands over ``threshold`` us that are not till scripts, by script or command."""
        out: dict[str, list[int]] = {}
        for e in self.slow:
            if int(e["duration"]) <= threshold:
                continue
            words = self._words(e)
            name = self.names.get(words[1], words[1]) if words[0] == "EVALSHA" else words[0]
            if name not in TILL_SCRIPTS:
                out.setdefault(name, []).append(int(e["duration"]))
        return out


class Capture:
    """SLOWLOG at a threshold, commandstats, forks and preemptions from start() to stop()."""

    def __init__(self, r: redis.Redis, server_pid: int) -> None:
        self.r = r
        self.pid = int(r.info("server")["process_id"])
        self.server_pid = server_pid

    def start(self, threshold_us: int) -> None:
        self.threshold = threshold_us
        self.r.config_set("slowlog-log-slower-than", threshold_us)
        self.r.config_set("slowlog-max-len", 500_000)
        self.r.slowlog_reset()
        self.before = self.r.info("commandstats")
        self.forks = int(self.r.info("stats").get("total_forks", 0))
        self.preempted = preemptions(self.pid)
        self.waits = cpusplit.waits(self.server_pid, self.pid)

    def stop(self) -> Captured:
        waits = cpusplit.waits_line(self.waits, cpusplit.waits(self.server_pid, self.pid))
        after = self.r.info("commandstats")
        preempted = preemptions(self.pid) - self.preempted
        self.r.config_set("slowlog-log-slower-than", 10000)
        slow = self.r.slowlog_get(500_000)
        self.r.slowlog_reset()
        stats = self.r.info("stats")
        forks = int(stats.get("total_forks", 0)) - self.forks
        if forks:
            # A fork stops redis-server for its page tables' copy: every call meanwhile waits.
            print(
                f"    (Redis forked meanwhile; the latest fork took {stats['latest_fork_usec']} us)"
            )
        return Captured(slow, self.before, after, forks, preempted, self.threshold, waits)


# The scripts a till's request runs (their SLOWLOG entries are the index phase's target).
TILL_SCRIPTS = ("validate", "redeem", "release", "confirm")
# (route, kind of code) of the paced tills, taking turns in this order.
TILL_KINDS = [
    (action, kind)
    for action in ("validate", "redeem")
    for kind in ("assigned", "never issued", "unknown")
]

# Turns of a route's rate run and its /healthz yardstick (see Run.versus_healthz): the
# --turns default.
SLICES = 5

# --phases name -> Run method.
PHASES = {
    "issue": "single_issue",
    "purchase": "purchase",
    "pos": "pos",
    "bulk": "bulk",
    "upload": "upload_and_memory",
    "index": "index",
    "generate": "generate",
}


def add_client_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "asyncio"),
        default="auto",
        help="load generator of the timed runs: wrk if on PATH (auto), or the asyncio one",
    )


def client_name(b: Bench) -> str:
    if b.wrk is None:
        return "the asyncio client (loadtest/httpload.py)"
    return f"{wrkload.version(b.wrk)} (2 threads; timed runs in whole seconds)"


def raw_rpush(r: redis.Redis, n: int) -> float:
    """Seconds for a plain pipelined RPUSH of n codes from Python: the upload's yardstick."""
    started = time.perf_counter()
    pipe = r.pipeline(transaction=False)
    for i, block in enumerate(codes("R", n)):
        pipe.rpush("bench:raw", *block.split())
        if i % 10 == 9:
            pipe.execute()
    pipe.execute()
    seconds = time.perf_counter() - started
    r.delete("bench:raw")
    return seconds


def script_calls(r: redis.Redis) -> tuple[int, int]:
    """(EVALSHA calls, microseconds in them) Redis has served so far: with one script
    call per coalesced batch, a run's requests over its calls tell how well coalescing
    works, and the time what Redis spends per request. Every script counts, so a
    snapshot running meanwhile (its slices are script calls) shows as smaller batches
    and more time per request."""
    return evalsha_totals(r.info("commandstats"))


def evalsha_totals(commandstats: dict[str, Any]) -> tuple[int, int]:
    """(calls, microseconds) of EVALSHA in an ``INFO commandstats`` answer."""
    stats = commandstats.get("cmdstat_evalsha", {})
    if not isinstance(stats, dict):
        return 0, 0
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def coalesced(res: httpload.Result, before: tuple[int, int], after: tuple[int, int]) -> None:
    calls, usec = after[0] - before[0], after[1] - before[1]
    each = res.requests / max(calls, 1)
    per_request = usec / max(res.requests, 1)
    print(
        f"  {res.requests} requests in {calls} script calls: {each:.1f} each; "
        f"{per_request:.1f} us of Redis script time per request"
    )


def redis_cpu(r: redis.Redis) -> float:
    """CPU seconds redis-server has used (all its threads)."""
    info = r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def used_memory(r: redis.Redis) -> int:
    return int(r.info("memory")["used_memory"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--codes", type=int, default=10_000_000, help="codes for the upload and memory figures"
    )
    parser.add_argument(
        "--generate-codes",
        type=int,
        help="codes the generate phase uploads, then generates next to them (default: --codes)",
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each HTTP rate run")
    parser.add_argument(
        "--turns",
        type=int,
        default=SLICES,
        help="turns a rate run takes with its /healthz yardstick (wrk: each at least 1 s)",
    )
    parser.add_argument(
        "--bulk-codes", type=int, default=3_000_000, help="codes the bulk phase issues, 1000 a call"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--till-rate",
        type=float,
        default=100.0,
        help="index phase: requests/s of the paced (open-loop) tills, all kinds together",
    )
    parser.add_argument(
        "--till-requests",
        type=int,
        default=6000,
        help="index phase: requests of each paced till run (quiet, then under load), "
        "shared by the six kinds",
    )
    parser.add_argument(
        "--till-sample",
        type=int,
        help="index phase: codes of each kind the closed-loop tills present "
        "(default: --codes / 20, 1,000 to 20,000)",
    )
    parser.add_argument("--workers", type=int, default=2)
    add_client_argument(parser)
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a CODEPOOL_* setting for the server, e.g. --env CODEPOOL_JOURNAL=0",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="on a local Redis Cluster (3 masters + 3 replicas), then again with "
        "CODEPOOL_REPLICA_ACKS=1 (issue and purchase only)",
    )
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (healthz always runs first)",
    )
    args = parser.parse_args()
    phases = [p for p in args.phases.split(",") if p]
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    if args.bulk_codes < 1000:
        parser.error("--bulk-codes must be at least 1000 (one call's worth)")
    if args.turns < 1:
        parser.error("--turns must be at least 1")
    if args.till_sample is not None and args.till_sample < 1:
        parser.error("--till-sample must be at least 1")
    extra_env = dict(item.split("=", 1) for item in args.env)
    if args.cluster:
        return cluster_main(args, phases, extra_env)

    with tempfile.TemporaryDirectory(prefix="codepool-bench-") as tmp:
        data_dir = Path(tmp)
        # The allocator as `codepool serve` would pick it (--env CODEPOOL_REDIS_MALLOC=libc
        # for the bundled build's own malloc).
        malloc = extra_env.get("CODEPOOL_REDIS_MALLOC", "auto")
        with EmbeddedRedis(data_dir / "redis", malloc=malloc) as embedded:
            r = redis.Redis.from_url(embedded.url)
            proc, port = start_server(data_dir, embedded.url, args.workers, extra_env)
            try:
                b = Bench(port, args, r)
                print(
                    f"codepool bench: {os.cpu_count()} cores, {args.workers} workers, "
                    f"{args.connections} connections, {args.seconds:g} s per rate run; "
                    f"load from {client_name(b)}; Redis allocator: "
                    f"{'jemalloc (preloaded)' if embedded.preload else 'libc'}"
                )
                run = Run(b, r, args, proc.pid)
                run.health()
                for phase, method in PHASES.items():  # in order: pos redeems purchases
                    if phase in phases:
                        getattr(run, method)()
                run.report()
            finally:
                stop(proc)
    return 0 if run.duplicates == 0 else 1


def cluster_main(args: argparse.Namespace, phases: list[str], extra_env: dict[str, str]) -> int:
    """The phases on a local cluster (ratios to /healthz), then what replica acks cost:
    two servers on the cluster at once, CODEPOOL_REPLICA_ACKS=0 and =1, driven in
    alternating turns of the same route, so both see the same machine."""
    duplicates = 0
    with tempfile.TemporaryDirectory(prefix="codepool-bench-") as tmp:
        data_dir = Path(tmp)
        with LocalCluster(data_dir / "cluster", masters=3, replicas=1) as cluster:
            b, r, proc = _cluster_server(cluster, data_dir, "bench", args, extra_env)
            try:
                print(
                    f"\n== cluster: {os.cpu_count()} cores, {args.workers} workers, "
                    f"{args.connections} connections; load from {client_name(b)}"
                )
                run = Run(b, r, args, proc.pid)
                run.health()
                for phase, method in PHASES.items():
                    if phase in phases:
                        getattr(run, method)()
                run.report()
                duplicates += run.duplicates
                health_rate = run.health_rate
            finally:
                stop(proc)
            duplicates += _acks_cost(cluster, data_dir, args, extra_env, phases, health_rate)
    return 0 if duplicates == 0 else 1


def _cluster_server(
    cluster: LocalCluster,
    data_dir: Path,
    project: str,
    args: argparse.Namespace,
    env: dict[str, str],
) -> tuple[Bench, redis.Redis, subprocess.Popen[bytes]]:
    """A server on the cluster and its project; ``r``: the master that holds the
    project's slot (its CPU and script calls are the project's)."""
    slot = key_slot(f"cp:{{{project}}}:x".encode())
    master = cluster.master_of_slot(slot)
    server_dir = data_dir / project
    server_dir.mkdir()
    proc, port = start_server(server_dir, cluster.url, args.workers, env)
    print(f"project {project!r}: slot {slot}, master :{master}")
    r = redis.Redis(port=master)
    return Bench(port, args, r, project=project), r, proc


def _acks_cost(
    cluster: LocalCluster,
    data_dir: Path,
    args: argparse.Namespace,
    extra_env: dict[str, str],
    phases: list[str],
    health_rate: float,
) -> int:
    """Rate with CODEPOOL_REPLICA_ACKS=1 over rate with 0, same route, alternating turns."""
    print("\n== replica acks: CODEPOOL_REPLICA_ACKS=1 over =0, alternating turns")
    plain, _, proc_a = _cluster_server(cluster, data_dir, "plain", args, extra_env)
    acked, _, proc_b = _cluster_server(
        cluster, data_dir, "acked", args, {**extra_env, "CODEPOOL_REPLICA_ACKS": "1"}
    )
    duplicates = 0
    try:
        # As Run.stock, with room: two servers at once run faster than /healthz alone.
        turns = args.turns
        stock = int(max(health_rate, 1000) * turns * plain.lasts(args.seconds / turns) * 4)
        for phase in ("issue", "purchase"):
            if phase not in phases:
                continue
            makers = [_maker(b, phase, stock, health_rate) for b in (plain, acked)]
            turn = args.seconds / turns
            results: list[list[httpload.Result]] = [[], []]
            sent = [0, 0]
            for n in range(turns):
                # Each side goes first in every other turn: no order effect.
                for side in (0, 1) if n % 2 == 0 else (1, 0):
                    make, distinct = makers[side]
                    res = (plain, acked)[side].load(
                        _shifted(make, sent[side]),
                        duration=turn,
                        keep_bodies=True,
                        distinct=distinct,
                    )
                    results[side].append(res)
                    sent[side] += res.requests
            turns = " ".join(
                f"{b_.rate / a_.rate:.2f}" for a_, b_ in zip(results[0], results[1], strict=True)
            )
            merged = [httpload.merge(rs) for rs in results]
            for label, res in zip(("acks 0", "acks 1"), merged, strict=True):
                summary(f"{phase}, {label}", res)
                told = [
                    c
                    for body in res.bodies
                    for c in (
                        [x["code"] for x in msgspec.json.decode(body)["codes"]]
                        if phase == "issue"
                        else [msgspec.json.decode(body)["code"]]
                    )
                ]
                duplicates += check_unique(told, f"{phase}, {label}")
            print(f"  acks 1 / acks 0 per turn: {turns}")
            ratio = merged[1].rate / merged[0].rate
            print(f"{phase}: rate with acks 1 / rate with acks 0 = {ratio:.2f}")
    finally:
        stop(proc_a)
        stop(proc_b)
    return duplicates


def _maker(
    b: Bench, phase: str, stock: int, health_rate: float
) -> tuple[httpload.RequestMaker, int]:
    """(request maker, distinct requests) of the issue or purchase route on ``b``."""
    if phase == "issue":
        pool = b.pool("issue", stock, "I")
        req = b.post(f"/v1/projects/{b.project}/pools/{pool}/issue", b.admin, b'{"count":1}')
        return (lambda i: req), 1
    pool = b.pool("sale", stock, "S")
    reward = b.http.post(
        f"/v1/projects/{b.project}/rewards", json={"name": "r", "pool_id": pool}, headers=b.admin
    ).json()["id"]
    path = f"/v1/projects/{b.project}/rewards/{reward}/purchase"
    expires = int(time.time()) + 3600
    fans = max(5000, math.ceil(health_rate / 5))  # as Run.purchase: under the user limit
    reqs = [
        b.post(
            path,
            {
                "Authorization": "Bearer "
                + jwt.encode({"sub": f"fan-{i}", "exp": expires}, b.user_secret, algorithm="HS256")
            },
        )
        for i in range(fans)
    ]
    return (lambda i: reqs[i % len(reqs)]), len(reqs)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM; the server writes a last snapshot first, which takes a while with
    millions of codes loaded."""
    proc.terminate()
    try:
        proc.wait(300)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    raise SystemExit(main())
