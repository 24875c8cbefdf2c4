"""The OpenAPI document and its two pages, /schema (Scalar) and /schema/swagger.

Both pages load their scripts and styles from ``codepool/docs_ui`` (pinned copies of
Swagger UI and Scalar, see the README there), served at /schema/assets: they work
offline and load nothing from another host. Their own start-up code is a file there
too, not an inline script, so the pages run under a strict Content-Security-Policy
(``script-src 'self'``; inline styles stay allowed, both UIs set element styles).
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from litestar import Request, Response, Router
from litestar.datastructures import CacheControlHeader, ResponseHeader
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.static_files import create_static_files_router

from codepool import __version__
from codepool.api.responses import COMPONENTS

UI_DIR = Path(__file__).resolve().parent.parent / "docs_ui"
ASSETS = "/schema/assets"

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)


def _page(request: Request[Any, Any, Any], title: str, head: str, body: str) -> bytes:
    url = escape(OpenAPIRenderPlugin.get_openapi_json_route(request))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title>"
        f"<link rel='icon' type='image/png' href='{ASSETS}/favicon-32x32.png'>"
        f"{head}</head><body>{body.format(url=url)}</body></html>\n"
    ).encode()


class ScalarPage(OpenAPIRenderPlugin):
    """Scalar's API reference, the page at /schema."""

    def __init__(self) -> None:
        super().__init__(path="/scalar")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return _page(
            request,
            openapi_schema["info"]["title"],
            "",
            "<div id='scalar' data-url='{url}'></div>"
            f"<script src='{ASSETS}/scalar-api-reference.js'></script>"
            f"<script src='{ASSETS}/scalar-init.js'></script>",
        )


class SwaggerPage(OpenAPIRenderPlugin):
    """Swagger UI, at /schema/swagger: its Authorize button takes the bearer token."""

    def __init__(self) -> None:
        super().__init__(path="/swagger")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return _page(
            request,
            openapi_schema["info"]["title"],
            f"<link rel='stylesheet' href='{ASSETS}/swagger-ui.css'>",
            "<div id='swagger-ui' data-url='{url}'></div>"
            f"<script src='{ASSETS}/swagger-ui-bundle.js'></script>"
            f"<script src='{ASSETS}/swagger-ui-standalone-preset.js'></script>"
            f"<script src='{ASSETS}/swagger-init.js'></script>",
        )


def _nosniff(response: Response[Any]) -> Response[Any]:
    # The router's response_headers do not reach the static files' answers.
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def openapi_config() -> OpenAPIConfig:
    """The document at /schema/openapi.json, its pages and their assets."""
    assets = create_static_files_router(
        path="/assets",
        directories=[UI_DIR],
        include_in_schema=False,
        # The file names carry no version: a day, so an upgrade shows within one.
        cache_control=CacheControlHeader(max_age=86400, public=True),
        name="docs_assets",
        after_request=_nosniff,
    )
    return OpenAPIConfig(
        title="codepool",
        version=__version__,
        path="/schema",
        components=COMPONENTS,
        render_plugins=[ScalarPage(), SwaggerPage()],
        openapi_router=Router(
            "/schema",
            route_handlers=[assets],
            include_in_schema=False,
            response_headers=[
                ResponseHeader(name="Content-Security-Policy", value=CSP),
                ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
            ],
        ),
    )
