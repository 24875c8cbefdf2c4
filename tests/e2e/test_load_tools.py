"""The tools users measure codepool with: `make bench`, `make loadtest` and
`loadtest.bulk_floor`, run small.

Each starts its own embedded Redis (and `codepool serve`, but the bulk floor, which
times scripts without HTTP), as a user's run does. These check that every phase and
scenario runs and that what they check holds (no code told twice, no errors, every
bought code redeems once); the rates they print are not judged here: speed lives in
the benchmark, not in tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.real]

REPO = Path(__file__).resolve().parents[2]
# A report line: "ok   pool/issue errors                 0.00 <= 0.00 "
TARGET = re.compile(r"^(ok  |MISS) (.{36}) +(-?[\d,.]+) (>=|<=) ")


def _run(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CODEPOOL_")}
    environ.update(env or {}, TMPDIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.timeout(120)
def test_bench_runs_every_phase_and_its_checks_hold(tmp_path: Path) -> None:
    out = _run(
        [
            "loadtest.bench",
            "--codes",
            "20000",
            "--bulk-codes",
            "20000",
            # Each phase's rate run (its route and /healthz, in turns): 0.5 s is enough for
            # hundreds of answers, every one checked.
            "--seconds",
            "0.5",
            "--connections",
            "16",
            "--client",
            "asyncio",
            # The closed-loop tills: 200 codes of each kind (6 x 200 requests), not 1,000.
            "--till-sample",
            "200",
            # The paced tills: a handful of requests, in well under a second.
            "--till-rate",
            "200",
            "--till-requests",
            "12",
        ],
        tmp_path,
    )
    targets = {}
    for line in out.splitlines():
        if m := TARGET.match(line):
            targets[m[2].strip()] = (m[1].strip(), float(m[3].replace(",", "")))
    assert set(targets) == {
        "pool/issue rate / healthz rate",
        "pool/issue errors",
        "purchase rate / healthz rate",
        "purchase errors",
        "redeem: each code once",
        "bulk issue codes/s",
        "upload rate / raw RPUSH rate",
        "bytes per available code",
        "bytes per assigned code",
        "generate rate / upload rate",
        "index: upload / raw RPUSH",
        "index: bytes per available code",
        *(
            f"index: {route} {kind} p99"
            for route in ("validate", "redeem")
            for kind in ("assigned", "never issued", "unknown")
        ),
        *(
            f"paced: {route} {kind} p99"
            for route in ("validate", "redeem")
            for kind in ("assigned", "never issued", "unknown")
        ),
        "index: slowest till script",
        "index: slowest till script, quiet",
        "skip upload rate / upload rate",
    }, out
    assert targets["generate rate / upload rate"][1] > 0
    assert targets["skip upload rate / upload rate"][1] > 0
    assert targets["pool/issue errors"] == ("ok", 0.0)
    assert targets["purchase errors"] == ("ok", 0.0)
    assert targets["redeem: each code once"][0] == "ok"
    assert targets["redeem: each code once"][1] > 0
    for rate in ("pool/issue rate / healthz rate", "purchase rate / healthz rate"):
        assert targets[rate][1] > 0
    assert "bulk issue: 20000 codes told to clients, 0 handed out twice" in out
    # The paced tills, quiet and under the purchase load: 2 requests of each kind, each
    # answered as its kind must be, with the Redis time of its script call logged.
    paced = re.findall(
        r"^    (validate|redeem) (assigned|never issued|unknown): p50 .*statuses \{(\d+): 2\}; "
        r"Redis per call p50 (<?\d+) us",
        out,
        re.MULTILINE,
    )
    expected = {"validate": ("200", "200", "200"), "redeem": ("200", "409", "404")}
    kinds = ("assigned", "never issued", "unknown")
    assert [(a, k, st) for a, k, st, _ in paced] == 2 * [
        (a, k, expected[a][i]) for a in ("validate", "redeem") for i, k in enumerate(kinds)
    ], out
    assert all(not us.startswith("<") and int(us) > 0 for *_, us in paced[:6]), out
    assert "codes handed out twice: 0" in out
    if sys.platform == "linux":  # the CPU split reads /proc
        split = re.findall(
            r"^  CPU, (this route|/healthz): +server (\d+), Redis (\d+), load generator (\d+) us",
            out,
            re.MULTILINE,
        )
        assert [s[0] for s in split] == ["this route", "/healthz"] * 2, out
        for _, server, _, client in split:
            assert int(server) > 0 and int(client) > 0, out
        # Hand-outs run scripts; /healthz does not touch Redis.
        assert int(split[0][2]) > 0 and int(split[2][2]) > 0, out
    # A 10-character code in a list costs bytes, not tens of bytes (at any pool size),
    # and its code index entry exactly 10 (docs/index.md; the 2^15 buckets' own keys are
    # a fixed cost that only a pool of millions spreads thin).
    memory = re.search(
        r"= list ([\d.]+) B \(MEMORY USAGE\) \+ index [\d.]+ B \(([\d.]+) B of entries", out
    )
    assert memory is not None, out
    assert 0 < float(memory[1]) <= 24
    assert float(memory[2]) == 10.0


@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("wrk") is None, reason="no wrk (.ci/run installs it)")
def test_bench_with_wrk_gets_every_answer_and_checks_it(tmp_path: Path) -> None:
    # 5,000 distinct purchase requests (one user each) through wrk_requests.lua: every
    # answer logged, its code checked for duplicates, each request counted once.
    out = _run(
        # wrk runs whole seconds: one turn of 1 s of purchases (and one of /healthz), not
        # five of each.
        [
            "loadtest.bench",
            "--phases",
            "purchase",
            "--seconds",
            "1",
            "--turns",
            "1",
            "--client",
            "wrk",
        ],
        tmp_path,
    )
    assert "load from wrk" in out
    told = re.search(r"purchase: (\d+) codes told to clients, 0 handed out twice", out)
    assert told is not None, out
    statuses = re.search(r"^purchase: .* statuses \{201: (\d+)\}$", out, re.MULTILINE)
    assert statuses is not None, out
    assert int(told[1]) == int(statuses[1]) > 1000
    assert re.search(r"^ok   purchase errors +0\.00 ", out, re.MULTILINE), out


@pytest.mark.timeout(60)
def test_bulk_floor_times_both_scripts_and_checks_their_writes(tmp_path: Path) -> None:
    out = _run(["loadtest.bulk_floor", "--codes", "6000", "--rounds", "3"], tmp_path)
    assert "3 rounds of 2,000 codes each" in out, out
    for label in ("issue.lua", "floor"):
        line = re.search(rf"^  {re.escape(label)} +([\d.]+) us of script time per code", out, re.M)
        assert line is not None and float(line[1]) > 0, out
    # The tool exits 1 (failing _run) unless every code went out once and got a record.
    assert "codes handed out twice: 0; issued records 6,000, floor records 6,000" in out


@pytest.mark.timeout(120)
def test_locust_scenarios_run_clean_and_write_a_report(tmp_path: Path) -> None:
    report = tmp_path / "locust.html"
    # locust exits 1 if any request failed: a body that does not fit its Struct, a code
    # a buyer got that does not validate, a refill that added fewer codes than sent.
    out = _run(
        ["loadtest.run_locust", "--shape", "SmokeShape", "--report", str(report)],
        tmp_path,
        # 4 s of 20 users, not 8: each user runs its first task at once, so every
        # scenario (a refill too) runs several times over.
        env={"CODEPOOL_LOCUST_CODES": "20000", "CODEPOOL_SMOKE_SECONDS": "4"},
    )
    assert f"report: {report}" in out
    html = report.read_text()
    for name in ("purchase", "validate", "redeem", "refill"):
        assert f'"{name}"' in html, name
