"""Rate runs with wrk, when it is installed: the bench's lean load generator of choice.

wrk is C and multi-threaded; it costs the machine less per request than the asyncio
client (loadtest/httpload.py), which matters when client and server share the cores.
It sends the same pre-built raw requests (loadtest/wrk_requests.lua takes them in
turn) and logs every answer, so a run gives the same ``httpload.Result`` (statuses,
bodies for the duplicate check) and the bench's checks hold whichever client ran. Its
latencies are wrk's histogram, which wrk corrects for coordinated omission (so it has
more entries than there were requests). wrk only runs for a time, in whole seconds: runs of a fixed
number of requests stay with the asyncio client.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from loadtest.httpload import KEPT, Result

SCRIPT = Path(__file__).with_name("wrk_requests.lua")


def find() -> str | None:
    """The wrk executable on PATH, if any."""
    return shutil.which("wrk")


def version(executable: str) -> str:
    done = subprocess.run([executable, "-v"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].split("[")[0].strip() if first else "wrk"


def whole_seconds(seconds: float) -> int:
    """What wrk will run for: it takes whole seconds only, at least one."""
    return max(1, round(seconds))


def run(
    executable: str,
    host: str,
    port: int,
    requests: list[bytes],
    *,
    connections: int,
    seconds: float,
    keep_bodies: bool = False,
    threads: int = 2,
) -> Result:
    """Send ``requests`` in turn over ``connections`` keep-alive connections for
    ``seconds`` (rounded to whole seconds) and return what came back."""
    threads = max(1, min(threads, connections))
    with tempfile.TemporaryDirectory(prefix="codepool-wrk-") as tmp:
        out = Path(tmp)
        with (out / "requests").open("wb") as f:
            for raw in requests:
                f.write(b"%d\n" % len(raw) + raw)
        env = {
            **os.environ,
            "CODEPOOL_WRK_REQUESTS": str(out / "requests"),
            "CODEPOOL_WRK_OUT": str(out),
            "CODEPOOL_WRK_THREADS": str(threads),
            "CODEPOOL_WRK_KEEP": "1" if keep_bodies else "0",
        }
        done = subprocess.run(
            [
                executable,
                "-t",
                str(threads),
                "-c",
                str(connections),
                "-d",
                f"{whole_seconds(seconds)}s",
                "--timeout",
                "30s",
                "-s",
                str(SCRIPT),
                f"http://{host}:{port}/",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        summary = out / "summary.txt"
        if done.returncode != 0 or not summary.exists():
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        return _read(out, summary)


def _read(out: Path, summary: Path) -> Result:
    duration_us = 0
    latencies: list[float] = []
    failed = 0
    for line in summary.read_text().splitlines():
        name, *values = line.split()
        if name == "duration_us":
            duration_us = int(float(values[0]))
        elif name == "errors":  # connect, read, write, timeout: no answer at all
            failed = sum(int(float(v)) for v in values)
        elif name == "latency":
            latencies += [float(values[0]) / 1e6] * int(float(values[1]))
    statuses: dict[int, int] = {}
    bodies: list[bytes] = []
    for log in sorted(out.glob("responses-*")):
        data = log.read_bytes()
        pos = 0
        while pos < len(data):
            nl = data.index(b"\n", pos)
            status, length = (int(x) for x in data[pos:nl].split())
            body = data[nl + 1 : nl + 1 + length]
            pos = nl + 1 + length + 1
            statuses[status] = statuses.get(status, 0) + 1
            if length and status in KEPT:
                bodies.append(body)
    if failed:
        statuses[0] = statuses.get(0, 0) + failed  # as httpload counts a lost request
    return Result(
        requests=sum(statuses.values()),
        seconds=duration_us / 1e6,
        statuses=statuses,
        latencies=latencies,
        bodies=bodies,
    )
