"""Faults for the tests: a loopback TCP proxy that can stall, reset and refuse, a Redis server
the test owns (kill, restart, SIGSTOP/SIGCONT), and threads that keep requests going meanwhile.

Everything binds 127.0.0.1 only.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

from tests.services import LOOPBACK, closed_port


class FaultProxy:
    """Forwards 127.0.0.1:<port> to ``target`` until told to misbehave.

    - :meth:`stall`: stop forwarding in both directions, keep every socket open and keep
      accepting (what a hung server, a full network queue or a SIGSTOPped peer looks like);
      :meth:`resume` forwards again, what was held included.
    - :meth:`reset`: close every open connection with a TCP RST.
    - :meth:`refuse`: stop listening (new connections are refused); :meth:`accept` listens
      again on the same port.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._closed = False
        self.accept()

    def accept(self) -> None:
        """Listen (again, on the same port once it has one)."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def refuse(self) -> None:
        """Stop listening and reset what is open: a server that is down."""
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            listener.close()
        self.reset()

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def reset(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, set()
        for sock in socks:
            try:  # SO_LINGER 0: close sends RST
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            except OSError:
                pass

    def close(self) -> None:
        self._closed = True
        self.resume()
        self.refuse()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: refuse() or close()
            if self._listener is not listener:  # accepted as it was being closed
                client.close()
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._socks |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if data:
                self._flowing.wait()  # a stall holds the bytes, and the socket stays open
            try:
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                sink.sendall(data)
            except OSError:
                return

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OwnRedis:
    """A redis-server on a free loopback port, started by the test: kill, restart, stop, go on."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server")
        self.binary = binary
        self.port = closed_port()
        self.folder = tempfile.mkdtemp(prefix="satchel-redis-")
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        """Start it (again), with its data kept across restarts (an append-only file)."""
        self.process = subprocess.Popen(
            [self.binary, "--bind", LOOPBACK, "--port", str(self.port), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", self.folder],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def go_on(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        if self.process is not None:
            self.go_on()
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


class Outcome(NamedTuple):
    """One request made during a fault: when it started (monotonic), its status, its time,
    and the number of the client that sent it.

    A tuple of numbers, which the cycle collector stops tracking: tens of thousands of them
    would otherwise lengthen each of its full passes in the measuring process, which pause
    every client thread and count as the server's latency.
    """

    started: float
    status: int
    seconds: float
    client: int = -1


@dataclass
class Load:
    """Threads that each keep sending requests with ``send()`` until stopped."""

    send: Callable[[int], int]  # client number -> HTTP status
    clients: int
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    @contextmanager
    def running(self) -> Iterator[Load]:
        threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                   for n in range(self.clients)]
        gc.collect()
        gc.freeze()  # what exists now is not traversed again by the collector's full passes
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(60)
            gc.unfreeze()

    def _run(self, number: int) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            status = self.send(number)
            self.outcomes.append(Outcome(started, status, time.monotonic() - started, number))
            time.sleep(0.01)

    def between(self, start: float, end: float) -> list[Outcome]:
        """The requests that started in [start, end)."""
        return [o for o in self.outcomes if start <= o.started < end]
