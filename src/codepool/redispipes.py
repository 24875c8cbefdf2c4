"""Commands sent on one connection of the right node: EVALSHA and WAIT in one round trip
(CODEPOOL_REPLICA_ACKS), and per-master pipelines of single-slot commands."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import (
    AbstractConnection,
    ConnectionPool,
)
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from codepool.rediscluster import gate, is_cluster

# -- replica acknowledgements (CODEPOOL_REPLICA_ACKS) -----------------------------------


async def eval_then_wait(
    client: Redis,
    sha: str,
    source: str,
    keys: Sequence[Any],
    args: Sequence[Any],
    replicas: int,
    timeout_ms: int,
) -> tuple[Any, int]:
    """``EVALSHA sha keys args`` then ``WAIT replicas timeout_ms``, pipelined on one
    connection to the master that owns the keys' slot: (the script's reply, the replicas
    that acknowledged every write of that connection so far).

    One round trip: WAIT must run on the connection that made the writes (it counts
    acknowledgements of that connection's writes), so neither redis-py's script object
    nor a cluster pipeline (which sends WAIT to every master) will do. NOSCRIPT loads
    the script on that connection and runs the pair again; MOVED/ASK (resharding) go to
    the node named, after a fresh slot map.
    """
    command = ("EVALSHA", sha, len(keys), *keys, *args)
    wait = ("WAIT", replicas, timeout_ms)
    if not is_cluster(client):
        return await _pair(client.connection_pool, None, command, wait, source)
    cluster = cast(RedisCluster, client)
    slot = cluster.keyslot(keys[0])
    asking: ClusterNode | None = None
    for _ in range(cluster.RedisClusterRequestTTL):
        node = asking or cluster.nodes_manager.get_node_from_slot(slot)
        try:
            async with gate(cluster):
                return await _pair(None, node, command, wait, source, asking=asking is not None)
        except MovedError as exc:
            await cluster.nodes_manager.move_slot(exc)
            asking = None
        except AskError as exc:
            asking = cluster.get_node(exc.host, exc.port)
            if asking is None:
                await cluster.nodes_manager.initialize()
        except TryAgainError:
            await asyncio.sleep(0.05)
        except (RedisConnectionError, RedisTimeoutError, ClusterDownError):
            # Whether the script ran is unknown: no retry (the caller answers 503 and a
            # client retries with its Idempotency-Key). The next call finds the new map.
            with contextlib.suppress(RedisError, OSError):
                await cluster.nodes_manager.initialize()
            raise
    raise RedisClusterException("too many redirections for one script call")


async def _pair(
    pool: ConnectionPool | None,
    node: ClusterNode | None,
    command: tuple[Any, ...],
    wait: tuple[Any, ...],
    source: str,
    *,
    asking: bool = False,
) -> tuple[Any, int]:
    sent = [("ASKING",), command, wait] if asking else [command, wait]
    replies = await _send(pool, node, sent)
    if isinstance(replies[-2], NoScriptError):
        replies = await _send(pool, node, [("SCRIPT", "LOAD", source), *sent])
    reply, acks = replies[-2], replies[-1]
    if isinstance(reply, Exception):
        raise reply
    if isinstance(acks, Exception):
        raise acks
    return reply, int(acks)


async def _send(
    pool: ConnectionPool | None, node: ClusterNode | None, commands: Sequence[tuple[Any, ...]]
) -> list[Any]:
    """``commands`` pipelined on one connection (of ``pool`` or cluster ``node``): their
    raw replies, an error reply as its exception in place."""
    if node is not None:
        connection: AbstractConnection = node.acquire_connection()
    else:
        assert pool is not None
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    healthy = False
    try:
        await connection.send_packed_command(connection.pack_commands(commands), False)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except ResponseError as exc:
                replies.append(exc)
        healthy = True
        return replies
    finally:
        if not healthy:  # a reply half read (or none): the connection cannot be reused
            await connection.disconnect()
        if node is not None:
            node.release(cast(Any, connection))
        else:
            assert pool is not None
            await pool.release(connection)


async def on_masters(
    client: Redis, commands: Sequence[tuple[Any, ...]], key_of: Sequence[str]
) -> list[Any]:
    """Commands whose keys all lie in one slot each (``key_of[i]`` names one key of
    ``commands[i]``), sent as one pipeline per master, the masters concurrently: their
    raw replies in order, an error reply (MOVED during a resharding, say) as its
    exception in place. For what redis-py's cluster pipeline does not route cheaply (it
    asks the server where XREADGROUP's keys are, one COMMAND GETKEYS each)."""
    if not is_cluster(client):
        return await _send(client.connection_pool, None, commands)
    cluster = cast(RedisCluster, client)
    by_node: dict[str, list[int]] = {}
    nodes: dict[str, ClusterNode] = {}
    for i, key in enumerate(key_of):
        node = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(key))
        nodes[node.name] = node
        by_node.setdefault(node.name, []).append(i)

    async def one(name: str) -> list[Any]:
        try:
            return await _send(None, nodes[name], [commands[i] for i in by_node[name]])
        except (RedisConnectionError, RedisTimeoutError):
            with contextlib.suppress(RedisError, OSError):
                await cluster.nodes_manager.initialize()
            raise

    out: list[Any] = [None] * len(commands)
    async with gate(cluster):
        answers = await asyncio.gather(*map(one, by_node))
    for name, replies in zip(by_node, answers, strict=True):
        for i, reply in zip(by_node[name], replies, strict=True):
            out[i] = reply
    if any(isinstance(r, (MovedError, AskError)) for r in out):
        await cluster.nodes_manager.initialize()  # resharded: the next call goes right
    return out
