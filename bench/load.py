"""Throughput and latency under a real server: overhead.py's app under gunicorn, driven by wrk.

Each contender (a session layer) runs as TWO single-worker gunicorn servers
(gthread, 4 threads each; one multi-worker gunicorn spreads keep-alive
connections unevenly), each driven by its own wrk process over keep-alive
connections on loopback. Each connection logs in once, then requests /read
(reads the user from the session) or /write (changes a counter in it) with its
cookie (bench/load.lua). Every contender's servers run for the whole run; the
rounds alternate contenders, each round in another order (:func:`orders`), and each
cell's figure is the median of the rounds.

    python bench/load.py                # about 4 minutes
    python bench/load.py --quick        # a smoke run (1 s per cell), figures not meaningful
    python bench/load.py --only flask-cookie,satchel-sqlite --seconds 10
    python bench/load.py --only flask-cookie,satchel-memory,satchel-memory+schema,satchel-sqlite
    python bench/load.py --only flask-cookie,satchel-redis --own-redis   # Redis CPU: ours

Each cell also reports CPU per request: the app's (its gunicorn servers and wrk clients),
the store server's (Redis's INFO cpu, PostgreSQL's processes in /proc: load_store_cpu.py)
and their sum, and the ratios of those sums: the req/s ratio CPU alone allows where CPU
is the limit (here the store servers run on the app's two cores), with and without the
store server's part. Three contenders have no session layer: sqlite-calls, redis-calls and
postgres-calls make only the store calls a layer on that store needs
(contender_apps.sqlite_calls_threaded, redis_calls, postgres_calls), and the report sets
satchel's layer beside them. Two floors run only when ``--only`` names them:
satchel-memory (satchel's layer on its memory store) and satchel-memory+schema (the same,
whose store also runs the SQLite store's own statements, guarded as it writes:
contender_apps.SchemaFloor); between them and satchel-sqlite, where its write goes under load.
On a machine that other work loads, req/s depends on how often a request waits for
another process (each Redis round trip waits for redis-server to be scheduled); CPU per
request does not. The shared Redis at SATCHEL_TEST_REDIS_URL counts other clients' commands
too: ``--own-redis`` starts a redis-server of the run's own.

Needs gunicorn (pip install -e '.[bench]') and wrk (apt-get install wrk), Redis
and PostgreSQL for their contenders (SATCHEL_TEST_REDIS_URL,
SATCHEL_TEST_POSTGRES_URL): the run uses its own Redis prefix and its own
PostgreSQL database, removed at the end. A full run writes bench/results/load.md
and load.png; ``--quick`` and ``--only`` runs write a report only where ``--out`` says.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from urllib.parse import urlsplit

import contender_apps
import load_report
import report
from load_app import CONTENDERS, FLOORS, SCENARIOS
from load_servers import Cell, Servers, drive
from load_store_cpu import probe


def _available(name: str) -> str | None:
    """Why contender ``name`` cannot run here, or None."""
    if "flask-session" in name:
        try:
            import flask_session  # noqa: F401
        except ImportError:
            return "flask-session is not installed"
    if "redis" in name and contender_apps.redis_client() is None:
        return f"no Redis at {contender_apps.REDIS_URL}"
    if "postgres" in name and not contender_apps.postgres_up():
        return f"no PostgreSQL at {contender_apps.POSTGRES_URL}"
    return None


def _database(name: str, *, drop: bool) -> str | None:
    """Create (or drop) the run's own PostgreSQL database; its URL, or None without a server."""
    if not contender_apps.postgres_up():
        return None
    import psycopg
    from psycopg import sql

    with psycopg.connect(contender_apps.POSTGRES_URL, autocommit=True) as conn:
        ident = sql.Identifier(name)
        if drop:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        else:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    return urlsplit(contender_apps.POSTGRES_URL)._replace(path="/" + name).geturl()


def _own_redis(workdir: Path) -> subprocess.Popen[bytes]:
    """A redis-server of the run's own on a free loopback port, named by contender_apps.REDIS_URL
    (and the servers' SATCHEL_TEST_REDIS_URL): its CPU is then the run's alone."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir), "--loglevel", "warning"],
        stdout=subprocess.DEVNULL)
    contender_apps.REDIS_URL = os.environ["SATCHEL_TEST_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        if contender_apps.redis_client() is not None:
            return server
        time.sleep(0.05)
    server.terminate()
    raise RuntimeError("the run's own redis-server did not start")


def orders(names: list[str], rounds: int) -> list[list[str]]:
    """The order of the contenders in each round: ``names`` as given in the first, then
    orders in which, as far as the number of contenders allows, no contender runs just
    after the same one as in an earlier round (a cell may take the one before it's
    after-effects: a checkpoint, a server's garbage collection, a warm or cold cache; a
    contender always after the same one would take them in every round, and the median
    could not tell). The same for the same arguments in every run (a seeded shuffle)."""
    rng = random.Random(len(names))
    seen: set[tuple[str, str]] = set()
    result: list[list[str]] = []
    for round_ in range(rounds):
        best: list[str] = names
        if round_:
            repeats = len(names)
            for _ in range(500):  # the one with the fewest pairs already seen
                order = rng.sample(names, len(names))
                again = len(seen.intersection(pairwise(order)))
                if again < repeats:
                    best, repeats = order, again
                if not again:
                    break
        seen.update(pairwise(best))
        result.append(best)
    return result


def run(names: list[str], *, seconds: int, rounds: int, warm: int, connections: int,
        threads: int, workdir: Path,
        own_redis: bool = False) -> tuple[dict[str, dict[str, list[Cell]]], list[str]]:
    """Every cell's measurements, one per round: {contender: {scenario: [Cell, ...]}}, and
    how the store servers' CPU was measured (one line per kind of server).
    ``own_redis``: contender_apps.REDIS_URL is the run's own redis-server (other clients' commands
    do not count in the Redis contenders' server CPU)."""
    pid = os.getpid()
    database = f"satchel_bench_load_{pid}"
    prefix = f"satchel-bench-load-{pid}:"
    needs_pg = any("postgres" in name for name in names)
    db_url = _database(database, drop=False) if needs_pg else None
    env = {**os.environ, "SATCHEL_BENCH_DIR": str(workdir), "SATCHEL_BENCH_PREFIX": prefix,
           "SATCHEL_BENCH_TABLE": "satchel_bench_load",
           **({"SATCHEL_TEST_POSTGRES_URL": db_url} if db_url else {})}
    servers: dict[str, Servers] = {}
    redis_client = contender_apps.redis_client() if any("redis" in n for n in names) else None
    meters = {name: probe(name, redis_client=redis_client, redis_url=contender_apps.REDIS_URL,
                          own_redis=own_redis, database=database) for name in names}
    try:
        for name in names:
            servers[name] = Servers(name, {**env, "SATCHEL_BENCH_CONTENDER": name},
                                    threads=threads, logdir=workdir)
        for name in names:  # connections, pools and the per-path prefetch are warm
            for path, body in SCENARIOS.values() if warm else ():
                drive(servers[name].ports, path, body, seconds=warm, connections=connections)
        cells: dict[str, dict[str, list[Cell]]] = {n: {s: [] for s in SCENARIOS} for n in names}
        for round_, names_in_order in enumerate(orders(names, rounds)):
            for name in names_in_order:
                order = list(SCENARIOS)[:: 1 if round_ % 2 == 0 else -1]
                for scenario in order:
                    path, body = SCENARIOS[scenario]
                    cells[name][scenario].append(drive(
                        servers[name].ports, path, body, seconds=seconds,
                        connections=connections, pids=servers[name].pids(),
                        server=meters[name]))
            print(f"round {round_ + 1}/{rounds} done", file=sys.stderr, flush=True)
        return cells, sorted({meter.label for meter in meters.values() if meter.label})
    finally:
        for group in servers.values():
            group.stop()
        contender_apps.BENCH_PREFIX = prefix  # what _cleanup_redis deletes
        contender_apps.cleanup_redis()
        if db_url:
            _database(database, drop=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 s per cell")
    parser.add_argument("--seconds", type=int, default=5, help="seconds of one cell's run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (the median counts)")
    parser.add_argument("--connections", type=int, default=4,
                        help="keep-alive connections per server (one wrk thread each)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per server")
    parser.add_argument("--only", default="", help="comma-separated contenders to run")
    parser.add_argument("--own-redis", action="store_true",
                        help="start a redis-server of the run's own (a free loopback port), so"
                             " the Redis server CPU per request counts only this run's commands")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the report (default: bench/results for a full run,"
                             " none for --quick or --only)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")
    if args.own_redis and shutil.which("redis-server") is None:
        parser.error("--own-redis: redis-server is not installed")
    seconds, rounds, warm = (1, 1, 0) if args.quick else (args.seconds, args.rounds, 1)
    names = list(CONTENDERS)
    if args.only:
        known = [*CONTENDERS, *FLOORS]
        unknown = set(args.only.split(",")) - set(known)
        if unknown:
            parser.error(f"unknown contender(s): {', '.join(sorted(unknown))};"
                         f" choose from {', '.join(known)}")
        names = [name for name in known if name in args.only.split(",")]
    missing = {name: why for name in names if (why := _available(name))}
    if missing:
        print("skipped: " + "; ".join(f"{n} ({why})" for n, why in missing.items()),
              file=sys.stderr)
        names = [name for name in names if name not in missing]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the servers stop in finally

    with tempfile.TemporaryDirectory(prefix="satchel-bench-load-") as tmp:
        own = _own_redis(Path(tmp)) if args.own_redis else None
        try:
            cells, labels = run(names, seconds=seconds, rounds=rounds, warm=warm,
                                connections=args.connections, threads=args.threads,
                                workdir=Path(tmp), own_redis=own is not None)
            redis_version = report.redis_version(contender_apps.REDIS_URL)  # while it runs
        finally:
            if own is not None:
                own.terminate()
                own.wait()
        failures = [f"{name} {s}: {[c.errors for c in runs]} errors (non-200 or socket) and"
                    f" {[c.bad for c in runs]} unexpected responses in the rounds, first:"
                    f" {next((c.first_bad for c in runs if c.first_bad), '')!r}"
                    for name, row in cells.items() for s, runs in row.items()
                    if any(c.errors or c.bad for c in runs)]
        for log in sorted(Path(tmp).glob("*.log")) if failures else ():
            if log.stat().st_size:
                print(f"--- {log.name}, last lines:\n{log.read_text()[-2000:]}", file=sys.stderr)
    table = {name: {s: load_report.summary(c) for s, c in row.items()}
             for name, row in cells.items()}
    setup = (f"2 gunicorn gthread servers (1 worker x {args.threads} threads) per contender,"
             f" each driven by wrk -t{args.connections} -c{args.connections} (keep-alive);"
             f" median of {rounds} round(s) of {seconds} s per cell")
    print(setup)
    print("\n".join(load_report.lines(table, labels)))
    out = args.out or (None if args.quick or args.only else report.RESULTS)
    if out is not None:
        written = load_report.write(out, setup, table, labels, redis_version=redis_version)
        print(f"\nreport: {written} (and {written.with_suffix('.png').name})")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the servers and clients have stopped (finally blocks)
        print("interrupted", file=sys.stderr)
        sys.exit(130)
