"""The console's routes over HTTP: the page, its assets, their CSP, GET /, GET /v1/whoami."""

from __future__ import annotations

import re

import pytest
from redis.asyncio import Redis

from codepool.console.routes import CONTENT_SECURITY_POLICY, assets
from tests.apphelpers import app_client

# Every directive the console promises, whatever else the policy says.
REQUIRED_CSP = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "frame-ancestors 'none'",
    "object-src 'none'",
    "require-trusted-types-for 'script'",
)


def _check_headers(headers: dict[str, str] | object) -> None:
    csp = headers["content-security-policy"]  # type: ignore[index]
    for directive in REQUIRED_CSP:
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["x-content-type-options"] == "nosniff"  # type: ignore[index]


async def test_console_page_and_every_asset_it_loads(redis: Redis) -> None:
    async with app_client(redis) as c:
        page = await c.get("/console")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        _check_headers(page.headers)
        html = page.text
        assert "<script>" not in html and "style=" not in html  # nothing inline
        # Everything it loads (a fragment like "#/pools" is a route inside the page).
        referenced = re.findall(r'(?:src|href)="([^"#][^"]*)"', html)
        assert referenced, html
        for url in referenced:
            assert url.startswith("/console/assets/"), url  # this host only
            asset = await c.get(url)
            assert asset.status_code == 200, url
            _check_headers(asset.headers)

        # The ES modules import each other by relative path: every one is served.
        modules = {"js/app.js"}
        todo = ["js/app.js"]
        while todo:
            source = (await c.get(f"/console/assets/{todo.pop()}")).text
            assert "innerHTML" not in source and "insertAdjacentHTML" not in source
            for name in re.findall(r'from "\./([\w.-]+\.js)"', source):
                if f"js/{name}" not in modules:
                    modules.add(f"js/{name}")
                    todo.append(f"js/{name}")
        assert modules == {name for name in assets() if name.startswith("js/")}
        script = await c.get("/console/assets/js/app.js")
        assert script.headers["content-type"] == "text/javascript; charset=utf-8"


async def test_assets_revalidate_and_unknown_names_are_404(redis: Redis) -> None:
    async with app_client(redis) as c:
        first = await c.get("/console/assets/console.css")
        etag = first.headers["etag"]
        again = await c.get("/console/assets/console.css", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert first.headers["cache-control"] == "no-cache"
        for name in ("nope.js", "../routes.py", "..%2Froutes.py", "%2e%2e/__init__.py"):
            missing = await c.get(f"/console/assets/{name}")
            assert missing.status_code == 404, name
            assert missing.json()["error"]["code"] == "not_found"


def test_the_vendored_chart_library_is_the_noted_version() -> None:
    chart = assets()["vendor/chart.umd.min.js"].body
    assert chart.startswith(b"/*!\n * Chart.js v4.6.1\n")
    assert b"MIT License" in assets()["vendor/chart.js-LICENSE.md"].body
    assert "Chart.js 4.6.1" in assets()["console.html"].body.decode()
    assert CONTENT_SECURITY_POLICY.startswith("default-src 'self'")


async def test_root_points_to_the_console_and_the_docs(redis: Redis) -> None:
    async with app_client(redis) as c:
        machine = await c.get("/")
        assert machine.status_code == 200
        assert machine.json()["console"] == "/console" and machine.json()["docs"] == "/schema"
        person = await c.get("/", headers={"Accept": "text/html,*/*"})
        assert person.headers["content-type"].startswith("text/html")
        assert 'href="/console"' in person.text and 'href="/schema"' in person.text
        _check_headers(person.headers)


@pytest.mark.parametrize("path", ["/console", "/console/assets/js/app.js", "/"])
async def test_console_routes_stay_out_of_the_openapi_document(redis: Redis, path: str) -> None:
    async with app_client(redis) as c:
        schema = (await c.get("/schema/openapi.json")).json()
        assert path not in schema["paths"]
        assert "/v1/whoami" in schema["paths"]
