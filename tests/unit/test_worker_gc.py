"""A `codepool serve` worker freezes its start-up objects out of the cyclic collector
(workers.settle_gc): a full collection used to walk the ~140,000 objects of the app and its
imports, 25-125 ms in which the worker answered nobody (docs/index.md, "Where a till's
time goes")."""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar

from codepool import workers


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[str]]:
    """The environment `codepool serve` gives its workers, and gc.freeze recorded rather
    than done (freezing the test process's objects would outlive the test)."""
    monkeypatch.setenv("CODEPOOL_ROOT_KEY", "r" * 40)
    monkeypatch.setenv("CODEPOOL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CODEPOOL_REDIS_URL", "redis://127.0.0.1:1/0")  # never connected
    calls: list[str] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    threshold = gc.get_threshold()
    monkeypatch.setattr(gc, "set_threshold", lambda *t: calls.append(f"threshold {t}"))

    def collect(*_: Any) -> int:
        calls.append("collect")
        return 0

    monkeypatch.setattr(gc, "collect", collect)
    yield calls
    assert gc.get_threshold() == threshold


def test_a_uvicorn_worker_freezes_what_it_built_before_serving(worker_env: list[str]) -> None:
    app = workers.uvicorn_worker_app()
    assert isinstance(app, Litestar)
    # Garbage of the start-up first, so none of it is frozen for the worker's life.
    assert worker_env[:2] == ["collect", "freeze"]
    assert worker_env[2] == f"threshold {(workers.GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])}"


def test_a_granian_worker_freezes_what_it_built_before_serving(
    worker_env: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # load_app resets the stop signals' handlers: not in the test process.
    handlers: list[Any] = []
    monkeypatch.setattr(signal, "signal", lambda *a: handlers.append(a))
    app = workers.load_app(workers.APP_FACTORY)
    assert isinstance(app, Litestar)
    assert worker_env[:2] == ["collect", "freeze"]


def test_settle_gc_leaves_nothing_for_a_full_collection_to_walk() -> None:
    # In a process of its own: a real freeze of this one would outlast the test.
    code = (
        "import gc\nfrom codepool import workers\nimport codepool.app\n"
        "workers.settle_gc()\nprint(gc.get_freeze_count(), len(gc.get_objects()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    frozen, tracked = int(out[0]), int(out[1])
    assert frozen > 50_000, out  # the app's modules: what a full collection no longer walks
    assert tracked < 1000, out
