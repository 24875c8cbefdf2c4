"""Where a rate run's CPU went: codepool's processes, Redis, the load generator, idle.

The bench reports a hand-out route's rate as a ratio to /healthz on the same server.
When the machine is CPU-bound (the load generator, Redis and the workers share its
cores), that ratio is about the CPU a /healthz request costs over the CPU a hand-out
costs, summed over all three. So the bench prints both sums' parts, per request, from
the kernel's own accounting: a reader sees which part to work on, and how far off
the goal a machine's cores leave it.

Linux only (``/proc``); elsewhere :func:`sample` returns None and nothing is printed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgspec

PROC = Path("/proc")


class Sample(msgspec.Struct, frozen=True):
    server: dict[int, float]  # pid -> CPU seconds: `codepool serve` and its descendants
    redis: float  # CPU seconds of redis-server
    client: float  # this process and its reaped children (wrk runs as one)
    idle: float  # the machine's idle + iowait seconds, summed over its cores
    steal: float  # seconds the hypervisor gave to others (shared VMs)


def _ticks() -> float:
    return float(os.sysconf("SC_CLK_TCK"))


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None  # gone
    # The command name (field 2) is in parentheses and may hold spaces.
    return text[text.rindex(")") + 2 :].split()


def _cpu(fields: list[str]) -> float:
    # After the name: state ppid ... utime (14th field of the line) is index 11 here.
    return (int(fields[11]) + int(fields[12])) / _ticks()


def _tree(root: int) -> dict[int, float]:
    """CPU seconds of ``root`` and every process below it."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
            cpu[int(entry.name)] = _cpu(fields)
    tree = {root}
    grew = True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= below
        grew = bool(below)
    return {pid: cpu[pid] for pid in tree if pid in cpu}


def sample(server_pid: int, redis_pid: int) -> Sample | None:
    if not (PROC / "stat").exists():
        return None
    redis_fields = _stat_fields(redis_pid)
    times = os.times()
    # cpu  user nice system idle iowait irq softirq steal ...
    machine = (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]
    return Sample(
        server=_tree(server_pid),
        redis=_cpu(redis_fields) if redis_fields else 0.0,
        client=times.user + times.system + times.children_user + times.children_system,
        idle=(int(machine[3]) + int(machine[4])) / _ticks(),
        steal=(int(machine[7]) if len(machine) > 7 else 0) / _ticks(),
    )


class Split:
    """CPU over a set of runs (deltas between samples), per request."""

    def __init__(self) -> None:
        self.server = self.redis = self.client = self.idle = self.steal = 0.0
        self.seconds = 0.0
        self.requests = 0

    def add(self, before: Sample, after: Sample, seconds: float, requests: int) -> None:
        # Only processes alive at both ends: a worker that restarted is not a negative.
        self.server += sum(
            after.server[pid] - cpu for pid, cpu in before.server.items() if pid in after.server
        )
        self.redis += after.redis - before.redis
        self.client += after.client - before.client
        self.idle += after.idle - before.idle
        self.steal += after.steal - before.steal
        self.seconds += seconds
        self.requests += requests

    def line(self) -> str:
        n, s = max(self.requests, 1), max(self.seconds, 1e-9)
        return (
            f"server {self.server / n * 1e6:.0f}, Redis {self.redis / n * 1e6:.0f}, "
            f"load generator {self.client / n * 1e6:.0f} us of CPU per request; "
            f"idle {self.idle / s:.2f}, steal {self.steal / s:.2f} of {os.cpu_count()} cores"
        )


class Waits(msgspec.Struct, frozen=True):
    """Per process, nanoseconds on a CPU and runnable but waiting for one (the kernel's
    /proc/<pid>/schedstat, main thread), at one moment."""

    at: float  # time.monotonic()
    redis: tuple[int, int]
    workers: dict[int, tuple[int, int]]  # `codepool serve`'s processes below it
    client: dict[int, tuple[int, int]]  # the load generator and its children


def _schedstat(pid: int) -> tuple[int, int] | None:
    try:
        fields = (PROC / str(pid) / "schedstat").read_text().split()
    except OSError:
        return None
    return int(fields[0]), int(fields[1])


def _stats(pids: set[int] | dict[int, float]) -> dict[int, tuple[int, int]]:
    return {pid: s for pid in pids if (s := _schedstat(pid)) is not None}


def waits(server_pid: int, redis_pid: int) -> Waits | None:
    if not (PROC / str(redis_pid) / "schedstat").exists():
        return None
    server = _tree(server_pid)
    workers = dict(server)
    workers.pop(server_pid, None)  # the supervisor only watches
    return Waits(
        at=time.monotonic(),
        redis=_schedstat(redis_pid) or (0, 0),
        workers=_stats(workers),
        # The embedded redis-server and `codepool serve` are the load generator's
        # children here: counted as Redis and as the workers, not as load.
        client=_stats(set(_tree(os.getpid())) - {redis_pid} - set(server)),
    )


def waits_line(before: Waits | None, after: Waits | None) -> str:
    """How much of each second the processes ran, and waited runnable for a core: a
    request on a process that waits is delayed by it, whatever that process's own work."""
    if before is None or after is None:
        return "run-queue waits: not on this system"
    s = max(after.at - before.at, 1e-9)

    def one(b: tuple[int, int], a: tuple[int, int]) -> str:
        return f"ran {(a[0] - b[0]) / s / 1e6:.0f}, waited {(a[1] - b[1]) / s / 1e6:.0f}"

    def many(b: dict[int, tuple[int, int]], a: dict[int, tuple[int, int]]) -> str:
        # Processes that ran at least 5 ms a second (not the idle helpers).
        busy = [pid for pid in sorted(b) if pid in a and (a[pid][0] - b[pid][0]) / s > 5e6]
        return "; ".join(one(b[pid], a[pid]) for pid in busy) or "none busy"

    return (
        f"ms per second: workers {many(before.workers, after.workers)}; "
        f"Redis {one(before.redis, after.redis)}; "
        f"load generator {many(before.client, after.client)}"
    )
