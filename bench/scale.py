"""Per-request latency with few and with many stored sessions: does a store stay flat at 1 M?

For each store (SQLite, PostgreSQL, Redis) two stores are filled, one with
1,000 sessions and one with 1,000,000, by bulk insert in the store's real
schema: each filler copies a real logged-in session's rows (or hash) under a
random key. Then a few hundred logged-in sessions are read and written in turn
(overhead.py's app, in-process WSGI), the rounds alternating the stores, and
each request is timed on its own: p50 and p99 per store, size and scenario.

    python bench/scale.py                 # a few minutes (filling takes most of it)
    python bench/scale.py --quick         # 1,000 vs 10,000 sessions, a smoke run
    python bench/scale.py --only sqlite --sizes 1000,100000

PostgreSQL runs in a database of its own and Redis on a redis-server of its
own (a free loopback port), both removed at the end. A full run writes
bench/results/scale.md; ``--quick`` or ``--only`` runs only where ``--out`` says.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import contender_apps
import report
from flask import Flask
from load_servers import _die_with_parent

from satchel import Satchel, SQLiteStore

SCENARIOS = ("read", "write")
KINDS = ("sqlite", "postgres", "redis")
Filler = Callable[[int], None]  # inserts that many more sessions like the template


def _app(store: Any, name: str) -> Flask:
    app = contender_apps.routes(Flask(name), use_session=True)
    Satchel(app, store=store)
    return app


def _sqlite(tmp: Path, label: str) -> tuple[Any, Filler]:
    path = tmp / f"{label}.sqlite3"
    store = SQLiteStore(path)

    def fill(count: int) -> None:
        import sqlite3

        conn = sqlite3.connect(path, isolation_level=None)
        meta = conn.execute("SELECT * FROM satchel_sessions").fetchone()
        fields = conn.execute("SELECT name, value FROM satchel_fields").fetchall()
        conn.execute("BEGIN")
        for start in range(0, count, 50_000):
            keys = [os.urandom(32).hex() for _ in range(min(50_000, count - start))]
            places = ",".join("?" * len(meta))
            conn.executemany(f"INSERT INTO satchel_sessions VALUES ({places})",
                             [(key, *meta[1:]) for key in keys])
            conn.executemany("INSERT INTO satchel_fields VALUES (?, ?, ?)",
                             [(key, *field) for key in keys for field in fields])
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.close()

    return store, fill


def _postgres(url: str, label: str) -> tuple[Any, Filler]:
    import psycopg

    from satchel.stores.postgres import PostgresStore

    table = f"scale_{label}"
    store = PostgresStore.from_url(url, table=table)
    columns = "key, data, created_at, last_seen, expires_at, permanent, user_id, device"

    def fill(count: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(f"SELECT {columns.replace('data', 'data::text')}"
                               f" FROM {table}").fetchone()
            assert row is not None
            with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for _ in range(count):
                    copy.write_row((os.urandom(32).hex(), *row[1:]))
            conn.execute(f"VACUUM ANALYZE {table}")

    return store, fill


def _redis(client: Any, label: str) -> tuple[Any, Filler]:
    from satchel.stores.redis import RedisStore

    prefix = f"{label}:"
    store = RedisStore(client, prefix=prefix)
    # Copies the one session record (KEYS[1], a string: see satchel.stores.redis.scripts) under
    # ARGV[2] new names prefix<43 characters>, names of the store's own form (the base64url of
    # a 32-byte key: 42 hex digits, which base64url has too, and a last character of the
    # canonical form), with its TTL, as the store's own writes leave it. ARGV[1]: a seed that
    # keeps the names apart.
    script = """
    local template = redis.call('GET', KEYS[1])
    local ttl = redis.call('PTTL', KEYS[1])
    for i = 1, tonumber(ARGV[2]) do
      local hex = redis.sha1hex(ARGV[1] .. ':' .. i)
      local name = ARGV[3] .. hex .. string.sub(redis.sha1hex(i .. ARGV[1]), 1, 2) .. 'A'
      redis.call('SET', name, template, 'PX', ttl)
    end
    """

    def fill(count: int) -> None:
        (template,) = [name for name in client.scan_iter(match=prefix + "*", count=1000)
                       if store._names.key_of(name)]
        for batch, start in enumerate(range(0, count, 50_000)):
            client.eval(script, 1, template, f"{label}-{batch}", min(50_000, count - start),
                        prefix)

    return store, fill


@contextmanager
def _own_redis(tmp: Path) -> Iterator[Any]:
    """A redis-server of this run's own on a free loopback port: a client of it."""
    import socket

    import redis
    import redis.backoff
    import redis.retry

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                              stdout=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=60,
                         socket_connect_timeout=2,
                         retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0))
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.05)
        yield client
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=10)


@contextmanager
def _own_database() -> Iterator[str]:
    """A PostgreSQL database of this run's own (dropped at the end): its URL."""
    import psycopg
    from psycopg import sql

    database = f"satchel_bench_scale_{os.getpid()}"
    name = sql.Identifier(database)
    with psycopg.connect(contender_apps.POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    try:
        yield urlsplit(contender_apps.POSTGRES_URL)._replace(path="/" + database).geturl()
    finally:
        with psycopg.connect(contender_apps.POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def _latencies(app: Flask, environs: list[dict[str, Any]]) -> list[float]:
    """Seconds of each request, one per environ, in turn."""
    times = []
    for environ in environs:
        start = time.perf_counter()
        body = app.wsgi_app(environ.copy(), contender_apps.start_response)
        for _chunk in body:
            pass
        getattr(body, "close", lambda: None)()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 vs 10,000, few requests")
    parser.add_argument("--sizes", default="1000,1000000", help="stored sessions, comma-separated")
    parser.add_argument("--only", default=",".join(KINDS), help="stores: sqlite,postgres,redis")
    parser.add_argument("--sessions", type=int, default=300,
                        help="logged-in sessions the timed requests cycle through")
    parser.add_argument("--rounds", type=int, default=15, help="timed passes over them")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for scale.md (default: bench/results for a full run)")
    args = parser.parse_args(argv)
    sizes = [1000, 10_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    sessions, rounds = (20, 3) if args.quick else (args.sessions, args.rounds)
    kinds = [k for k in KINDS if k in args.only.split(",")]
    if "postgres" in kinds and not contender_apps.postgres_up():
        print(f"skipped: postgres (no server at {contender_apps.POSTGRES_URL})", file=sys.stderr)
        kinds.remove("postgres")
    if "redis" in kinds and shutil.which("redis-server") is None:
        print("skipped: redis (no redis-server binary)", file=sys.stderr)
        kinds.remove("redis")

    samples: dict[tuple[str, int, str], list[float]] = {}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="satchel-scale-")))
        pg_url = stack.enter_context(_own_database()) if "postgres" in kinds else ""
        client = stack.enter_context(_own_redis(tmp)) if "redis" in kinds else None
        cells: dict[tuple[str, int], tuple[Flask, dict[str, list[dict[str, Any]]]]] = {}
        for kind in kinds:
            for size in sizes:
                label = f"{kind}_{size}"
                if kind == "sqlite":
                    store, fill = _sqlite(tmp, label)
                elif kind == "postgres":
                    store, fill = _postgres(pg_url, label)
                else:
                    store, fill = _redis(client, label)
                app = _app(store, label)
                contender_apps.login_cookie(app)  # the template the filler copies
                started = time.perf_counter()
                fill(size - 1 - sessions)
                filled = time.perf_counter() - started
                cookies = [contender_apps.login_cookie(app) for _ in range(sessions)]
                live = store.stats().sessions  # the store reads the fillers as live sessions
                print(f"{kind}: {size:,} sessions stored in {filled:.1f} s; the store counts"
                      f" {live:,} live", file=sys.stderr, flush=True)
                if live != size:
                    raise SystemExit(f"{kind}: {live:,} live sessions, not {size:,}")
                environs = {s: [contender_apps.environ_for(f"/{s}", c) for c in cookies]
                            for s in SCENARIOS}
                for scenario in SCENARIOS:
                    _latencies(app, environs[scenario])  # warm: caches, prefetch per path
                cells[kind, size] = (app, environs)
        order = list(cells)
        for round_ in range(rounds):
            shift = round_ % len(order)
            for kind, size in order[shift:] + order[:shift]:
                app, environs = cells[kind, size]
                for scenario in SCENARIOS:
                    samples.setdefault((kind, size, scenario), []).extend(
                        _latencies(app, environs[scenario]))
    _print_and_report(args, kinds, sizes, samples, sessions, rounds)
    return 0


def _print_and_report(args: argparse.Namespace, kinds: list[str], sizes: list[int],
                      samples: dict[tuple[str, int, str], list[float]], sessions: int,
                      rounds: int) -> None:
    def quantile(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1] * 1e3

    header = ["store", "sessions stored",
              *(f"{s} {what}" for s in SCENARIOS for what in ("p50 ms", "p99 ms"))]
    rows = []
    for kind in kinds:
        for size in sizes:
            rows.append([kind, f"{size:,}", *(f"{quantile(samples[kind, size, s], q):.3f}"
                                              for s in SCENARIOS for q in (0.5, 0.99))])
        low, high = sizes[0], sizes[-1]
        rows.append([kind, f"{high:,} / {low:,}", *(
            f"{quantile(samples[kind, high, s], q) / quantile(samples[kind, low, s], q):.2f}x"
            for s in SCENARIOS for q in (0.5, 0.99))])
    setup = (f"per-request latency, in-process WSGI: {sessions} logged-in sessions read or"
             f" written in turn, {rounds} rounds alternating the stores")
    print(setup)
    print(f"{header[0]:10}{header[1]:>22}" + "".join(f"{h:>16}" for h in header[2:]))
    for row in rows:
        print(f"{row[0]:10}{row[1]:>22}" + "".join(f"{cell:>16}" for cell in row[2:]))
    out = args.out or (None if args.quick or args.only != ",".join(KINDS) else report.RESULTS)
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                             check=False).stdout if "redis" in kinds else ""
    found = re.search(r"v=(\S+)", version)
    env = report.environment(postgres_url=contender_apps.POSTGRES_URL, extra={
        "Redis": f"{found[1] if found else 'not run'} (a redis-server of the run's own)"})
    head = "".join(f"- {key}: {value}\n" for key, value in env.items())
    text = (f"# Latency with 1 k vs 1 M stored sessions (make bench-scale)\n\n{head}"
            f"- Command: `{report.command_line()}`\n\n{setup}; the last row of each store:"
            f" the larger store's figure over the smaller's.\n\n"
            + report.markdown_table(header, rows))
    (out / "scale.md").write_text(text)
    print(f"\nreport: {out / 'scale.md'}")


if __name__ == "__main__":
    sys.exit(main())
