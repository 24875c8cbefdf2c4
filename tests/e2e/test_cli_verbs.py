"""The client verbs of ``codepool``, run as processes against a real ``codepool serve``.

One server for the module. Each verb runs as ``python -m codepool ...`` with a clean
environment (no CODEPOOL_* of the developer, no proxy), the way an operator's shell
would run it; the results are checked through the HTTP API.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from codepool import __version__, codegen
from tests.servers import ServeProcess, free_port, start_serve

pytestmark = pytest.mark.e2e

ROOT_KEY = "cli-verbs-root-key-0123456789abcdefghijkl"
# The walk-through with verbs (the README's curl walk-through, done with the command line).
CLI_DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
MILLION = 1_000_000
_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.DOTALL | re.MULTILINE)
# Variables that would change how the client or rich behaves.
_UNWANTED = ("CODEPOOL_", "FORCE_COLOR", "NO_COLOR", "TTY_", "COLUMNS", "LINES")
_PROXIES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    data_dir = tmp_path_factory.mktemp("cli") / "data"
    env = {"CODEPOOL_ROOT_KEY": ROOT_KEY, "CODEPOOL_SNAPSHOT_INTERVAL": "0"}
    with start_serve(data_dir, workers=1, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def api(server: ServeProcess) -> Iterator[httpx.Client]:
    """The API as root, to set up and to check what the verbs did."""
    headers = {"Authorization": f"Bearer {ROOT_KEY}"}
    with httpx.Client(base_url=server.url, headers=headers, trust_env=False, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def project(api: httpx.Client) -> str:
    answer = api.post("/v1/projects", json={"name": "cli tests"})
    assert answer.status_code == 201
    project_id: str = answer.json()["id"]
    return project_id


@pytest.fixture(scope="module")
def million(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("codes") / "million.txt"
    path.write_bytes(b"".join(b"M%07d\n" % i for i in range(MILLION)))
    return path


def new_pool(api: httpx.Client, project: str, name: str) -> str:
    answer = api.post(f"/v1/projects/{project}/pools", json={"name": name})
    assert answer.status_code == 201, answer.text
    pool_id: str = answer.json()["id"]
    return pool_id


def pool_of(api: httpx.Client, project: str, pool: str) -> dict[str, Any]:
    answer: dict[str, Any] = api.get(f"/v1/projects/{project}/pools/{pool}").json()
    return answer


def _absolute(search_path: str) -> str:
    """PYTHONPATH=src as the tests are run, made to work from any directory."""
    return os.pathsep.join(str(Path(p).resolve()) for p in search_path.split(os.pathsep) if p)


def client_env(url: str, key: str | None = ROOT_KEY, project: str | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_UNWANTED) and k.lower() not in _PROXIES
    }
    env["CODEPOOL_URL"] = url
    if key is not None:
        env["CODEPOOL_API_KEY"] = key
    if project is not None:
        env["CODEPOOL_PROJECT"] = project
    return env


def cli(
    env: dict[str, str], *args: str, stdin: Path | None = None
) -> subprocess.CompletedProcess[str]:
    with (stdin or Path(os.devnull)).open("rb") as source:
        return subprocess.run(
            [sys.executable, "-m", "codepool", *args],
            env=env,
            stdin=source,
            capture_output=True,
            text=True,
            timeout=50,
            check=False,
        )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def on_a_terminal(env: dict[str, str], *args: str, stdin: Path) -> tuple[int, str, bytes]:
    """Run with stderr on a pseudo-terminal (120 columns): exit code, stdout, what the
    terminal received."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    screen = bytearray()

    def read_terminal() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed it
                return
            if not chunk:
                return
            screen.extend(chunk)

    reader = threading.Thread(target=read_terminal)
    reader.start()
    try:
        with stdin.open("rb") as source:
            process = subprocess.Popen(
                [sys.executable, "-m", "codepool", *args],
                env={**env, "TERM": "xterm-256color"},
                stdin=source,
                stdout=subprocess.PIPE,
                stderr=slave,
            )
            os.close(slave)
            out, _ = process.communicate(timeout=50)
    finally:
        reader.join(timeout=10)
        os.close(master)
    return process.returncode, out.decode(), bytes(screen)


# -- the basics -------------------------------------------------------------------------


def test_version_and_help() -> None:
    done = cli(client_env("http://127.0.0.1:1"), "--version")
    assert ok(done).strip() == f"codepool {__version__}"
    helped = ok(cli(client_env("http://127.0.0.1:1"), "codes", "upload", "--help"))
    assert "--key-file" in helped and "--duplicates" in helped and "Idempotency-Key" in helped


def test_tables_for_people_json_and_fields_for_scripts(
    server: ServeProcess, api: httpx.Client, project: str
) -> None:
    env = client_env(server.url, project=project)
    pool_id = ok(cli(env, "pools", "create", "tables", "--low-stock", "5", "--field", "id")).strip()
    assert pool_of(api, project, pool_id)["low_stock_thresholds"] == [5]
    listed = ok(cli(env, "pools", "list"))
    header, *rows = listed.splitlines()
    assert header.split() == ["ID", "NAME", "TOTAL", "AVAILABLE"]
    assert any(row.split()[:2] == [pool_id, "tables"] for row in rows)
    assert all(line == line.rstrip() for line in listed.splitlines())
    as_json = json.loads(ok(cli(env, "pools", "list", "--json")))
    assert {"id": pool_id, "name": "tables", "total": 0, "available": 0} in as_json
    assert pool_id in ok(cli(env, "pools", "list", "--field", "id")).split()
    # By name or by id; edit; delete asks for --yes without a terminal.
    shown = json.loads(ok(cli(env, "pools", "show", "tables", "--json")))
    assert shown["id"] == pool_id
    edited = cli(env, "pools", "edit", "--name", "tables2", "--field", "name", "--", pool_id)
    assert ok(edited).strip() == "tables2"
    refused = cli(env, "pools", "delete", "tables2")  # by name: an id may start with "-"
    assert refused.returncode == 2 and "--yes" in refused.stderr
    ok(cli(env, "pools", "delete", "tables2", "--yes"))
    assert api.get(f"/v1/projects/{project}/pools/{pool_id}").status_code == 404


# -- the walk-through in docs/cli.md ------------------------------------------------------


def cli_walkthrough() -> list[str]:
    text = CLI_DOC.read_text()
    begin, end = "<!-- cli-walkthrough:begin -->", "<!-- cli-walkthrough:end -->"
    assert text.count(begin) == 1 and text.count(end) == 1
    return _BLOCK.findall(text[text.index(begin) : text.index(end)])


def test_the_walkthrough_with_codepool_verbs(
    server: ServeProcess, api: httpx.Client, tmp_path: Path
) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    blocks = cli_walkthrough()
    script = "\n".join(blocks)
    # Entirely verbs: no curl, no HTTP by hand.
    assert "curl" not in script and "http://" in script and "codepool" in script
    workdir, shims = tmp_path / "clone", tmp_path / "bin"
    (workdir / ".venv" / "bin").mkdir(parents=True)
    shims.mkdir()
    for path, line in (
        (workdir / ".venv" / "bin" / "python", f'exec {sys.executable} "$@"'),
        (shims / "codepool", f'exec {sys.executable} -m codepool "$@"'),
    ):
        path.write_text(f"#!/bin/sh\n{line}\n")
        path.chmod(0o755)
    env = {
        "PATH": f"{shims}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "CODEPOOL_URL": server.url,
        "CODEPOOL_ROOT_KEY": ROOT_KEY,
    }
    if "PYTHONPATH" in os.environ:  # this checkout's code, as the tests run it
        env["PYTHONPATH"] = _absolute(os.environ["PYTHONPATH"])
    results = tmp_path / "results.json"
    done = subprocess.run(
        [
            bash,
            "-euo",
            "pipefail",
            "-c",
            "shopt -s inherit_errexit\n" + script + "\n"
            f'printf \'{{"project": "%s", "code": "%s"}}\' "$CODEPOOL_PROJECT" "$CODE" > {results}',
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=55,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}\n--- stderr\n{done.stderr}\n{server.log_tail()}"
    out = done.stdout
    assert "codes.csv: added 2, skipped 1; the pool holds 5 (5 available)" in out
    assert out.count("codes.csv: added 2, skipped 1") == 2  # the retry: the same answer
    assert "error: per_user_limit_reached: " in done.stderr
    assert "error: already_redeemed: " in done.stderr
    found = json.loads(results.read_text())
    project, code = found["project"], found["code"]
    assert code.startswith("SUMMER-")
    assert (workdir / "summer.csv").read_text().startswith("code,status,")
    pools = api.get(f"/v1/projects/{project}/pools").json()["data"]
    assert [p["name"] for p in pools] == ["summer"]
    counts = pool_of(api, project, pools[0]["id"])
    # 7 uploaded; 2 to partner-7 (one released again), alice's (redeemed), bob's.
    assert counts["total"] == 7
    assert (counts["available"], counts["assigned"], counts["redeemed"]) == (4, 2, 1)
    check = api.post(f"/v1/projects/{project}/codes/validate", json={"code": code}).json()
    assert (check["reason"], check["user_id"]) == ("already_redeemed", "alice")


# -- uploads ----------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_a_million_codes_with_a_progress_bar_on_a_terminal(
    server: ServeProcess, api: httpx.Client, project: str, million: Path, source: str
) -> None:
    pool_id = new_pool(api, project, f"terminal-{source}")
    env = client_env(server.url, project=project)
    given = str(million) if source == "file" else "-"
    name = f"terminal-{source}"  # (a generated id may start with "-": see docs/cli.md)
    code, out, screen = on_a_terminal(env, "codes", "upload", name, given, stdin=million)
    assert code == 0, screen.decode(errors="replace")
    assert out.strip().endswith(
        "added 1,000,000, skipped 0; the pool holds 1,000,000 (1,000,000 available)"
    )
    drawn = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", screen).decode(errors="replace")
    label = "million.txt" if source == "file" else "stdin"
    assert label in drawn
    assert "9.0/9.0 MB" in drawn  # bytes sent of the file's size
    assert re.search(r"[\d,]+ codes [\d,]+/s", drawn), drawn[-500:]  # codes and their rate
    assert re.search(r"\d+:\d\d:\d\d", drawn)  # the time-remaining column
    assert pool_of(api, project, pool_id)["total"] == MILLION


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_a_million_codes_piped_quietly_and_a_retry_adds_nothing(
    server: ServeProcess, api: httpx.Client, project: str, million: Path, source: str
) -> None:
    pool_id = new_pool(api, project, f"piped-{source}")
    env = client_env(server.url, project=project)
    name = f"piped-{source}"
    argv = ["codes", "upload", name, str(million) if source == "file" else "-", "--json"]
    first = cli(env, *argv, stdin=million)
    assert first.stderr == ""  # no progress, no note: only the answer
    answer = json.loads(ok(first))
    assert answer == {"added": MILLION, "skipped": 0, "total": MILLION, "available": MILLION}
    # The command run again (as after a timeout): the same Idempotency-Key, the first answer.
    again = cli(env, *argv, stdin=million)
    assert json.loads(ok(again)) == answer and again.stderr == ""
    assert pool_of(api, project, pool_id)["total"] == MILLION


def test_other_content_or_a_new_key_is_a_new_upload(
    server: ServeProcess, api: httpx.Client, project: str, tmp_path: Path
) -> None:
    pool_id = new_pool(api, project, "keys")
    env = client_env(server.url, project=project)
    codes = tmp_path / "codes.csv"
    codes.write_text("code\nK1\nK2\n")
    for _ in range(2):
        ok(cli(env, "codes", "upload", "keys", str(codes)))
    assert pool_of(api, project, pool_id)["total"] == 2
    ok(cli(env, "codes", "upload", "keys", str(codes), "--idempotency-key", "on-purpose"))
    codes.write_text("code\nK3\n")
    ok(cli(env, "codes", "upload", "keys", str(codes)))
    assert pool_of(api, project, pool_id)["total"] == 5


# -- export -----------------------------------------------------------------------------


def test_export_is_the_apis_csv(
    server: ServeProcess, api: httpx.Client, project: str, tmp_path: Path
) -> None:
    pool_id = new_pool(api, project, "export")
    base = f"/v1/projects/{project}/pools/{pool_id}"
    body = "\n".join(["=1+2", "-5", *(f"E{i:05d}" for i in range(3000))])
    api.post(f"{base}/codes", content=body, headers={"Content-Type": "text/plain"})
    api.post(f"{base}/issue", json={"count": 7, "user_id": "partner,7"})
    env = client_env(server.url, project=project)
    for status in (None, "assigned"):
        params = {"status": status} if status else {}
        expected = api.get(f"{base}/codes.csv", params=params).content
        flags = ["--status", status] if status else []
        target = tmp_path / f"export-{status}.csv"
        written = cli(env, "codes", "export", "export", "-o", str(target), *flags)
        ok(written)
        assert target.read_bytes() == expected
        assert not target.with_name(target.name + ".part").exists()
        piped = subprocess.run(
            [sys.executable, "-m", "codepool", "codes", "export", *flags, "--", pool_id],
            env=env,
            capture_output=True,
            timeout=50,
            check=False,
        )
        assert piped.returncode == 0 and piped.stdout == expected and piped.stderr == b""
    assert expected.count(b"\n") == 8  # header + the 7 handed out


def test_export_progress_on_a_terminal_and_the_csv_on_stdout(
    server: ServeProcess, api: httpx.Client, project: str, million: Path
) -> None:
    pool_id = new_pool(api, project, "export-terminal")
    with million.open("rb") as body:
        uploaded = api.post(
            f"/v1/projects/{project}/pools/{pool_id}/codes",
            content=body,
            headers={"Content-Type": "text/plain"},
        )
    assert uploaded.status_code == 200
    env = client_env(server.url, project=project)
    code, out, screen = on_a_terminal(
        env, "codes", "export", "export-terminal", stdin=Path(os.devnull)
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("code,status,") and len(lines) == MILLION + 1
    drawn = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", screen).decode(errors="replace")
    assert "export-terminal.csv" in drawn and "1,000,000 rows" in drawn and "MB" in drawn


# -- errors -----------------------------------------------------------------------------


def test_errors_are_one_line_with_a_meaningful_exit_code(
    server: ServeProcess, api: httpx.Client, project: str, tmp_path: Path
) -> None:
    pool_id = new_pool(api, project, "errors")
    env = client_env(server.url, project=project)
    bad = tmp_path / "bad.txt"
    bad.write_text("GOOD-1\nBAD CODE\n")
    pos_key = api.post(f"/v1/projects/{project}/keys", json={"role": "pos", "name": "t"})
    down = client_env(f"http://127.0.0.1:{free_port()}", project=project)
    cases: list[tuple[dict[str, str], list[str], int, str]] = [
        (env, ["codes", "upload", "errors", str(bad)], 1, "error: invalid_codes: "),
        (env, ["issue", "errors", "--count", "5000"], 1, "error: pool_exhausted: "),
        (env, ["codes", "upload", "errors", str(tmp_path / "missing.txt")], 2, "error: usage: "),
        (
            client_env(server.url, key=None, project=project),
            ["pools", "list"],
            2,
            "error: usage: no API key",
        ),
        (client_env(server.url), ["pools", "list"], 2, "error: usage: no project"),
        (
            client_env(server.url, key="wrong", project=project),
            ["pools", "list"],
            3,
            "error: unauthorized: ",
        ),
        (
            client_env(server.url, key=pos_key.json()["key"], project=project),
            ["pools", "list"],
            3,
            "error: forbidden: ",
        ),
        (env, ["pools", "show", "no-such-pool"], 4, "error: pool_not_found: "),
        (env, ["redeem", "NO-SUCH-CODE"], 4, "error: unknown_code: "),
        (down, ["pools", "list"], 5, "error: unavailable: cannot reach "),
    ]
    for case_env, argv, exit_code, line in cases:
        done = cli(case_env, *argv)
        assert (done.returncode, done.stdout) == (exit_code, ""), (argv, done)
        assert done.stderr.startswith(line) and done.stderr.count("\n") == 1, (argv, done.stderr)
    assert pool_of(api, project, pool_id)["total"] == 0  # all or nothing
    invalid = cli(env, "codes", "upload", "errors", str(bad))
    assert '"code":"BAD CODE"' in invalid.stderr and '"line":2' in invalid.stderr
    # argparse's own usage errors: 2 as well.
    assert cli(env, "issue", "errors", "--count", "0").returncode == 2
    # validate answers; "not valid" is exit 6, with the answer printed.
    no = cli(env, "validate", "NO-SUCH-CODE", "--field", "reason")
    assert (no.returncode, no.stdout.strip()) == (6, "unknown_code")


def test_generate_and_stats_answer_cleanly(
    server: ServeProcess, api: httpx.Client, project: str
) -> None:
    """Generation through a real `codepool serve`: the codes are in the pool and match;
    stats answers too (a service without it answers 404, printed as one line, exit 4)."""
    pool_id = new_pool(api, project, "generated")
    env = client_env(server.url, project=project)
    made = cli(
        env,
        "codes",
        "generate",
        "generated",
        "--pattern",
        "G-####",
        "--count",
        "50",
        "--check-character",
        "--json",
    )
    assert made.returncode == 0, made
    assert json.loads(made.stdout)["added"] == 50
    listed = api.get(f"/v1/projects/{project}/pools/{pool_id}/codes", params={"count": 100})
    codes = [entry["code"] for entry in listed.json()["data"]]
    pattern = codegen.parse("G-####", check_character=True)
    assert len(set(codes)) == 50 and all(pattern.matches(code) for code in codes)
    stats = cli(env, "stats", "generated", "--minutes", "5", "--json")
    if stats.returncode == 0:
        assert len(json.loads(stats.stdout)["series"]) == 5
    else:
        assert stats.returncode == 4 and stats.stdout == "", stats
        assert re.fullmatch(r"error: not_found: [^\n]+\n", stats.stderr), stats.stderr


def test_events_follow_prints_new_events_as_they_come(
    server: ServeProcess, api: httpx.Client, project: str
) -> None:
    pool_id = new_pool(api, project, "follow")
    base = f"/v1/projects/{project}"
    api.post(
        f"{base}/pools/{pool_id}/codes", content="F1\nF2", headers={"Content-Type": "text/plain"}
    )
    api.post(f"{base}/pools/{pool_id}/issue", json={"count": 2})
    env = client_env(server.url, project=project)
    # A suite started in the background (`.ci/run &`) runs with SIGINT ignored, which a
    # child inherits and Python keeps: the follower must get Ctrl-C as a terminal sends it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        follower = subprocess.Popen(
            [sys.executable, "-m", "codepool", "events", "--follow", "--json", "--interval", "0.2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    with follower:
        try:
            time.sleep(1.0)  # it starts from now: the hand-outs above are not followed
            api.post(f"{base}/codes/redeem", json={"code": "F1"})
            assert follower.stdout is not None
            ready, _, _ = select.select([follower.stdout], [], [], 10)
            assert ready, "no event within 10 s"
            event = json.loads(follower.stdout.readline())
            assert (event["type"], event["code"]) == ("VOUCHER_USED", "F1")
        finally:
            follower.send_signal(signal.SIGINT)
            try:
                follower.wait(10)
            except subprocess.TimeoutExpired:
                follower.kill()  # no process left behind for a later test to trip on
                raise
    assert follower.returncode == 128 + signal.SIGINT


def test_keys_webhook_deliveries_secrets_and_a_big_issue(
    server: ServeProcess, api: httpx.Client, project: str
) -> None:
    env = client_env(server.url, project=project)
    key_id = ok(cli(env, "keys", "create", "admin", "temp", "--field", "id")).strip()
    assert key_id in ok(cli(env, "keys", "list", "--field", "id")).split()
    ok(cli(env, "keys", "revoke", "--", key_id))
    assert key_id not in ok(cli(env, "keys", "list", "--field", "id")).split()
    assert project in ok(cli(env, "projects", "list", "--field", "id", "--limit", "1000")).split()
    hook = ["webhook", "set", "http://127.0.0.1:9/hook", "--events", "POOL_LOW", "--json"]
    assert json.loads(ok(cli(env, *hook))) == {
        "url": "http://127.0.0.1:9/hook",
        "events": ["POOL_LOW"],
    }
    assert ok(cli(env, "webhook", "show", "--field", "url")).strip() == "http://127.0.0.1:9/hook"
    ok(cli(env, "webhook", "delete"))
    assert cli(env, "webhook", "show").returncode == 4
    assert json.loads(ok(cli(env, "deliveries", "list", "--json"))) == []
    secret = ok(
        cli(env, "projects", "rotate-secret", "webhook_secret", "--field", "webhook_secret")
    )
    assert len(secret.strip()) >= 32

    # 2,500 codes: three hand-outs of at most 1,000; the same key again: the same codes.
    pool_id = new_pool(api, project, "partner")
    api.post(
        f"/v1/projects/{project}/pools/{pool_id}/codes",
        content="\n".join(f"P{i:05d}" for i in range(3000)),
        headers={"Content-Type": "text/plain"},
    )
    argv = ["issue", "partner", "-n", "2500", "--user", "partner-9", "--idempotency-key", "po-1"]
    first = ok(cli(env, *argv, "--field", "codes.code")).split()
    assert len(first) == len(set(first)) == 2500
    assert ok(cli(env, *argv, "--field", "codes.code")).split() == first
    counts = pool_of(api, project, pool_id)
    assert (counts["available"], counts["assigned"]) == (500, 2500)

    # A shortage half-way: the codes handed out so far are printed, then the error;
    # refilled, the same command gets them again and the rest.
    def refill(prefix: str, count: int) -> None:
        api.post(
            f"/v1/projects/{project}/pools/{pool_id}/codes",
            content="\n".join(f"{prefix}{i:05d}" for i in range(count)),
            headers={"Content-Type": "text/plain"},
        )

    refill("Q", 700)  # 1,200 available
    argv = ["issue", "partner", "-n", "2000", "--idempotency-key", "po-2", "--field", "codes.code"]
    short = cli(env, *argv)
    assert short.returncode == 1 and len(short.stdout.split()) == 1000
    assert short.stderr.startswith("error: pool_exhausted: ") and "1,000 of 2,000" in short.stderr
    refill("R", 800)  # 1,000 available
    done = ok(cli(env, *argv)).split()
    assert len(set(done)) == 2000 and done[:1000] == short.stdout.split()
    assert pool_of(api, project, pool_id)["available"] == 0
