"""The one way the agent tools reach codepool: its public JSON API, as the caller.

Every tool is a GET or POST of the HTTP API with the caller's bearer key, so roles,
tenant rules, rate limits and the answers themselves are the HTTP API's by
construction. Inside the app (``/mcp``) the client is an ``httpx.ASGITransport`` over
the app itself; for ``codepool mcp`` (stdio) a real client to ``CODEPOOL_URL``.
An error answer becomes a ``ToolFailedError`` whose text an agent can act on.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

MAX_COUNT = 1000


class ToolFailedError(Exception):
    """A tool's answer is ``success: false``; ``str(exc)`` is its ``error``."""


class Door:
    """The public API as one caller sees it; ``authorization`` is sent with each call
    (None when the client carries it already: stdio)."""

    def __init__(self, client: httpx.AsyncClient, authorization: str | None = None) -> None:
        self._client = client
        self._headers = {"Authorization": authorization} if authorization else {}

    async def get(self, path: str, **params: str | int | None) -> Any:
        query = {name: value for name, value in params.items() if value is not None}
        return await self._send("GET", path, params=query)

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        return await self._send("POST", path, json=body)

    async def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = await self._client.request(method, path, headers=self._headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ToolFailedError(f"codepool is unreachable: {type(exc).__name__}: {exc}") from None
        if answer.status_code >= 400:
            raise ToolFailedError(error_text(answer.status_code, answer.content))
        try:
            return msgspec.json.decode(answer.content)
        except msgspec.DecodeError:
            raise ToolFailedError(f"codepool answered {answer.status_code} without JSON") from None


def error_text(status: int, body: bytes) -> str:
    """``code: message (detail=value, ...)`` from the one error shape; a body that is not
    that shape (a proxy's page) is named by its status."""
    try:
        error = msgspec.json.decode(body)["error"]
        code, message = str(error["code"]), str(error["message"])
        details = error.get("details") or {}
    except (msgspec.DecodeError, KeyError, TypeError):
        return f"http_{status}: codepool answered HTTP {status}"
    text = f"{code}: {message}"
    if isinstance(details, dict) and details:
        text += " (" + ", ".join(f"{k}={_detail(v)}" for k, v in details.items()) + ")"
    return text


def _detail(value: Any) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()
