"""A Redis Cluster of real servers on loopback for the cluster tests: masters and replicas,
each a ``redis-server --cluster-enabled yes`` on a free port, joined and given their slots
with plain cluster commands (no ``redis-cli``), and a manual failover."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable

import redis

from conftest import RedisServer

SLOTS = 16384


def cluster_port() -> int:
    """A free port whose cluster bus port (10,000 above it) is free too, below 55,536."""
    for _ in range(200):
        port = random.randint(20_000, 45_000)
        if all(_free(p) for p in (port, port + 10_000)):
            return port
    raise RuntimeError("no free pair of ports for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)


def _wait(what: str, check: Callable[[], object], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the test cluster: {what} did not happen within {timeout_s:g}s")


class Cluster:
    """``masters`` masters, each with ``replicas`` replicas; :attr:`url` names one master."""

    def __init__(self, binary: str, masters: int = 3, replicas: int = 1) -> None:
        self.nodes: list[RedisServer] = []
        for _ in range(masters * (1 + replicas)):
            port = cluster_port()
            server = RedisServer(
                binary,
                extra=[
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", f"nodes-{port}.conf",
                    "--cluster-node-timeout", "1000",
                ],
            )
            server.port = port
            self.nodes.append(server)
        self.masters = self.nodes[:masters]
        self.replicas = self.nodes[masters:]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.masters[0].port}"

    def namespace(self) -> str:
        """A fresh key prefix, so tests sharing this cluster never see each other's streams."""
        return self.masters[0].namespace()

    def start(self) -> Cluster:
        for node in self.nodes:
            node.start()
        first = _client(self.masters[0].port)
        for node in self.nodes[1:]:
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        per = SLOTS // len(self.masters)
        for i, node in enumerate(self.masters):
            last = SLOTS - 1 if i == len(self.masters) - 1 else (i + 1) * per - 1
            _client(node.port).execute_command("CLUSTER", "ADDSLOTSRANGE", i * per, last)
        ids = [self.node_id(m) for m in self.masters]
        _wait("every node meeting every other", lambda: all(
            len(_client(n.port).execute_command("CLUSTER", "NODES").splitlines()) == len(self.nodes)
            for n in self.nodes
        ))
        for i, node in enumerate(self.replicas):
            master = ids[i % len(ids)]
            _wait(f"replica on {node.port} replicating", lambda n=node, m=master: _client(
                n.port).execute_command("CLUSTER", "REPLICATE", m))
        _wait("cluster_state:ok on every node", self.healthy)
        return self

    def node_id(self, node: RedisServer) -> str:
        return _client(node.port).execute_command("CLUSTER", "MYID").decode()

    def healthy(self) -> bool:
        return all(
            b"cluster_state:ok" in _client(n.port).execute_command("CLUSTER", "INFO")
            for n in self.nodes
            if n.proc is not None
        )

    def master_of(self, key: str) -> RedisServer:
        """The master that holds ``key`` now."""
        slot = _client(self.masters[0].port).execute_command("CLUSTER", "KEYSLOT", key)
        for node in self.nodes:
            info = _client(node.port).execute_command("ROLE")
            if info[0] != b"master":
                continue
            for line in _client(node.port).execute_command("CLUSTER", "NODES").splitlines():
                fields = line.decode().split()
                if "myself" in fields[2]:
                    for span in fields[8:]:
                        lo, _, hi = span.partition("-")
                        if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                            return node
        raise RuntimeError(f"no master holds slot {slot}")

    def fail_over(self, key: str) -> RedisServer:
        """A replica of ``key``'s master takes over (``CLUSTER FAILOVER``); the new master."""
        master = self.master_of(key)
        master_id = self.node_id(master)
        replica = next(n for n in self.nodes if n is not master and _replica_of(n) == master_id)
        _client(replica.port).execute_command("CLUSTER", "FAILOVER")
        _wait("the failover", lambda: _client(replica.port).execute_command("ROLE")[0] == b"master")
        _wait("the old master a replica", lambda: _replica_of(master) == self.node_id(replica))
        _wait("cluster_state:ok after the failover", self.healthy)
        return replica

    def fail_over_every_master(self) -> None:
        """Each master in turn hands its slots to its replica: whatever keys a test uses,
        the master that holds them fails over once."""
        for master in [n for n in self.nodes if _role(n) == b"master"]:
            replica = next(n for n in self.nodes if _replica_of(n) == self.node_id(master))
            _client(replica.port).execute_command("CLUSTER", "FAILOVER")
            _wait("the failover", lambda r=replica: _role(r) == b"master")
            new_id = self.node_id(replica)
            _wait("the old master a replica", lambda m=master, i=new_id: _replica_of(m) == i)
            _wait("cluster_state:ok after the failover", self.healthy)

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()


def _role(node: RedisServer) -> bytes:
    return bytes(_client(node.port).execute_command("ROLE")[0])


def _replica_of(node: RedisServer) -> str:
    for line in _client(node.port).execute_command("CLUSTER", "NODES").splitlines():
        fields = line.decode().split()
        if "myself" in fields[2]:
            return fields[3]
    return ""

