"""The package installed non-editable (a built wheel) still finds its Lua scripts."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_carries_and_finds_every_lua_script(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(REPO),
        ],
        check=True,
        timeout=120,
    )
    (wheel,) = dist.glob("codepool-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    on_disk = sorted(p.name for p in (REPO / "lua").glob("*.lua"))
    assert (
        sorted(
            n.split("/")[-1]
            for n in names
            if n.startswith("codepool/lua/") and n.endswith(".lua") and "/includes/" not in n
        )
        == on_disk
    )
    assert "codepool/lua/includes/common.lua" in names
    assert "codepool/py.typed" in names
    # The docs pages' assets (served at /schema/assets, never from a CDN).
    ui = REPO / "src" / "codepool" / "docs_ui"
    for asset in ui.iterdir():
        assert f"codepool/docs_ui/{asset.name}" in names
    # The console's static files ride in the package too (served from there, no CDN).
    static = REPO / "src" / "codepool" / "console" / "static"
    on_disk_static = sorted(
        p.relative_to(static).as_posix() for p in static.rglob("*") if p.is_file()
    )
    prefix = "codepool/console/static/"
    assert sorted(n[len(prefix) :] for n in names if n.startswith(prefix)) == on_disk_static

    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        timeout=120,
    )
    # Run from elsewhere with only the installed copy on the path (dependencies come from
    # this interpreter's site-packages; the checkout's src/ must not be importable).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    probe = (
        "import codepool.scripts as s;"
        "d = s.lua_dir(); print(d);"
        f"assert str(d).startswith({str(site)!r}), d;"
        "import codepool.api.docs as docs;"
        "assert (docs.UI_DIR / 'swagger-ui-bundle.js').is_file(), docs.UI_DIR;"
        "import codepool.console.routes as c;"
        "assert 'vendor/chart.umd.min.js' in c.assets(), sorted(c.assets());"
        "print(len(s.script_sources()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert int(out.stdout.split()[-1]) == len(on_disk)
