"""How long does an agent wait for a page of 1000 codes of a large pool?

    python -m loadtest.mcp_latency                  # 10M codes, 20 calls per point
    python -m loadtest.mcp_latency --codes 1000000 --repeat 50

Starts `codepool serve` (1 worker, its embedded Redis) in a temporary directory,
uploads ``--codes`` codes to one pool in one streamed text/plain request, then times
``list_voucher_codes(count=1000)`` over /mcp three ways: with the MCP SDK's client (one
session, as an agent keeps it; this includes the Python SDK validating the 1000 entries
against the tool's output schema), as one raw JSON-RPC ``tools/call`` POST (what the
server costs any client), and ``GET .../codes?count=1000`` of the HTTP API for scale; at
the start, the middle and the end of the pool. Prints the median and p95 of each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from tests.mcphelpers import call, http_session
from tests.servers import start_serve


async def _codes(total: int) -> AsyncIterator[bytes]:
    for start in range(0, total, 100_000):
        end = min(start + 100_000, total)
        yield "".join(f"AGENT-{i:09d}\n" for i in range(start, end)).encode()


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered) * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms"


async def measure(url: str, root_key: str, total: int, repeat: int) -> None:
    root = {"Authorization": f"Bearer {root_key}"}
    async with httpx.AsyncClient(base_url=url, timeout=600.0, trust_env=False) as c:
        await c.post("/v1/projects", json={"id": "agents", "name": "Agents"}, headers=root)
        key = await c.post(
            "/v1/projects/agents/keys", json={"role": "admin", "name": "agent"}, headers=root
        )
        admin = {"Authorization": f"Bearer {key.json()['key']}"}
        pool = (
            await c.post("/v1/projects/agents/pools", json={"name": "big"}, headers=admin)
        ).json()
        started = time.perf_counter()
        up = await c.post(
            f"/v1/projects/agents/pools/{pool['id']}/codes",
            content=_codes(total),
            headers={**admin, "Content-Type": "text/plain"},
        )
        up.raise_for_status()
        print(f"uploaded {up.json()['added']:,} codes in {time.perf_counter() - started:.1f} s")
        path = f"/v1/projects/agents/pools/{pool['id']}/codes"
        async with http_session(url, admin) as session:
            for skip in (0, total // 2, max(0, total - 1000)):
                tool, raw, http = [], [], []
                arguments = {
                    "project_id": "agents",
                    "pool_id": pool["id"],
                    "skip": skip,
                    "count": 1000,
                }
                rpc = {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "tools/call",
                    "params": {"name": "list_voucher_codes", "arguments": arguments},
                }
                accept = {"Accept": "application/json, text/event-stream"}
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    answer = await call(session, "list_voucher_codes", **arguments)
                    tool.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    posted = await c.post("/mcp", json=rpc, headers={**admin, **accept})
                    raw.append(time.perf_counter() - t0)
                    assert posted.json()["result"]["structuredContent"] == answer
                    assert answer["success"], answer["error"]
                    assert len(answer["data"]) == 1000
                    t0 = time.perf_counter()
                    r = await c.get(path, params={"skip": skip, "count": 1000}, headers=admin)
                    http.append(time.perf_counter() - t0)
                    assert r.status_code == 200
                    assert r.json()["data"] == answer["data"]
                print(f"skip={skip:>10,}")
                print(f"  MCP, SDK client    {_ms(tool)}")
                print(f"  MCP, raw tools/call {_ms(raw)}")
                print(f"  HTTP GET /codes    {_ms(http)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codes", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mcp-latency-") as tmp:
        env = {"CODEPOOL_RATE_LIMIT_MCP": "0", "CODEPOOL_SNAPSHOT_INTERVAL": "0"}
        with start_serve(Path(tmp) / "data", workers=1, env=env, timeout=60.0) as server:
            asyncio.run(measure(server.url, server.root_key, args.codes, args.repeat))


if __name__ == "__main__":
    main()
