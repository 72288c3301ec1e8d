"""Throughput and latency under a real server: overhead.py's app under gunicorn, driven by wrk.

Each contender (a session layer) runs as TWO single-worker gunicorn servers
(gthread, 4 threads each; one multi-worker gunicorn spreads keep-alive
connections unevenly), each driven by its own wrk process over keep-alive
connections on loopback. Each connection logs in once, then requests /read
(reads the user from the session) or /write (changes a counter in it) with its
cookie (bench/load.lua). Every contender's servers run for the whole run; the
rounds alternate contenders, and each cell's figure is the median of the rounds.

    python bench/load.py                # about 4 minutes
    python bench/load.py --quick        # a smoke run (1 s per cell), figures not meaningful
    python bench/load.py --only flask-cookie,satchel-sqlite --seconds 10
    python bench/load.py --only flask-cookie,satchel-redis --own-redis   # Redis CPU counts

Each cell also reports the CPU per request of its processes (the servers and wrk; with
``--own-redis``, a redis-server of the run's own, the Redis contenders' redis-server too),
and the ratio of those: what the req/s ratio is where CPU is the limit. On a machine that
other work loads, req/s depends on how often a request waits for another process (each
Redis round trip waits for redis-server to be scheduled); CPU per request does not.

Needs gunicorn (pip install -e '.[bench]') and wrk (apt-get install wrk), Redis
and PostgreSQL for their contenders (SATCHEL_TEST_REDIS_URL,
SATCHEL_TEST_POSTGRES_URL): the run uses its own Redis prefix and its own
PostgreSQL database, removed at the end. A full run writes bench/results/load.md
and load.png; ``--quick`` and ``--only`` runs write a report only where ``--out`` says.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import overhead
import report
from load_app import CONTENDERS
from load_servers import Cell, Servers, drive

SCENARIOS = {"read": ("/read", "alice"), "write": ("/write", "ok")}
BASE = "flask-cookie"
PEERS = {"satchel-cookie": BASE, "satchel-redis": "flask-session-redis",
         "satchel-postgres": "flask-session-postgres"}
# The goals of issue 14: satchel's req/s as a ratio of Flask's cookie session's (read, write).
GOALS = {"satchel-sqlite": (1.0, 0.9), "satchel-redis": (0.95, 0.9),
         "satchel-postgres": (0.8, 0.7)}


def _available(name: str) -> str | None:
    """Why contender ``name`` cannot run here, or None."""
    if "flask-session" in name:
        try:
            import flask_session  # noqa: F401
        except ImportError:
            return "flask-session is not installed"
    if "redis" in name and overhead._redis_client() is None:
        return f"no Redis at {overhead.REDIS_URL}"
    if "postgres" in name and not overhead._postgres_up():
        return f"no PostgreSQL at {overhead.POSTGRES_URL}"
    return None


def _database(name: str, *, drop: bool) -> str | None:
    """Create (or drop) the run's own PostgreSQL database; its URL, or None without a server."""
    if not overhead._postgres_up():
        return None
    import psycopg
    from psycopg import sql

    with psycopg.connect(overhead.POSTGRES_URL, autocommit=True) as conn:
        ident = sql.Identifier(name)
        if drop:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        else:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    return urlsplit(overhead.POSTGRES_URL)._replace(path="/" + name).geturl()


def _median_cell(cells: list[Cell]) -> dict[str, float]:
    rates = [cell.rate for cell in cells]
    return {"rate": statistics.median(rates), "low": min(rates), "high": max(rates),
            "cpu": statistics.median(cell.cpu_us for cell in cells),
            "p50": statistics.median(cell.p50 for cell in cells),
            "p99": statistics.median(cell.p99 for cell in cells)}


def _own_redis(workdir: Path) -> subprocess.Popen[bytes]:
    """A redis-server of the run's own on a free loopback port, named by overhead.REDIS_URL
    (and the servers' SATCHEL_TEST_REDIS_URL): its CPU is then the run's alone."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir), "--loglevel", "warning"],
        stdout=subprocess.DEVNULL)
    overhead.REDIS_URL = os.environ["SATCHEL_TEST_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        if overhead._redis_client() is not None:
            return server
        time.sleep(0.05)
    server.terminate()
    raise RuntimeError("the run's own redis-server did not start")


def run(names: list[str], *, seconds: int, rounds: int, warm: int, connections: int,
        threads: int, workdir: Path,
        redis_pid: int | None = None) -> dict[str, dict[str, list[Cell]]]:
    """Every cell's measurements, one per round: {contender: {scenario: [Cell, ...]}}.
    ``redis_pid``: the run's own redis-server, whose CPU counts in the Redis contenders'."""
    pid = os.getpid()
    database = f"satchel_bench_load_{pid}"
    prefix = f"satchel-bench-load-{pid}:"
    needs_pg = any("postgres" in name for name in names)
    db_url = _database(database, drop=False) if needs_pg else None
    env = {**os.environ, "SATCHEL_BENCH_DIR": str(workdir), "SATCHEL_BENCH_PREFIX": prefix,
           "SATCHEL_BENCH_TABLE": "satchel_bench_load",
           **({"SATCHEL_TEST_POSTGRES_URL": db_url} if db_url else {})}
    servers: dict[str, Servers] = {}
    try:
        for name in names:
            servers[name] = Servers(name, {**env, "SATCHEL_BENCH_CONTENDER": name},
                                    threads=threads, logdir=workdir)
        for name in names:  # connections, pools and the per-path prefetch are warm
            for path, body in SCENARIOS.values() if warm else ():
                drive(servers[name].ports, path, body, seconds=warm, connections=connections)
        cells: dict[str, dict[str, list[Cell]]] = {n: {s: [] for s in SCENARIOS} for n in names}
        for round_ in range(rounds):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                order = list(SCENARIOS)[:: 1 if round_ % 2 == 0 else -1]
                for scenario in order:
                    path, body = SCENARIOS[scenario]
                    pids = servers[name].pids()
                    if "redis" in name and redis_pid is not None:
                        pids.append(redis_pid)
                    cells[name][scenario].append(drive(servers[name].ports, path, body,
                                                       seconds=seconds,
                                                       connections=connections, pids=pids))
            print(f"round {round_ + 1}/{rounds} done", file=sys.stderr, flush=True)
        return cells
    finally:
        for group in servers.values():
            group.stop()
        overhead.BENCH_PREFIX = prefix  # what _cleanup_redis deletes
        overhead._cleanup_redis()
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
                             " its CPU per request counts only this run's commands")
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
        unknown = set(args.only.split(",")) - set(names)
        if unknown:
            parser.error(f"unknown contender(s): {', '.join(sorted(unknown))};"
                         f" choose from {', '.join(names)}")
        names = [name for name in names if name in args.only.split(",")]
    missing = {name: why for name in names if (why := _available(name))}
    if missing:
        print("skipped: " + "; ".join(f"{n} ({why})" for n, why in missing.items()),
              file=sys.stderr)
        names = [name for name in names if name not in missing]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the servers stop in finally

    with tempfile.TemporaryDirectory(prefix="satchel-bench-load-") as tmp:
        own = _own_redis(Path(tmp)) if args.own_redis else None
        try:
            cells = run(names, seconds=seconds, rounds=rounds, warm=warm,
                        connections=args.connections, threads=args.threads,
                        workdir=Path(tmp), redis_pid=None if own is None else own.pid)
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
    table = {name: {s: _median_cell(c) for s, c in row.items()} for name, row in cells.items()}
    setup = (f"2 gunicorn gthread servers (1 worker x {args.threads} threads) per contender,"
             f" each driven by wrk -t{args.connections} -c{args.connections} (keep-alive);"
             f" median of {rounds} round(s) of {seconds} s per cell")
    lines, ratio_rows = _tables(table)
    print(setup)
    print("\n".join(lines))
    out = args.out or (None if args.quick or args.only else report.RESULTS)
    if out is not None:
        written = _report(out, setup, table, ratio_rows)
        print(f"\nreport: {written} (and {written.with_suffix('.png').name})")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _ratio(table: dict[str, dict[str, dict[str, float]]], mine: str, peer: str,
           scenario: str) -> float:
    return table[mine][scenario]["rate"] / table[peer][scenario]["rate"]


def _tables(table: dict[str, dict[str, dict[str, float]]]) -> tuple[list[str], list[list[str]]]:
    """The printed lines, and the ratio rows of the report (mine / peer, read, write, goal)."""
    lines = [f"{'':24}" + "".join(f"{s + ' req/s (min-max)':>28}{'p50 ms':>9}{'p99 ms':>9}"
                                  f"{'CPU µs':>8}" for s in SCENARIOS)]
    for name, row in table.items():
        lines.append(f"{name:24}" + "".join(
            f"{c['rate']:>11.0f} ({c['low']:>6.0f}-{c['high']:>6.0f}){'':>3}"
            f"{c['p50']:>9.2f}{c['p99']:>9.2f}{c['cpu']:>8.0f}" for c in row.values()))
    pairs = [(n, BASE) for n in table if n != BASE and BASE in table]
    pairs += [(n, p) for n, p in PEERS.items() if n in table and p in table and p != BASE]
    ratio_rows = []
    lines.append("\nreq/s as a ratio of the peer's in the same run (higher is better):"
                 f"\n{'':48}{'read':>8}{'write':>8}   goal (read / write)")
    for mine, peer in pairs:
        read, write = (_ratio(table, mine, peer, s) for s in SCENARIOS)
        goal = GOALS.get(mine) if peer == BASE else None
        goal_text = f">= {goal[0]} / {goal[1]}" if goal else ""
        if goal:
            goal_text += "  met" if read >= goal[0] and write >= goal[1] else "  NOT met"
        lines.append(f"  {mine + ' / ' + peer:46}{read:>8.2f}{write:>8.2f}   {goal_text}")
        ratio_rows.append([f"{mine} / {peer}", f"{read:.2f}", f"{write:.2f}", goal_text])
    lines.append("\nCPU per request (servers, wrk, and with --own-redis redis-server), the"
                 " peer's / mine:\nthe req/s ratio where CPU is the limit (a quiet machine)"
                 f"\n{'':48}{'read':>8}{'write':>8}")
    for mine, peer in pairs:
        read, write = (table[peer][s]["cpu"] / table[mine][s]["cpu"] for s in SCENARIOS)
        lines.append(f"  {mine + ' / ' + peer:46}{read:>8.2f}{write:>8.2f}")
    return lines, ratio_rows


def _report(out: Path, setup: str, table: dict[str, dict[str, dict[str, float]]],
            ratio_rows: list[list[str]]) -> Path:
    header = ["", *(f"{s} {what}" for s in SCENARIOS for what in ("req/s", "p50 ms", "p99 ms"))]
    rows = [[name, *(value for c in row.values() for value in
                     (f"{c['rate']:.0f} ({c['low']:.0f}-{c['high']:.0f})", f"{c['p50']:.2f}",
                      f"{c['p99']:.2f}"))] for name, row in table.items()]
    body = (f"{setup}; req/s in brackets: the lowest and highest round.\n\n"
            + report.markdown_table(header, rows)
            + "\nreq/s as a ratio of the peer's in the same run (higher is better):\n\n"
            + report.markdown_table(["", "read", "write", "goal (read / write)"], ratio_rows))
    names = list(table)
    panels = [report.Panel(title=title, unit=unit, categories=names,
                           series={s: [table[n][s][key] for n in names] for s in SCENARIOS})
              for title, unit, key in (("throughput (higher is better)", "requests/s", "rate"),
                                       ("p99 latency (lower is better)", "ms", "p99"))]
    env: dict[str, Any] = report.environment(
        redis_url=overhead.REDIS_URL, postgres_url=overhead.POSTGRES_URL,
        extra={"Tools": f"gunicorn {report._version('gunicorn')}, {_wrk_version()}"})
    return report.write(out, "load", title="Throughput under gunicorn (make bench-load)",
                        env=env, command=report.command_line(), body=body, panels=panels)


def _wrk_version() -> str:
    import subprocess

    result = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return " ".join((result.stdout + result.stderr).split()[:2]) or "wrk"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the servers and clients have stopped (finally blocks)
        print("interrupted", file=sys.stderr)
        sys.exit(130)
