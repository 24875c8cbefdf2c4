"""The MCP SDK's own client against codepool's agent tools: over streamable HTTP (a real
server, or an app in-process) and over stdio (``python -m codepool mcp``)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx2
from litestar import Litestar
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

TOOLS = {
    "list_projects",
    "list_voucher_pools",
    "get_voucher_pool",
    "list_voucher_codes",
    "get_pool_stats",
    "validate_voucher_code",
    "list_rewards",
    "list_events",
}
POS_TOOLS = {"list_projects", "validate_voucher_code"}


@asynccontextmanager
async def http_session(
    url: str, headers: dict[str, str], app: Litestar | None = None
) -> AsyncIterator[ClientSession]:
    """A ClientSession on ``url`` + /mcp; with ``app``, in-process (no socket)."""
    transport = httpx2.ASGITransport(app=cast(Any, app)) if app is not None else None
    async with (
        httpx2.AsyncClient(headers=headers, transport=transport, timeout=30.0) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@asynccontextmanager
async def stdio_session(url: str, api_key: str) -> AsyncIterator[ClientSession]:
    """A ClientSession on ``python -m codepool mcp`` talking to the service at ``url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEPOOL_")}
    env.update(CODEPOOL_URL=url, CODEPOOL_API_KEY=api_key, CODEPOOL_LOG_LEVEL="WARNING")
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        env.pop(proxy, None)
    params = StdioServerParameters(command=sys.executable, args=["-m", "codepool", "mcp"], env=env)
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """A tool's structured answer, checked to say the same as its text content."""
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, result
    answer = cast(dict[str, Any], result.structured_content)
    text = result.content[0]
    assert json.loads(getattr(text, "text", "")) == answer
    return answer


async def tool_names(session: ClientSession) -> set[str]:
    return {tool.name for tool in (await session.list_tools()).tools}
