"""The MCP server of the agent tools, for either door: ``/mcp`` (mount.py) or stdio."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, cast

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

from codepool import __version__
from codepool.mcp.tools import POS_TOOLS, TOOLS, Doors

INSTRUCTIONS = (
    "Read-only tools over codepool, a service that hands out voucher codes from pools. "
    "Chain them by ids: list_projects -> list_voucher_pools -> get_voucher_pool -> "
    "list_voucher_codes. Every answer is {success, data, error}; on success: false, "
    "error says why (an unknown id, a count out of range, rate_limited: wait and retry)."
)
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)


def build_server(lifespan: Callable[[Any], AbstractAsyncContextManager[Doors]]) -> MCPServer[Any]:
    """The tools on one server; ``lifespan`` yields the Doors the tools find callers by."""
    server: MCPServer[Any] = MCPServer(
        "codepool",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        middleware=[_role_tools],
        # Tool results only; no resources, prompts or subscriptions to fan out.
        subscriptions=False,
    )
    for tool in TOOLS:
        server.add_tool(tool, annotations=READ_ONLY, structured_output=True)
    return server


async def _role_tools(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """A pos key is listed only the tools it may use (the API refuses it the others)."""
    result = await call_next(ctx)
    if ctx.method != "tools/list" or not isinstance(result, dict):
        return result  # the chain answers the wire form: {"tools": [{"name", ...}]}
    if await cast(Doors, ctx.lifespan_context).role(ctx) != "pos":
        return result
    return {**result, "tools": [t for t in result["tools"] if t.get("name") in POS_TOOLS]}
