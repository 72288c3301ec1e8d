"""SQLite session writes from several app processes at once: latency tails and throughput.

Each run starts 1 or 2 OS processes; each builds the same small Flask app (satchel on one
SQLite file shared by the processes, or Flask's cookie session for comparison) and runs
``--threads`` threads, each with its own logged-in session, calling the WSGI app in a loop
(no sockets: nothing but the session layer and Flask is timed). All threads start together
and run for ``--seconds``; every request's latency is recorded. Runs are interleaved (one
round visits every cell, rotating the order) and the table shows medians over rounds,
with the spread of p99 across rounds. Loads: ``paced-write`` (each thread writes
``--rate`` times a second: latency with CPU to spare), ``write`` and ``read`` (as fast
as the threads go: throughput, and latency with the CPU saturated).

    python bench/sqlite_processes.py            # about two minutes
    python bench/sqlite_processes.py --quick    # a smoke run, figures not meaningful
    python bench/sqlite_processes.py --against /work/main/src   # and another checkout's store

A write increments a counter in the session (a write transaction per request); a read
reads the logged-in user and changes nothing. ``--against DIR`` adds satchel-sqlite imported
from another source tree (``DIR`` holds the ``satchel`` package), for a before/after in
one interleaved run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SECRET = "bench-secret-key-of-a-sensible-length-0123456789"


# -- the worker: one app process ------------------------------------------------------------

def _app(layer: str, path: str) -> Any:
    from flask import Flask, session

    app = Flask("bench")
    app.config["SECRET_KEY"] = SECRET

    @app.get("/login")
    def login() -> str:
        session["user"] = "alice"
        session["n"] = 0
        return "ok"

    @app.get("/write")
    def write() -> str:
        session["n"] = session.get("n", 0) + 1
        return "ok"

    @app.get("/read")
    def read() -> str:
        return str(session.get("user"))

    if layer != "flask-cookie":
        from satchel import Satchel, SQLiteStore

        Satchel(app, store=SQLiteStore(path))
    return app


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    if not status.startswith("200"):
        raise RuntimeError(f"benchmark request failed: {status}")


def _thread(app: Any, scenario: str, rate: float, go: threading.Event, stop: list[float],
            out: list[int]) -> None:
    from werkzeug.test import EnvironBuilder

    client = app.test_client()
    client.get("/login")
    name = app.config["SESSION_COOKIE_NAME"]
    cookie = client.get_cookie(name)
    headers = {"Cookie": f"{name}={cookie.value}"} if cookie else {}
    environ = EnvironBuilder(path=f"/{scenario}", base_url="http://localhost/",
                             headers=headers).get_environ()
    wsgi, clock = app.wsgi_app, time.perf_counter

    def once() -> None:
        body = wsgi(environ.copy(), _start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()

    for _ in range(20):  # warm: connection, statement cache, code paths
        once()
    go.wait()
    period = 1 / rate if rate else 0.0
    due = clock() + random.random() * period  # threads paced out of step with each other
    while True:
        start = clock()
        if start < due:
            time.sleep(due - start)
            start = clock()
        if start >= stop[0]:
            return
        once()
        out.append(int((clock() - start) * 1e6))
        due = max(due + period, start) if period else 0.0


def worker(layer: str, scenario: str, path: str, threads: int, seconds: float,
           rate: float) -> None:
    """Print ``ready``, wait for a line on stdin, run, print the latencies (µs) as JSON."""
    app = _app(layer, path)
    go, stop = threading.Event(), [0.0]
    outs: list[list[int]] = [[] for _ in range(threads)]
    pool = [threading.Thread(target=_thread, args=(app, scenario, rate, go, stop, out))
            for out in outs]
    for thread in pool:
        thread.start()
    time.sleep(0.3)  # the threads log in and warm up
    print("ready", flush=True)
    sys.stdin.readline()
    stop[0] = time.perf_counter() + seconds
    go.set()
    for thread in pool:
        thread.join()
    print(json.dumps([value for out in outs for value in out]), flush=True)


# -- the driver -----------------------------------------------------------------------------

def run_cell(layer: str, src: Path, scenario: str, rate: float, processes: int, threads: int,
             seconds: float, folder: Path) -> dict[str, float]:
    """One run: ``processes`` workers at once on a new file, each thread making ``rate``
    requests a second (0: as many as it can); requests a second and latencies in ms."""
    path = str(folder / f"sessions-{time.monotonic_ns()}.sqlite3")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src), str(HERE)]))
    args = [sys.executable, str(Path(__file__).resolve()), "--worker", layer, scenario, path,
            str(threads), str(seconds), str(rate)]
    if layer != "flask-cookie":  # the schema exists before the timed processes start
        subprocess.run([*args[:2], "--create", path], env=env, check=True, timeout=60)
    procs = [subprocess.Popen(args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in range(processes)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a worker failed to start ({layer}, {scenario})")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        latencies: list[int] = []
        for proc in procs:
            out, _ = proc.communicate(timeout=seconds + 60)
            if proc.returncode != 0:
                raise RuntimeError(f"a worker failed ({layer}, {scenario})")
            latencies += json.loads(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    latencies.sort()
    n = len(latencies)
    return {"rps": n / seconds, "p50": latencies[n // 2] / 1e3,
            "p99": latencies[min(n - 1, int(n * 0.99))] / 1e3, "max": latencies[-1] / 1e3}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: one short round")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=4, help="threads per process")
    parser.add_argument("--processes", default="1,2", help="process counts to run")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="requests a second per thread in the paced write runs")
    parser.add_argument("--loads", default="paced-write,write,read",
                        help="paced-write (latency at a steady rate), write, read (flat out)")
    parser.add_argument("--against", type=Path, action="append", default=[],
                        help="another source tree's satchel-sqlite, run alongside")
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    parser.add_argument("--create", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.create:
        from satchel import SQLiteStore

        SQLiteStore(args.create).close()
        return 0
    if args.worker:
        layer, scenario, path, threads, seconds, rate = args.worker
        worker(layer, scenario, path, int(threads), float(seconds), float(rate))
        return 0
    seconds, rounds = (0.5, 1) if args.quick else (args.seconds, args.rounds)
    counts = [int(n) for n in args.processes.split(",")]
    layers = {"flask-cookie": HERE.parent / "src", "satchel-sqlite": HERE.parent / "src"}
    for other in args.against:
        tree = other.resolve()
        layers[f"satchel-sqlite@{tree.parent.name if tree.name == 'src' else tree.name}"] = tree
    cells = [(layer, load, n) for n in counts for load in args.loads.split(",")
             for layer in layers]
    results: dict[tuple[str, str, int], list[dict[str, float]]] = {cell: [] for cell in cells}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="satchel-bench-procs-") as tmp:
        for round_ in range(rounds):
            shift = round_ % len(cells)
            for layer, load, n in cells[shift:] + cells[:shift]:
                scenario = load.removeprefix("paced-")
                rate = args.rate if load.startswith("paced-") else 0.0
                results[layer, load, n].append(run_cell(
                    layer, layers[layer], scenario, rate, n, args.threads, seconds, Path(tmp)))
    print(f"{args.threads} threads per process, {rounds} interleaved round(s) of {seconds}s per"
          f" cell, {time.monotonic() - started:.0f}s in all; medians over rounds, ms"
          f" (p99 range: min-max over rounds)")
    print(f"{'layer':26}{'load':>12}{'procs':>6}{'req/s':>9}{'ratio':>7}{'p50':>8}{'p99':>8}"
          f"{'p99 range':>14}{'max':>9}")
    for layer, load, n in cells:
        runs = results[layer, load, n]
        med = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99", "max")}
        base = statistics.median(r["rps"] for r in results["flask-cookie", load, n])
        spread = f"{min(r['p99'] for r in runs):.1f}-{max(r['p99'] for r in runs):.1f}"
        print(f"{layer:26}{load:>12}{n:>6}{med['rps']:>9.0f}{med['rps'] / base:>7.2f}"
              f"{med['p50']:>8.2f}{med['p99']:>8.1f}{spread:>14}{med['max']:>9.1f}")
    print(f"ratio: req/s over flask-cookie's in the same load and process count; paced:"
          f" {args.rate:g} requests a second per thread")
    return 0


if __name__ == "__main__":
    sys.exit(main())
