"""The console's routes: the page, its static assets, and ``GET /`` pointing to it.

The console is a static page (``static/``, shipped inside the package) that calls the
public JSON API with the signed-in key; it has no back door of its own. Every answer
here carries a strict Content-Security-Policy: scripts, styles and connections only
from this origin, no inline script or style, no framing, no form posts, and Trusted
Types required so that no string can ever reach ``innerHTML`` (codes and names are
user input and are written as text only).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from litestar import MediaType, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    # Revalidate every time (a 304 when unchanged), so an upgrade is seen at once.
    "Cache-Control": "no-cache",
}
# Litestar adds "; charset=utf-8" to the text types itself.
_MEDIA_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".md": "text/plain",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


@cache
def assets() -> dict[str, Asset]:
    """Every file under ``static/`` by its relative path, read once per process."""
    found: dict[str, Asset] = {}
    todo = [(resources.files(__package__) / "static", "")]
    while todo:
        folder, prefix = todo.pop()
        for entry in folder.iterdir():
            name = prefix + entry.name
            if entry.is_dir():
                todo.append((entry, name + "/"))
                continue
            suffix = name[name.rfind(".") :]
            if suffix not in _MEDIA_TYPES:
                continue
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            found[name] = Asset(body, _MEDIA_TYPES[suffix], etag)
    return found


def _serve(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    asset = assets().get(name)
    if asset is None:
        raise NotFoundException(f"no console asset {name!r}")
    headers = {**_SECURITY_HEADERS, "ETag": asset.etag}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(b"", status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@get("/console", include_in_schema=False, sync_to_thread=False)
def console_page(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The console: one HTML page; everything else is loaded from /console/assets/."""
    return _serve(request, "console.html")


@get("/console/assets/{name:path}", include_in_schema=False, sync_to_thread=False)
def console_asset(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    """A static file of the console (script, style sheet, the vendored chart library)."""
    return _serve(request, name.lstrip("/"))


@get("/", include_in_schema=False, sync_to_thread=False)
def index(request: Request[Any, Any, Any]) -> Response[Any]:
    """Where to go: a browser gets a small page of links, anything else JSON."""
    if "text/html" in request.headers.get("accept", ""):
        return _serve(request, "index.html")
    return Response(
        {
            "service": "codepool",
            "console": "/console",
            "docs": "/schema",
            "openapi": "/schema/openapi.json",
        },
        media_type=MediaType.JSON,
    )


ROUTES = [console_page, console_asset, index]
