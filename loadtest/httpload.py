"""A lean HTTP/1.1 load generator: keep-alive connections on asyncio streams.

The bench's client when wrk is not installed (see loadtest/wrkload.py), and for runs of
a fixed number of requests, which wrk cannot do.

httpx costs more CPU per request than the server under test on a small machine, which
would measure the client. This sends pre-built requests over raw keep-alive sockets and
parses only the status line, Content-Length and the body.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from collections.abc import Callable

import msgspec
import uvloop

RequestMaker = Callable[[int], bytes]
# Answers whose bodies a run keeps when asked to (wrk_requests.lua keeps the same ones).
KEPT = frozenset({200, 201})


class Result(msgspec.Struct, kw_only=True):
    requests: int
    seconds: float
    statuses: dict[int, int]
    latencies: list[float]  # seconds, one per request
    bodies: list[bytes]  # kept only when asked for

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500 or status == 0)


def merge(results: list[Result]) -> Result:
    """Several runs as one: their requests over their summed time."""
    statuses: Counter[int] = Counter()
    for res in results:
        statuses.update(res.statuses)
    return Result(
        requests=sum(r.requests for r in results),
        seconds=sum(r.seconds for r in results),
        statuses=dict(statuses),
        latencies=[x for r in results for x in r.latencies],
        bodies=[b for r in results for b in r.bodies],
    )


def request(method: str, path: str, host: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    body = await reader.readexactly(length) if length else b""
    return status, body


async def run(
    host: str,
    port: int,
    make: RequestMaker,
    *,
    connections: int,
    total: int | None = None,
    duration: float | None = None,
    keep_bodies: bool = False,
    accept: frozenset[int] = KEPT,
) -> Result:
    """Send requests (``make(i)`` builds request i) over ``connections`` keep-alive sockets
    until ``total`` requests were sent or ``duration`` seconds passed."""
    if total is None and duration is None:
        raise ValueError("give total or duration")
    counter = iter(range(total if total is not None else 1 << 62))
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    bodies: list[bytes] = []
    deadline = time.perf_counter() + duration if duration is not None else float("inf")

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in counter:
                if time.perf_counter() > deadline:
                    break
                started = time.perf_counter()
                writer.write(make(i))
                status, body = await _read_response(reader)
                latencies.append(time.perf_counter() - started)
                statuses[status] += 1
                if keep_bodies and status in accept:
                    bodies.append(body)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    seconds = time.perf_counter() - started
    return Result(
        requests=sum(statuses.values()),
        seconds=seconds,
        statuses=dict(statuses),
        latencies=latencies,
        bodies=bodies,
    )


class Paced(msgspec.Struct, kw_only=True):
    """An open-loop run: request i was due at ``start + i / rate``; its latency counts
    from then, so a slow answer delays no later request's clock (no coordinated
    omission). ``late``: how long after its due time request i went out (the load
    generator's own delay: a busy machine, or no free connection)."""

    seconds: float
    statuses: list[int]  # request i's status (0: no answer)
    latencies: list[float]  # seconds from due time to answer, by request
    late: list[float]  # seconds from due time to send, by request

    def part(self, start: int, step: int) -> Result:
        """Requests start, start + step, ... as a Result (a kind of an interleaved run)."""
        statuses = Counter(self.statuses[start::step])
        return Result(
            requests=sum(statuses.values()),
            seconds=self.seconds,
            statuses=dict(statuses),
            latencies=self.latencies[start::step],
            bodies=[],
        )


async def paced(
    host: str,
    port: int,
    make: RequestMaker,
    *,
    rate: float,
    total: int,
    connections: int = 64,
) -> Paced:
    """Send ``total`` requests at ``rate`` a second, each when it is due whatever the
    earlier ones are doing: what a till, one of many people at counters, sees. Each
    request takes an idle keep-alive connection, or opens one (up to ``connections``;
    past that it waits, and the wait counts in its latency)."""
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    writers: list[asyncio.StreamWriter] = []  # every connection, to close them at the end
    # A few connections open before the clock starts: a till's is already up.
    for _ in range(min(4, connections)):
        conn = await asyncio.open_connection(host, port)
        writers.append(conn[1])
        idle.put_nowait(conn)
    opened = len(writers)
    statuses = [0] * total
    latencies = [0.0] * total
    late = [0.0] * total

    async def one(i: int, due: float) -> None:
        nonlocal opened
        if idle.empty() and opened < connections:
            opened += 1
            conn = await asyncio.open_connection(host, port)
            writers.append(conn[1])
        else:
            conn = await idle.get()
        reader, writer = conn
        late[i] = time.perf_counter() - due
        try:
            writer.write(make(i))
            statuses[i], _ = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError):
            statuses[i] = 0  # counted as no answer; the connection is not reused
            latencies[i] = time.perf_counter() - due
            return
        latencies[i] = time.perf_counter() - due
        idle.put_nowait(conn)

    tasks = []
    start = time.perf_counter() + 0.05
    for i in range(total):
        due = start + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        if (early := due - time.perf_counter()) > 0:  # timers may fire a little early
            await asyncio.sleep(early)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    seconds = time.perf_counter() - start
    for writer in writers:
        writer.close()
    return Paced(seconds=seconds, statuses=statuses, latencies=latencies, late=late)


def paced_in_process(
    host: str, port: int, requests: list[bytes], rate: float, connections: int = 64
) -> Paced:
    """:func:`paced` over ``requests`` in this process's own event loop: run in a child
    process (multiprocessing), so that a closed-loop load generator running meanwhile
    in the parent does not delay its clock. Without the cyclic collector meanwhile: its
    passes would delay it too (a run of thousands of requests makes little garbage).
    On uvloop, whose timers fire within ~0.2 ms of their time (asyncio's: ~1-2 ms late,
    which would count in every latency)."""
    gc.disable()
    try:
        return uvloop.run(
            paced(
                host,
                port,
                requests.__getitem__,
                rate=rate,
                total=len(requests),
                connections=connections,
            )
        )
    finally:
        gc.enable()
