"""The console in a real headless Chromium (Playwright), against a real ``codepool serve``.

Debian's ``chromium`` is launched by path: Playwright's own browser download cannot
run here. Without it (or without the ``playwright`` package) the browser tests skip,
except in CI (``CI=true``), where ``.ci/run`` installs it and a skip would hide that
the console went untested: there they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.servers import ServeProcess, start_serve

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = os.environ.get("CODEPOOL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# CODEPOOL_SCREENSHOTS=1 rewrites docs/console/*.png (CI leaves them alone).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: CI must run the browser tests (.ci/run installs chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 (optional at import)
    except ImportError:
        _unavailable("the playwright package is not installed")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One ``codepool serve`` for the whole module (its embedded Redis included)."""
    data_dir = tmp_path_factory.mktemp("console") / "data"
    with start_serve(data_dir, workers=1) as serve:
        yield serve
        serve.terminate()


def screenshot_path(name: str) -> Path | None:
    """Where to save a screenshot of the console, or None when not asked to."""
    if os.environ.get("CODEPOOL_SCREENSHOTS") != "1":
        return None
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"
