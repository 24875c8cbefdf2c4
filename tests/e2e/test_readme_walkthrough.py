"""The README's walk-through, pasted into a shell on a fresh machine, works.

The shell blocks between ``<!-- walkthrough:begin -->`` and ``<!-- walkthrough:end -->``
are run, in order, as one ``bash -euo pipefail`` script against a real ``codepool
serve``, in the conditions the README promises and no better:

- an empty working directory (the clone's files are not needed; a file the walk-through
  uses must be one it wrote), holding only ``.venv/bin/python``: the interpreter of the
  virtualenv ``make run`` builds (the one running these tests, with the dev extra);
- ``PATH`` without that virtualenv: ``python3`` is a Python with its standard library
  only (this interpreter with ``-I -S``: no site-packages, so no PyJWT), then the
  system's directories for ``curl`` and the shell tools;
- no other environment than ``HOME``, ``USER``, ``LANG``, ``CODEPOOL_URL`` and
  ``CODEPOOL_ROOT_KEY`` (the two the README tells a reader to set when they differ
  from ``make run``'s); ``HOME``, ``USER``, ``LOGNAME`` and ``PATH`` are read-only, so
  a block that assigns one fails instead of breaking the reader's shell;
- ``set -u``, ``pipefail`` and ``inherit_errexit``: an unset variable, a missing module
  or a failing step inside ``$(...)`` stops the script; a file curl cannot read (it
  only warns) fails the test.

Then the results are checked through the API: the purchase returned a code, the till
redeemed it, and the counts add up.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.servers import start_serve

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"
# A root key as a deployment would have one (at least 32 characters), not make run's.
ROOT_KEY = "walkthrough-root-key-0123456789abcdefghij"
_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def walkthrough_blocks(text: str) -> list[str]:
    """The ```sh blocks between the walk-through markers, in order."""
    begin, end = "<!-- walkthrough:begin -->", "<!-- walkthrough:end -->"
    assert text.count(begin) == 1 and text.count(end) == 1, "one pair of walk-through markers"
    section = text[text.index(begin) : text.index(end)]
    return _BLOCK.findall(section)


def fresh_shell(tmp_path: Path, url: str) -> tuple[Path, dict[str, str]]:
    """A working directory and environment as on a fresh machine after ``make run``."""
    workdir = tmp_path / "clone"
    (workdir / ".venv" / "bin").mkdir(parents=True)
    shims = tmp_path / "bin"
    shims.mkdir()
    # The virtualenv make run built; called by path, as the README does.
    _script(workdir / ".venv" / "bin" / "python", f'exec {sys.executable} "$@"')
    # A system python3: the standard library, nothing installed.
    _script(shims / "python3", f'exec {sys.executable} -I -S "$@"')
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{shims}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "USER": "reader",
        "LOGNAME": "reader",
        "LANG": "C.UTF-8",
        "CODEPOOL_URL": url,
        "CODEPOOL_ROOT_KEY": ROOT_KEY,
    }
    return workdir, env


def _script(path: Path, line: str) -> None:
    path.write_text(f"#!/bin/sh\n{line}\n")
    path.chmod(0o755)


def _run(script: str, workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash is not None
    return subprocess.run(
        [bash, "-euo", "pipefail", "-c", script],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=40,
        check=False,
    )


def test_blocks_are_found_and_assign_no_reader_variable() -> None:
    blocks = walkthrough_blocks(README.read_text())
    assert len(blocks) >= 3
    text = "\n".join(blocks)
    for needed in ("/purchase", "/codes/redeem", "codes.csv", "USER_TOKEN_SECRET"):
        assert needed in text
    assigned = re.findall(r"^\s*(?:export\s+)?(USER|HOME|PATH|LOGNAME|SHELL|PWD)=", text, re.M)
    assert assigned == []


def test_the_harness_is_as_bare_as_a_fresh_machine(tmp_path: Path) -> None:
    """Without this, the walk-through test could pass on what a reader lacks."""
    workdir, env = fresh_shell(tmp_path, "http://127.0.0.1:1")
    bare = _run("python3 -c 'import jwt'", workdir, env)
    assert bare.returncode != 0 and "No module named 'jwt'" in bare.stderr
    assert _run(".venv/bin/python -c 'import jwt'", workdir, env).returncode == 0
    assert _run("echo $NOT_SET_ANYWHERE", workdir, env).returncode != 0
    assert _run("cat codes.csv", workdir, env).returncode != 0
    assert _run("X=$(false | cat); echo reached", workdir, env).returncode != 0
    assert _run("readonly USER; USER=me", workdir, env).returncode != 0


def test_the_walkthrough_runs_on_a_fresh_machine(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("the walk-through needs curl, as the README says")
    blocks = walkthrough_blocks(README.read_text())
    with start_serve(tmp_path / "data", workers=1, env={"CODEPOOL_ROOT_KEY": ROOT_KEY}) as server:
        workdir, env = fresh_shell(tmp_path, server.url)
        results = workdir.parent / "results.json"
        script = "\n".join(
            [
                "shopt -s inherit_errexit",
                "readonly HOME USER LOGNAME PATH",
                *blocks,
                # What the checks below need, written after the last block.
                'printf \'{"project": "%s", "pool": "%s", "code": "%s"}\' '
                f'"${{P##*/}}" "$POOL" "$CODE" > {results}',
            ]
        )
        done = _run(script, workdir, env)
        assert done.returncode == 0, (
            f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}\n"
            f"--- server\n{server.log_tail()}"
        )
        # curl only warns about a file it cannot read, and sends an empty body.
        assert "Warning:" not in done.stderr, done.stderr
        found = json.loads(results.read_text())
        code, project, pool = found["code"], found["project"], found["pool"]
        assert code.startswith("SUMMER-")
        assert '"status":"redeemed"' in done.stdout
        assert '"code":"already_redeemed"' in done.stdout
        assert (workdir / "codes.csv").is_file() and (workdir / "summer.csv").is_file()

        root = {"Authorization": f"Bearer {ROOT_KEY}"}
        api = f"{server.url}/v1/projects/{project}"
        with httpx.Client(trust_env=False, headers=root, timeout=10) as client:
            check = client.post(f"{api}/codes/validate", json={"code": code}).json()
            assert (check["reason"], check["user_id"]) == ("already_redeemed", "alice")
            counts = client.get(f"{api}/pools/{pool}").json()
        # 7 uploaded; 2 to partner-7 (one released again), alice's (redeemed), bob's.
        assert counts["total"] == 7
        assert (counts["available"], counts["assigned"], counts["redeemed"]) == (4, 2, 1)
