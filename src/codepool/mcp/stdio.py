"""``codepool mcp``: the same agent tools over stdio, for a desktop agent.

The agent starts this command; it talks to a running service at ``CODEPOOL_URL`` with
``CODEPOOL_API_KEY``, over the same public JSON API the ``/mcp`` tools use in-process.
There the service counts the calls under the key's HTTP limits (the agent limit,
CODEPOOL_RATE_LIMIT_MCP, is the ``/mcp`` endpoint's: this process cannot be trusted
to count itself). stdout carries the protocol: logs go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from codepool.mcp.door import Door, ToolFailedError
from codepool.mcp.server import build_server
from codepool.settings import Settings

TIMEOUT = 30.0


class RemoteDoors:
    """The tools' Doors in ``codepool mcp``: one key, one service."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client
        self._role: str | None = None

    async def door(self, ctx: Any) -> Door:
        return Door(self._client)

    async def role(self, ctx: Any) -> str | None:
        if self._role is None:
            try:
                self._role = str((await Door(self._client).get("/v1/whoami"))["role"])
            except ToolFailedError:
                return None  # service unreachable: list every tool, each will say why
        return self._role


@asynccontextmanager
async def remote_doors(url: str, api_key: str) -> AsyncIterator[RemoteDoors]:
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=TIMEOUT) as c:
        yield RemoteDoors(c)


def mcp_command(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the tools on stdin/stdout until the agent closes them."""
    if not settings.api_key:
        print(
            "codepool mcp: set CODEPOOL_API_KEY (and CODEPOOL_URL, "
            f"default {settings.url}) to the key the agent acts with",
            file=sys.stderr,
        )
        return 2
    server = build_server(lambda _: remote_doors(settings.url, settings.api_key))
    server.run("stdio")
    return 0
