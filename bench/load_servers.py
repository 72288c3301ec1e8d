"""bench/load.py's processes: two gunicorn servers per contender, two wrk clients per cell.

Every process is started on loopback only and dies with this one: each gets
SIGTERM if the benchmark's process goes away, however it goes (Linux's
PR_SET_PDEATHSIG), besides the orderly stop in :meth:`Servers.stop`; wrk is
bounded by its ``-d``. A server listens on a socket this process bound
(127.0.0.1, a port the kernel chose) and handed over (gunicorn's ``fd://``), so
no port is guessed.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from load_store_cpu import NoServer, ServerCpu

BENCH = Path(__file__).resolve().parent
LUA = BENCH / "load.lua"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux; elsewhere nothing)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class Servers:
    """Two single-worker gunicorn gthread servers of one contender, each on its own port.

    ``env`` is the servers' environment (it names the contender: see load_app.py).
    Raises RuntimeError, with the server's log, if one does not answer within 60 s.
    """

    def __init__(self, name: str, env: dict[str, str], *, threads: int, logdir: Path) -> None:
        self.name = name
        self.ports: list[int] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        for index in range(2):  # one after the other: each creates its tables at start
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            log = logdir / f"{name}-{index}.log"
            command = [sys.executable, "-m", "gunicorn", "--worker-class", "gthread",
                       "--workers", "1", "--threads", str(threads),
                       "--bind", f"fd://{sock.fileno()}", "--pythonpath", str(BENCH),
                       "--error-logfile", str(log), "--log-level", "warning",
                       "--graceful-timeout", "5", "load_app:make_app()"]
            if Path("/dev/shm").is_dir():
                command[3:3] = ["--worker-tmp-dir", "/dev/shm"]
            with log.open("ab") as stderr:  # the app's own log lines (satchel's errors) too
                self._processes.append(subprocess.Popen(
                    command, env=env, pass_fds=[sock.fileno()], preexec_fn=_die_with_parent,
                    stdout=subprocess.DEVNULL, stderr=stderr))
            self.ports.append(sock.getsockname()[1])
            sock.close()  # the server holds its own copy
            self._wait(self.ports[-1], self._processes[-1], log)

    def _wait(self, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/untouched")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                text = log.read_text() if log.exists() else ""
                raise RuntimeError(f"{self.name}: the server did not start:\n{text[-3000:]}")
            time.sleep(0.1)

    def pids(self) -> list[int]:
        """The servers' processes: each gunicorn master and its worker(s)."""
        pids = []
        for process in self._processes:
            pids.append(process.pid)
            try:
                children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
            except OSError:
                continue
            pids += [int(pid) for pid in children.split()]
        return pids

    def stop(self) -> None:
        """Stop both servers (SIGTERM, then SIGKILL after 10 s); stopping twice is harmless."""
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class Cell:
    """One run of both clients: requests per second (both summed), latency in ms."""

    rate: float
    p50: float
    p99: float
    errors: int
    bad: int
    first_bad: str  # the first unexpected response: status and start of body ("" if none)
    cpu_us: float = float("nan")  # CPU µs per request of the app: `pids` and the wrk clients
    server_us: float = 0.0  # CPU µs per request of the store's server (0 without one)
    switches: float = float("nan")  # the servers' voluntary context switches per request


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds so far of processes ``pids`` (all their threads; Linux's
    /proc, 1/100 s resolution); a process that is gone counts 0."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def voluntary_switches(pids: list[int]) -> int:
    """Voluntary context switches so far of processes ``pids``, all their threads (Linux's
    /proc): each time a thread slept, on a lock, a socket or the interpreter lock. A
    process or thread that is gone counts 0."""
    total = 0
    for pid in pids:
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for thread in threads:
            try:
                status = Path(f"/proc/{pid}/task/{thread}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


def _quantile(runs: list[dict[str, float | list[int]]], q: float) -> float:
    """The ``q`` quantile (0-1) of the runs' latencies together, in µs.

    Each run gives its 0.1st to 99.9th percentiles; each stands for an equal share
    of that run's requests.
    """
    points: list[tuple[float, float]] = []
    for result in runs:
        quantiles = result["quantiles_us"]
        assert isinstance(quantiles, list)
        weight = float(result["requests"]) / len(quantiles)  # type: ignore[arg-type]
        points += [(float(value), weight) for value in quantiles]
    points.sort()
    total = sum(weight for _, weight in points)
    seen = 0.0
    for value, weight in points:
        seen += weight
        if seen >= q * total:
            return value
    return points[-1][0] if points else float("nan")


def drive(ports: list[int], path: str, expected: str, *, seconds: int,
          connections: int, pids: list[int] | None = None,
          server: ServerCpu | None = None) -> Cell:
    """Drive each port with its own wrk for ``seconds``, at once; the combined figures.

    Each wrk opens ``connections`` keep-alive connections (one thread each), and
    each connection logs in, then requests ``path``, expecting ``expected``. The cell's
    ``cpu_us`` counts the CPU of the wrk clients and of processes ``pids`` (the gunicorn
    servers) per request, ``server_us`` that of the store's server (``server``'s meter,
    over the same window): on a machine that other work loads, steadier figures than
    req/s for what the contender costs. ``switches``: the voluntary context switches of
    ``pids`` per request (threads of a server that kept going to sleep and waking up).
    """
    pids = pids or []
    server_since = (server or NoServer()).start()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = cpu_seconds(pids)
    switches_before = voluntary_switches(pids)
    clients = [subprocess.Popen(
        ["wrk", f"-t{connections}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
         "-s", str(LUA), f"http://127.0.0.1:{port}", "--", path, expected],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_die_with_parent) for port in ports]
    runs = []
    try:
        for client in clients:
            out, err = client.communicate(timeout=seconds + 60)
            lines = [line for line in out.splitlines() if line.startswith("{")]
            if client.returncode or not lines:
                raise RuntimeError(f"wrk failed ({client.returncode}): {out}{err}")
            runs.append(json.loads(lines[-1]))
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
    cpu = cpu_seconds(pids) - cpu_before
    switches = voluntary_switches(pids) - switches_before
    server_cpu = server_since()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu += (children.ru_utime - children_before.ru_utime
            + children.ru_stime - children_before.ru_stime)  # the wrk clients, now reaped
    requests = sum(r["requests"] for r in runs)
    rate = sum(r["requests"] / (r["duration_us"] / 1e6) for r in runs)
    per_request = 1e6 / requests if requests else float("nan")
    return Cell(rate=rate, cpu_us=cpu * per_request, server_us=server_cpu * per_request,
                switches=switches / requests if requests and pids else float("nan"),
                p50=_quantile(runs, 0.5) / 1000, p99=_quantile(runs, 0.99) / 1000,
                errors=sum(r["errors"] for r in runs), bad=sum(r["bad"] for r in runs),
                first_bad=next((r["first_bad"] for r in runs if r["first_bad"]), ""))
