"""The app's Redis client: a blocking pool of connections that pack commands in C.

redis-py's asyncio connections pack every command in Python, one bytes join per
argument (its sync connections use hiredis when it is installed). One coalesced
issue.lua call carries a dozen arguments per request it serves, hundreds in all; packed
by hiredis that call costs a fraction of the CPU (measured: about 20 us less per
request at 8 requests per call).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import hiredis
from redis import Redis as SyncRedis
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode, ClusterPipeline
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.backoff import ExponentialWithJitterBackoff
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

from codepool.settings import Settings

log = logging.getLogger(__name__)


class _HiredisPacking(AbstractConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        # Command names of two words ("SCRIPT LOAD") are split by redis-py's own packer;
        # anything hiredis does not take (a memoryview, say) goes there too.
        if isinstance(args[0], str) and " " in args[0]:
            return super().pack_command(*args)
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return super().pack_command(*args)


class HiredisConnection(_HiredisPacking, Connection):
    """TCP."""


class HiredisUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    """Unix socket (what the embedded Redis listens on)."""


_PACKING: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: HiredisConnection,
    UnixDomainSocketConnection: HiredisUnixConnection,
}


def make_client(settings: Settings) -> Redis:
    """A client over a blocking pool: under a burst, requests wait for a connection
    instead of failing with 'too many connections'. A cluster node's URL gives a cluster
    client (below), typed as Redis."""
    if settings.redis_url is None:
        raise RuntimeError("CODEPOOL_REDIS_URL is not set (codepool serve sets it)")
    if is_sentinel_url(settings.redis_url):
        return make_sentinel(settings.redis_url, settings.redis_max_connections)
    if is_cluster_url(settings.redis_url):
        return cast(Redis, make_cluster(settings.redis_url, settings.redis_max_connections))
    options: dict[str, Any] = dict(parse_url(settings.redis_url))
    kind = options.get("connection_class", Connection)
    options["connection_class"] = _PACKING.get(kind, kind)  # TLS keeps redis-py's packer
    pool = BlockingConnectionPool(
        max_connections=settings.redis_max_connections, timeout=20, **options
    )
    # from_pool: closing the client also closes the pool and its connections.
    return Redis.from_pool(pool)


# -- Redis Sentinel ---------------------------------------------------------------------
#
# redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[?db=N]
# (rediss+sentinel:// for TLS to the master): the sentinels' addresses (port 26379 if
# none) and the monitored service's name. The password is the master's; the sentinels
# are asked without one unless ?sentinel_password= gives theirs. redis-py's asyncio
# Sentinel finds the master, and again after a failover (a connection error makes the
# pool ask the sentinels anew).

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")


class HiredisSentinelConnection(_HiredisPacking, SentinelManagedConnection):
    """A connection to whatever the sentinels name master, packing with hiredis."""


class _WaitingSentinelPool(SentinelConnectionPool):
    """redis-py's sentinel pool raises when all its connections are busy; this one
    waits, as the single-node client's blocking pool does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._slots = asyncio.Semaphore(self.max_connections)

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        await self._slots.acquire()
        try:
            connection: AbstractConnection = await super().get_connection(  # type: ignore[no-untyped-call]
                *args, **kwargs
            )
        except BaseException:
            self._slots.release()
            raise
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        try:
            await super().release(connection)
        finally:
            self._slots.release()


class _SentinelRedis(Redis):
    """The master's client; closing it closes the clients of the sentinels too."""

    sentinels: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinels is not None:
            for client in self.sentinels.sentinels:
                await client.aclose()


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SENTINEL_SCHEMES


def make_sentinel(url: str, max_connections: int, **extra: Any) -> Redis:
    """The client of the master that the sentinels in ``url`` name."""
    parts = urlsplit(url)
    netloc = parts.netloc
    username = password = None
    if "@" in netloc:
        credentials, netloc = netloc.rsplit("@", 1)
        user, _, secret = credentials.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    hosts: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "26379")
        hosts.append((host, int(port)))
    service = unquote(parts.path.strip("/"))
    if not service or not hosts:
        raise ValueError("a sentinel URL names its sentinels and the service: see docs/cluster.md")
    query = dict(parse_qsl(parts.query))
    tls = parts.scheme.lower().startswith("rediss")
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5}
    if query.get("sentinel_password"):
        sentinel_kwargs["password"] = query["sentinel_password"]
    sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    client: _SentinelRedis = sentinel.master_for(
        service,
        redis_class=_SentinelRedis,
        connection_pool_class=_WaitingSentinelPool,
        connection_class=SentinelManagedSSLConnection if tls else HiredisSentinelConnection,
        max_connections=max_connections,
        username=username,
        password=password,
        db=int(query.get("db", 0)),
        **extra,
    )
    client.sentinels = sentinel
    return cast(Redis, client)


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
        async with _gate(self.cluster_client):
            token = _IN_COMMAND.set(True)
            try:
                return await super().execute(raise_on_error, allow_redirections)
            finally:
                _IN_COMMAND.reset(token)


def _gate(cluster: RedisCluster) -> asyncio.Semaphore | contextlib.nullcontext[None]:
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
    packing = _PACKING.get(kind)
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


def connect(url: str, max_connections: int | None = None, **extra: Any) -> Redis:
    """A client for ``url``: a cluster client when the node is part of a cluster (typed
    as Redis: RedisCluster speaks the same commands; where they differ, the caller asks
    :func:`is_cluster`), else redis-py's own (``extra`` goes to either). Blocks for one
    round trip (at start)."""
    if is_sentinel_url(url):
        return make_sentinel(url, max_connections or 64, **extra)
    if is_cluster_url(url):
        return cast(Redis, make_cluster(url, max_connections or 64, **extra))
    if max_connections is not None:
        extra["max_connections"] = max_connections
    return Redis.from_url(url, **extra)


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
            async with _gate(cluster):
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
    async with _gate(cluster):
        answers = await asyncio.gather(*map(one, by_node))
    for name, replies in zip(by_node, answers, strict=True):
        for i, reply in zip(by_node[name], replies, strict=True):
            out[i] = reply
    if any(isinstance(r, (MovedError, AskError)) for r in out):
        await cluster.nodes_manager.initialize()  # resharded: the next call goes right
    return out
