"""CPU per request of the Redis session layers, app side and Redis side, on a private server.

Wall time on a shared 2-core machine is noise; under load (bench/load.py) throughput is set by
the CPU each request costs everyone: the app's thread (Python and the kernel time of its
syscalls) and redis-server's (its commands, its event loop and its own syscalls). This runs
overhead.py's app in-process (no HTTP: what differs between contenders is the session layer)
against a redis-server of its own on a free loopback port, so the server's CPU is the run's
alone, and reports per request:

- ``app``: the request thread's CPU (``time.thread_time``: user + system), microseconds;
- ``redis``: redis-server's CPU (``INFO cpu``: user + system, all its threads), microseconds;
- the commands the server ran per request and their ``usec_per_call`` (``INFO commandstats``).

Rounds alternate contenders; each cell reports the median of its rounds.

    python bench/redis_cpu.py                              # about half a minute
    python bench/redis_cpu.py --only satchel-redis --requests 2000 --rounds 5
    python bench/redis_cpu.py --redis-server /usr/bin/redis-server
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

CONTENDERS = ("flask-cookie", "flask-session-redis", "satchel-redis")
SCENARIOS = ("read", "write")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_redis(binary: str, folder: str) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", folder, "--daemonize", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    client.close()
    return server, port


def _server_cpu(info: Any) -> float:
    cpu = info.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def _commands(info: Any) -> dict[str, tuple[int, float]]:
    stats = info.info("commandstats")
    return {name.removeprefix("cmdstat_"): (int(s["calls"]), float(s["usec"]))
            for name, s in stats.items()}


def _requests(app: Any, environ: dict[str, Any], count: int) -> None:
    from contender_apps import drive  # the same loop as make bench's (its timing unused here)

    drive(app, environ, count)


def measure(app: Any, environ: dict[str, Any], count: int, info: Any,
            threads: int = 1) -> dict[str, Any]:
    """Drive ``count`` requests (spread over ``threads`` threads at once, as a gthread
    server runs them); the app's and the server's CPU per request (µs) and the commands
    the server ran per request."""
    gc.collect()
    before_cmds = _commands(info)
    before_server = _server_cpu(info)
    if threads == 1:
        start = time.thread_time()
        _requests(app, environ, count)
        app_cpu = time.thread_time() - start
    else:
        workers = [threading.Thread(target=_requests, args=(app, environ, count // threads))
                   for _ in range(threads)]
        start = time.process_time()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        app_cpu = time.process_time() - start
        count = count // threads * threads
    server_cpu = _server_cpu(info) - before_server
    after = _commands(info)
    commands = {}
    for name, (calls, usec) in after.items():
        old_calls, old_usec = before_cmds.get(name, (0, 0.0))
        if name == "info":
            continue
        if calls - old_calls:
            commands[name] = ((calls - old_calls) / count, (usec - old_usec) / (calls - old_calls))
    return {"app": app_cpu / count * 1e6, "redis": server_cpu / count * 1e6,
            "commands": commands}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per cell and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="threads driving the app at once (gunicorn gthread: 4); above 1,"
                             " the app's figure is the whole process's CPU")
    parser.add_argument("--only", default=",".join(CONTENDERS))
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    args = parser.parse_args(argv)

    folder = tempfile.mkdtemp(prefix="satchel-cpu-")
    server, port = _start_redis(args.redis_server, folder)
    os.environ["SATCHEL_TEST_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    try:
        import contender_apps  # reads the URL at import
        import redis

        info = redis.Redis(port=port)
        makers = {"flask-cookie": contender_apps.flask_cookie,
                  "flask-session-redis": contender_apps.flask_session_redis,
                  "satchel-redis": contender_apps.satchel_redis}
        cells = {}
        for name in args.only.split(","):
            app = makers[name]()
            if app is None:
                print(f"{name}: not available", file=sys.stderr)
                continue
            cookie = contender_apps.login_cookie(app)
            for scenario in SCENARIOS:
                environ = contender_apps.environ_for(f"/{scenario}", cookie)
                measure(app, environ, 200, info)  # warm up
                cells[name, scenario] = (app, environ)
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {cell: [] for cell in cells}
        for _ in range(args.rounds):
            for cell, (app, environ) in cells.items():
                runs[cell].append(measure(app, environ, args.requests, info, args.threads))
        version = info.info("server")["redis_version"]
        info.close()
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)

    print(f"CPU per request, µs: median of {args.rounds} interleaved rounds of {args.requests}"
          f" requests in {args.threads} thread(s) (spread min-max); redis-server {version}"
          " of its own")
    print(f"{'':22}{'scenario':>9}{'app':>20}{'redis':>20}{'total':>10}   commands per request"
          " (usec_per_call)")
    for (name, scenario), results in runs.items():
        apps = [r["app"] for r in results]
        servers = [r["redis"] for r in results]
        totals = [a + s for a, s in zip(apps, servers, strict=True)]
        last = results[-1]["commands"]
        cmds = ", ".join(f"{n} {c:.2f} ({u:.1f})" for n, (c, u) in sorted(last.items()))
        print(f"{name:22}{scenario:>9}"
              f"{statistics.median(apps):>8.1f} ({min(apps):4.0f}-{max(apps):4.0f})"
              f"{statistics.median(servers):>8.1f} ({min(servers):4.0f}-{max(servers):4.0f})"
              f"{statistics.median(totals):>10.1f}   {cmds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
