"""Throwaway Redis servers on loopback, for tests: a three-node Redis Cluster, or one server.

    with redis_cluster() as ports:
        client = RedisCluster(host="127.0.0.1", port=ports[0])
    with redis_server("--maxmemory-policy", "noeviction") as port:
        client = redis.Redis(host="127.0.0.1", port=port)

Needs the ``redis-server`` and ``redis-cli`` binaries (Debian: ``redis-server``
and ``redis-tools``). The processes and their temporary folder are removed on
exit, whatever happens.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

BINARIES = ("redis-server", "redis-cli")
HOST = "127.0.0.1"
BUS_OFFSET = 10000  # Redis Cluster's node-to-node bus listens on port + 10000


def missing_binaries() -> list[str]:
    """The binaries this helper needs that are not on PATH."""
    return [name for name in BINARIES if shutil.which(name) is None]


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """``count`` ports that are free on loopback, with their cluster bus ports free too.

    Drawn below the usual ephemeral range so outgoing connections rarely take them.
    """
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(20000, 30000)
        if port not in ports and _bindable(port) and _bindable(port + BUS_OFFSET):
            ports.append(port)
    return ports


def _cli(port: int, *args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["redis-cli", "-h", HOST, "-p", str(port), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def _socket_ping(port: int) -> bool:
    """True when the server on ``port`` answers an inline PING with +PONG."""
    try:
        with socket.create_connection((HOST, port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(64)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return False
    return reply == b"+PONG\r\n"


def _wait(what: str, ready: Callable[[], bool], timeout: float, logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            tail = "\n".join(p.read_text()[-2000:] for p in sorted(logs.glob("*.log")))
            raise RuntimeError(f"Redis: timed out waiting for {what}\n{tail}")
        time.sleep(0.05)


@contextmanager
def redis_cluster(nodes: int = 3, timeout: float = 30,
                  ports: list[int] | None = None) -> Iterator[list[int]]:
    """Start a ``nodes``-primary cluster with no replicas; yield its ports (``ports``, if
    given: from :func:`free_ports`, say, for a URL made before the cluster starts)."""
    with cluster_nodes(nodes, timeout, ports) as started:
        yield [node.port for node in started]


@dataclass(frozen=True)
class Node:
    """One node of a cluster :func:`cluster_nodes` started: its port and its process."""

    port: int
    process: subprocess.Popen[bytes]

    def pause(self) -> None:
        """SIGSTOP: the node keeps its sockets and accepts connections, but answers nothing
        (a hung server)."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def go_on(self) -> None:
        """SIGCONT: the node answers again, what was held included."""
        os.kill(self.process.pid, signal.SIGCONT)


@contextmanager
def cluster_nodes(nodes: int = 3, timeout: float = 30,
                  ports: list[int] | None = None, *, replicas: int = 0,
                  options: Sequence[str] = ()) -> Iterator[list[Node]]:
    """As :func:`redis_cluster`, yielding the nodes (port and process) to stop and resume.
    Paused nodes are resumed before they are stopped. ``replicas``: per primary (``nodes``
    counts them too); ``options``: more ``redis-server`` arguments for every node."""
    tmp = Path(tempfile.mkdtemp(prefix="satchel-redis-cluster-"))
    procs: list[subprocess.Popen[bytes]] = []
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)
        cleanup.callback(_stop, procs)
        ports = ports or free_ports(nodes)
        for port in ports:
            log = cleanup.enter_context((tmp / f"redis-{port}.log").open("wb"))
            procs.append(subprocess.Popen(
                ["redis-server", "--cluster-enabled", "yes", "--port", str(port),
                 "--bind", HOST, "--cluster-config-file", str(tmp / f"nodes-{port}.conf"),
                 "--save", "", "--appendonly", "no", "--dir", str(tmp),
                 "--daemonize", "no", *options],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        for port, proc in zip(ports, procs, strict=True):
            def up(port: int = port, proc: subprocess.Popen[bytes] = proc) -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"redis-server on port {port} exited with {proc.returncode}"
                                       f"\n{(tmp / f'redis-{port}.log').read_text()[-2000:]}")
                return _cli(port, "ping").stdout.strip() == "PONG"
            _wait(f"redis-server on port {port}", up, timeout, tmp)
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"{HOST}:{p}" for p in ports),
             "--cluster-replicas", str(replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=timeout, check=False)
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout}"
                               f"\n{created.stderr}")
        for port in ports:
            def ok(port: int = port) -> bool:
                return "cluster_state:ok" in _cli(port, "cluster", "info").stdout
            _wait(f"cluster_state:ok on port {port}", ok, timeout, tmp)

            def synced(port: int = port) -> bool:  # a replica can take over once in sync
                info = _cli(port, "info", "replication").stdout
                return "role:master" in info or "master_link_status:up" in info
            _wait(f"replica on port {port} in sync", synced, timeout, tmp)
        yield [Node(port, proc) for port, proc in zip(ports, procs, strict=True)]


@contextmanager
def redis_server(*options: str, ready: Callable[[int], bool] | None = None,
                 tmp: Path | None = None, timeout: float = 30,
                 binary: str = "redis-server") -> Iterator[int]:
    """Start one standalone ``redis-server`` with extra command-line ``options``; yield its port.

    It keeps nothing on disk unless ``options`` say so; its working folder is ``tmp``
    (kept) or a new temporary one (removed). ``ready(port)`` says when it is up; by
    default, when it answers PING. ``binary`` is the server to run (a path, or a name on
    PATH); for any but the default, that PING goes over a plain socket, so neither
    ``redis-cli`` nor a client library is needed.
    """
    with ExitStack() as cleanup:
        folder = tmp
        if folder is None:
            folder = Path(tempfile.mkdtemp(prefix="satchel-redis-server-"))
            cleanup.callback(shutil.rmtree, folder, ignore_errors=True)
        procs: list[subprocess.Popen[bytes]] = []
        cleanup.callback(_stop, procs)
        port = free_ports(1)[0]
        log = cleanup.enter_context((folder / f"redis-{port}.log").open("wb"))
        procs.append(subprocess.Popen(
            [binary, "--port", str(port), "--bind", HOST, "--save", "",
             "--appendonly", "no", "--dir", str(folder), "--daemonize", "no", *options],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

        def up() -> bool:
            if procs[0].poll() is not None:
                raise RuntimeError(f"{binary} on port {port} exited with"
                                   f" {procs[0].returncode}\n"
                                   f"{(folder / f'redis-{port}.log').read_text()[-2000:]}")
            if ready is not None:
                return ready(port)
            if binary != "redis-server":
                return _socket_ping(port)
            return _cli(port, "ping").stdout.strip() == "PONG"
        _wait(f"{binary} on port {port}", up, timeout, folder)
        yield port


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.send_signal(signal.SIGCONT)  # a paused node acts on SIGTERM once resumed
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
