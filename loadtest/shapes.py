"""Load shapes for the locust scenarios; the locustfile picks one by CODEPOOL_SHAPE."""

from __future__ import annotations

import os

from locust import LoadTestShape


class FlashSaleShape(LoadTestShape):
    """Quiet shop, then the doors open: a steep ramp to the peak, a hold, the tail."""

    # (until second, users, spawn rate per second)
    stages = (
        (10, 10, 10),
        (20, 200, 100),
        (50, 200, 100),
        (60, 30, 50),
    )

    def tick(self) -> tuple[int, float] | None:
        run_time = self.get_run_time()
        for until, users, rate in self.stages:
            if run_time < until:
                return users, rate
        return None


class SteadyShape(LoadTestShape):
    """A flat load for comparing runs: 100 users for a minute."""

    def tick(self) -> tuple[int, float] | None:
        return (100, 50) if self.get_run_time() < 60 else None


class SmokeShape(LoadTestShape):
    """20 users for 8 seconds (CODEPOOL_SMOKE_SECONDS: another length): checks that every
    scenario runs clean against a server (a new deployment, or these tools themselves:
    tests/e2e/test_load_tools.py). Not a measurement."""

    seconds = float(os.environ.get("CODEPOOL_SMOKE_SECONDS", "8"))

    def tick(self) -> tuple[int, float] | None:
        return (20, 20) if self.get_run_time() < self.seconds else None
