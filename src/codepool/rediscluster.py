"""Redis Cluster: the cluster client (redis-py's, with what it gets wrong under concurrency
made right), and the one scan over every master."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from redis import Redis as SyncRedis
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode, ClusterPipeline
from redis.asyncio.connection import (
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from codepool.redisconn import PACKING

log = logging.getLogger(__name__)


# -- Redis Cluster ----------------------------------------------------------------------
#
# CODEPOOL_REDIS_URL may name any node of a cluster: at start, `INFO cluster` tells (one
# command, on a client of its own); a cluster gets redis-py's asyncio RedisCluster. It
# routes every EVALSHA by its first key's slot (every script's KEYS share the
# `{project}` hash tag), loads a script on every master after a NOSCRIPT (SCRIPT LOAD
# goes to all primaries), follows MOVED/ASK, and reads its slot map again after a
# connection error or CLUSTERDOWN (a failover). Reads go to masters only
# (read_from_replicas off): a replica may lag, and codepool reads its own writes.


def is_cluster_url(url: str) -> bool:
    """Whether the Redis at ``url`` is a cluster node (``cluster_enabled:1``)."""
    options: dict[str, Any] = dict(parse_url(url))
    if options.get("connection_class") is UnixDomainSocketConnection:
        return False  # a cluster node listens on TCP; the embedded server on a socket
    probe = SyncRedis.from_url(url, socket_timeout=10, socket_connect_timeout=10)
    try:
        info = probe.info("cluster")
    except ResponseError:  # a server or proxy that does not know INFO cluster
        return False
    except (RedisConnectionError, RedisTimeoutError) as exc:
        # Down at start: serve as before (503 until it is back) rather than not start.
        # Were it a cluster node, the single-node client would get MOVED (503 too).
        # (The URL may hold a password: not logged.)
        log.warning("could not ask Redis whether it is a cluster node (%s): one Redis", exc)
        return False
    finally:
        probe.close()
    return bool(info.get("cluster_enabled"))


# Set while a command of a _GatedCluster runs (see its aclose).
_IN_COMMAND: contextvars.ContextVar[bool] = contextvars.ContextVar("in_command", default=False)


class _GatedCluster(RedisCluster):
    """RedisCluster, with three things redis-py 8.1's asyncio cluster gets wrong under
    concurrency made right.

    - A node's connection list raises MaxConnectionsError when full, where the single
      node client's blocking pool waits: the gate lets at most ``limit`` commands of
      this process run at once (as many connections per node), so a burst queues.
    - A command on a client not yet initialized picks its node before the slot map is
      read (a random one: MOVED); the map is read first here.
    - After CLUSTERDOWN (a failover) or every few MOVED, redis-py calls aclose() to get
      a fresh slot map, which disconnects every node's connections, also those other
      commands are using at that moment (they fail with AttributeError on a None
      writer). From inside a command, aclose() only asks for a fresh map; a real close
      (the app's shutdown) still closes everything.
    """

    def __init__(self, *args: Any, limit: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Semaphore(limit)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.gate:
            if self._initialize:
                await self.initialize()
            token = _IN_COMMAND.set(True)
            try:
                return await super().execute_command(*args, **kwargs)
            finally:
                _IN_COMMAND.reset(token)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        return _GatedPipeline(self, transaction)  # type: ignore[abstract]

    async def aclose(self) -> None:
        if _IN_COMMAND.get():
            self._initialize = True  # the next command reads the slot map again
            return
        await super().aclose()


class _GatedPipeline(ClusterPipeline):
    """A pipeline takes one slot of the gate (one connection per node it reaches), and
    its failover handling, like a command's, only asks for a fresh slot map."""

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        async with gate(self.cluster_client):
            token = _IN_COMMAND.set(True)
            try:
                return await super().execute(raise_on_error, allow_redirections)
            finally:
                _IN_COMMAND.reset(token)


def gate(cluster: RedisCluster) -> asyncio.Semaphore | contextlib.nullcontext[None]:
    """The gate of a _GatedCluster (what bypasses its execute_command, holding node
    connections directly, takes a slot too)."""
    return cluster.gate if isinstance(cluster, _GatedCluster) else contextlib.nullcontext()


def make_cluster(url: str, max_connections: int, **extra: Any) -> RedisCluster:
    """The asyncio cluster client for the cluster that ``url``'s node belongs to, its
    connections packing commands with hiredis like the single-node client's."""
    options: dict[str, Any] = dict(parse_url(url))
    kind = options.pop("connection_class", Connection)
    options.pop("db", None)  # a cluster has only db 0
    options.update(extra)
    cluster = _GatedCluster(
        limit=max_connections,
        max_connections=max_connections,
        # Reads from masters only (no load_balancing_strategy): a replica may lag, and
        # codepool reads its own writes. A failover (cluster-node-timeout plus an
        # election) outlasts these retries: requests meanwhile get 503, then resume.
        retry=Retry(ExponentialWithJitterBackoff(base=0.1, cap=1.0), retries=3),
        # MOVED patches the slot map slot by slot (never the close-everything reset).
        reinitialize_steps=0,
        ssl=kind is not Connection and issubclass(kind, SSLConnection),
        **options,
    )
    # redis-py 8.1's cluster MULTI/EXEC hands each reply's callback the command's
    # ``keys`` option, which the callbacks do not take (TypeError on HGETALL in a
    # transaction); a single command drops it first (ClusterNode.parse_response). The
    # transaction path alone reads this dict: drop it there too.
    cluster.response_callbacks = {
        name: _without_keys(callback) for name, callback in cluster.response_callbacks.items()
    }
    packing = PACKING.get(kind)
    if packing is not None:
        # RedisCluster takes no connection_class; every node, the startup node and those
        # it discovers, is built from this shared dict.
        cluster.connection_kwargs["connection_class"] = packing
        for node in cluster.startup_nodes:
            node.connection_class = cast(Any, packing)
    return cluster


def _without_keys(callback: Callable[..., Any]) -> Callable[..., Any]:
    def call(response: Any, **options: Any) -> Any:
        options.pop("keys", None)
        return callback(response, **options)

    return call


def is_cluster(client: Redis) -> bool:
    return isinstance(client, RedisCluster)


async def scan_every_master(
    client: Redis, match: str | None = None, count: int = 1000
) -> AsyncIterator[list[bytes]]:
    """Every key (matching ``match``) of every master, in batches: on one Redis a plain
    SCAN; on a cluster a SCAN on each master in turn.

    What snapshots and restores use to find keys across shards. As SCAN itself, a key
    may come more than once; a key that exists for the whole scan comes at least once,
    also across a failover or resharding: a master lost mid-scan is scanned again from
    the start on the node that now serves its slots, and if the slot map changed by the
    end, every master is scanned again.
    """
    if not is_cluster(client):
        cursor = 0
        while True:
            cursor, found = await client.scan(cursor, match=match, count=count)
            if found:
                yield cast(list[bytes], found)
            if cursor == 0:
                return
    cluster = cast(RedisCluster, client)
    for _attempt in range(5):
        await cluster.initialize()
        before = _slot_map(cluster)
        for name in sorted({node.name for node in cluster.get_primaries()}):
            async for batch in _scan_node(cluster, name, match, count):
                yield batch
        await cluster.nodes_manager.initialize()
        if _slot_map(cluster) == before:
            return
        log.info("the cluster's slot map changed during a scan: scanning again")
    raise RedisClusterException("the cluster's slot map kept changing during a scan")


def _slot_map(cluster: RedisCluster) -> list[str]:
    """Which node is master of each slot."""
    return [nodes[0].name for nodes in cluster.nodes_manager.slots_cache.values()]


async def _scan_node(
    cluster: RedisCluster, name: str, match: str | None, count: int
) -> AsyncIterator[list[bytes]]:
    node = cluster.get_node(node_name=name)
    cursor = 0
    while node is not None:
        try:
            cursors, keys_found = cast(
                tuple[dict[str, int], list[bytes]],
                await cluster.scan(cursor, match=match, count=count, target_nodes=node),
            )
        except (RedisConnectionError, RedisTimeoutError):
            # The master died: its slots move to a replica. Scan that node from the
            # start (the caller sees repeats, never a gap).
            log.warning("cluster node %s lost during a scan: scanning its successor", name)
            await asyncio.sleep(0.2)
            node = await _successor(cluster, node)
            cursor = 0
            continue
        cursor = int(next(iter(cursors.values())))
        if keys_found:
            yield keys_found
        if cursor == 0:
            return


async def _successor(cluster: RedisCluster, lost: ClusterNode) -> ClusterNode | None:
    """The master that serves (one of) the slots ``lost`` served, once one does."""
    slots = [s for s, nodes in cluster.nodes_manager.slots_cache.items() if nodes[0] == lost]
    for _ in range(100):
        try:
            await cluster.nodes_manager.initialize()
        except RedisError:
            await asyncio.sleep(0.1)
            continue
        if not slots:
            return None
        node = cluster.nodes_manager.slots_cache[slots[0]][0]
        if node.name != lost.name:
            return node
        await asyncio.sleep(0.1)
    raise RedisClusterException(f"no node took over from {lost.name}")
