"""A lean HTTP/1.1 load generator: keep-alive connections on asyncio streams.

The bench's client when wrk is not installed (see loadtest/wrkload.py), and for runs of
a fixed number of requests, which wrk cannot do.

httpx costs more CPU per request than the server under test on a small machine, which
would measure the client. This sends pre-built requests over raw keep-alive sockets and
parses only the status line, Content-Length and the body.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import msgspec

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
