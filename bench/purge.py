"""Session latency while ``flask satchel purge`` deletes a backlog of expired sessions.

The store is filled with ``--sessions`` sessions in its real schema (bulk SQL), of
which ``--expired`` are expired (spread over the key space, as real ones are), half
of them logged in (the user index has rows to purge too). A satchel Flask app then
serves a steady stream of session writes and reads from ``--threads`` threads (each
paced at ``--rate`` requests a second over its own browsers' sessions), in process
through the WSGI test client. After ``--before`` seconds, ``flask satchel purge``
runs in a subprocess, the way users run it; the stream goes on until it ends. The
table gives p50/p99/max of writes and reads in the window before the purge and
during it, the purge's duration, and the ratios during / before.

    python bench/purge.py --store sqlite            # 1.5 M sessions, 500 k expired
    python bench/purge.py --store postgres          # its own database, dropped after
    python bench/purge.py --store sqlite --quick    # a smoke run, figures not meaningful
    SATCHEL_TEST_POSTGRES_URL=postgresql://... python bench/purge.py --store postgres

Goals (issue 14): SQLite write p99 during <= 3x before; PostgreSQL p99 during <= 2x
before and the purge of 500 k <= 10 s. Compare code versions by running this file
with another ``PYTHONPATH`` (the purge subprocess inherits it).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, session

from satchel import Satchel

POSTGRES_URL = os.environ.get("SATCHEL_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")
STORE_ENV = "SATCHEL_BENCH_PURGE_STORE"
SECRET = "bench-secret-key-of-a-sensible-length-0123456789"
DAY = 86400.0
CART = '[{"sku":"A-100","qty":1},{"sku":"B-200","qty":2},{"sku":"C-300","qty":3}]'
PURGE_TIMEOUT = 600.0  # seconds: the run is bounded


def make_app(store_url: str) -> Flask:
    """The app under load: /write changes the session, /read reads it."""
    app = Flask("bench_purge")
    app.config["SECRET_KEY"] = SECRET
    Satchel(app, store=store_url)

    @app.get("/write")
    def write() -> str:
        session["n"] = session.get("n", 0) + 1
        session.setdefault("cart", [{"sku": "A-100", "qty": 1}])
        return "ok"

    @app.get("/read")
    def read() -> str:
        return str(session.get("n"))

    return app


def cli_app() -> Flask:
    """The app ``flask --app bench/purge.py:cli_app() satchel purge`` loads."""
    return make_app(os.environ[STORE_ENV])


# --- filling the store ---------------------------------------------------------------------

def _keys(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return sorted(f"{rng.getrandbits(256):064x}" for _ in range(count))


def fill_sqlite(path: Path, sessions: int, expired: int) -> None:
    """``sessions`` rows (``expired`` of them expired) with two fields each."""
    from satchel.stores.sqlite import SQLiteStore

    SQLiteStore(path).close()  # the schema, as the store makes it
    now = time.time()
    rng = random.Random(1)
    dead = set(rng.sample(range(sessions), expired))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    conn.execute("BEGIN")

    def rows() -> Iterator[tuple[object, ...]]:
        for i, key in enumerate(_keys(sessions, 2)):
            created = now - rng.uniform(1, 30) * DAY
            expires = now - rng.uniform(60, 7 * DAY) if i in dead else now + rng.uniform(
                3600, 30 * DAY)
            user = f"user-{i % 200000}" if i % 2 == 0 else None
            yield key, created, created, expires, 1, user, "Firefox on Linux"

    conn.executemany("INSERT INTO satchel_sessions VALUES (?, ?, ?, ?, ?, ?, ?)", rows())
    conn.execute("INSERT INTO satchel_fields SELECT key, 'user_id', CAST('12345' AS BLOB)"
                 " FROM satchel_sessions")
    conn.execute("INSERT INTO satchel_fields SELECT key, 'cart', CAST(? AS BLOB)"
                 " FROM satchel_sessions", (CART,))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def create_database() -> tuple[str, str]:
    """A database of our own: (its URL, its name)."""
    import psycopg

    name = f"satchel_bench_purge_{os.getpid()}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(POSTGRES_URL)
    return urlunsplit(parts._replace(path="/" + name)), name


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def fill_postgres(url: str, sessions: int, expired: int) -> None:
    """``sessions`` rows (exactly ``expired`` of them expired, spread evenly over the row
    numbers; keys random) in one server-side INSERT, then VACUUM ANALYZE (what autovacuum
    does to a real table)."""
    import psycopg

    from satchel.stores.postgres import PostgresStore

    PostgresStore.from_url(url).close()  # the schema, as the store makes it
    data = '{"user_id": "12345", "cart": ' + '"' + CART.replace('"', '\\"') + '"}'
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute(
            "INSERT INTO satchel_sessions"
            " (key, data, created_at, last_seen, expires_at, permanent, user_id, device)"
            " SELECT encode(sha256(i::text::bytea), 'hex'), %s::jsonb, c, c,"
            " CASE WHEN i::bigint * %s / %s > (i::bigint - 1) * %s / %s"
            "  THEN %s - 60 - random() * 7 * 86400"
            "  ELSE %s + 3600 + random() * 30 * 86400 END, true,"
            " CASE WHEN i %% 2 = 0 THEN 'user-' || (i %% 200000) END, 'Firefox on Linux'"
            " FROM generate_series(1, %s) AS i, LATERAL (SELECT %s - random() * 30 * 86400"
            "  + i * 0 AS c) AS t",
            (data, expired, sessions, expired, sessions, time.time(), time.time(), sessions,
             time.time()))
        conn.execute("VACUUM ANALYZE satchel_sessions")


# --- the load ------------------------------------------------------------------------------

class Load:
    """``threads`` threads, each sending /write and /read in turn at ``rate`` a second."""

    def __init__(self, app: Flask, threads: int, rate: float, browsers: int) -> None:
        self.app, self.rate, self.browsers = app, rate, browsers
        self.samples: list[tuple[float, str, float]] = []  # (start, kind, seconds)
        self.errors = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self, seed: int) -> None:
        clients = [self.app.test_client() for _ in range(self.browsers)]
        for client in clients:
            client.get("/write")  # a session each
        rng = random.Random(seed)
        interval = 1.0 / self.rate
        next_at = time.perf_counter()
        samples = []
        while not self._stop.is_set():
            client = rng.choice(clients)
            kind = "write" if rng.random() < 0.5 else "read"
            start = time.perf_counter()
            status = client.get("/" + kind).status_code
            took = time.perf_counter() - start
            if status != 200:
                self.errors += 1
            samples.append((start, kind, took))
            next_at = max(next_at + interval, time.perf_counter())
            self._stop.wait(max(0.0, next_at - time.perf_counter()))
        self.samples.extend(samples)  # list.extend is atomic

    def window(self, kind: str, start: float, end: float) -> list[float]:
        return sorted(took for at, k, took in self.samples if k == kind and start <= at < end)


def quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def run(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="satchel_bench_purge_"))
    database = None
    try:
        started = time.perf_counter()
        if args.store == "sqlite":
            path = tmp / "sessions.sqlite3"
            url = f"sqlite:///{path}"  # an absolute path: sqlite:////tmp/...
            kept = (Path(args.keep_fill) / f"purge-{args.sessions}-{args.expired}.sqlite3"
                    if args.keep_fill else None)
            if kept is not None and kept.exists():
                shutil.copyfile(kept, path)
            else:
                fill_sqlite(path, args.sessions, args.expired)
                if kept is not None:
                    shutil.copyfile(path, kept)
        else:
            url, database = create_database()
            fill_postgres(url, args.sessions, args.expired)
        print(f"filled {args.sessions} sessions ({args.expired} expired) in"
              f" {time.perf_counter() - started:.1f} s", file=sys.stderr)
        app = make_app(url)
        load = Load(app, args.threads, args.rate, args.browsers)
        load.start()
        time.sleep(args.warmup)
        before_start = time.perf_counter()
        time.sleep(args.before)
        purge_start = time.perf_counter()
        env = dict(os.environ, **{STORE_ENV: url})
        command = [sys.executable, "-m", "flask", "--app", f"{Path(__file__).resolve()}:cli_app()",
                   "satchel", "purge", *args.purge_args.split()]
        result = subprocess.run(command, env=env, capture_output=True, text=True,
                                timeout=PURGE_TIMEOUT, check=False)
        purge_end = time.perf_counter()
        time.sleep(args.after)
        load.stop()
        if result.returncode != 0:
            print(result.stdout, result.stderr, file=sys.stderr)
            return 1
        print(result.stdout.strip().splitlines()[-1], file=sys.stderr)
        report(args, load, (before_start, purge_start, purge_end))
        return 0
    finally:
        if database is not None:
            drop_database(database)
        shutil.rmtree(tmp, ignore_errors=True)


def report(args: argparse.Namespace, load: Load, marks: tuple[float, float, float]) -> None:
    before_start, purge_start, purge_end = marks
    windows = {"before": (before_start, purge_start), "during": (purge_start, purge_end)}
    ms = 1000.0
    print(f"\n{args.store}: {args.sessions} sessions, {args.expired} expired; {args.threads}"
          f" threads x {args.rate:g} req/s; purge {' '.join(args.purge_args.split()) or ''}")
    print(f"{'window':<8} {'kind':<6} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    p99 = {}
    for name, (start, end) in windows.items():
        for kind in ("write", "read"):
            values = load.window(kind, start, end)
            p99[name, kind] = quantile(values, 0.99)
            print(f"{name:<8} {kind:<6} {len(values):>6} {quantile(values, 0.5) * ms:>8.2f}"
                  f" {p99[name, kind] * ms:>8.2f} {(values[-1] if values else 0) * ms:>8.2f}")
    goal = 3.0 if args.store == "sqlite" else 2.0
    print(f"purge duration      {purge_end - purge_start:8.2f} s (the subprocess, start-up"
          " included)")
    for kind in ("write", "read"):
        ratio = p99["during", kind] / p99["before", kind]
        print(f"p99 during/before   {ratio:8.2f}x {kind} (goal <= {goal:g}x)")
    if load.errors:
        print(f"non-200 answers     {load.errors}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--sessions", type=int, default=1_500_000)
    parser.add_argument("--expired", type=int, default=500_000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s per thread")
    parser.add_argument("--browsers", type=int, default=20, help="sessions per thread")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds")
    parser.add_argument("--before", type=float, default=10.0, help="seconds measured before")
    parser.add_argument("--after", type=float, default=0.5, help="seconds of load after")
    parser.add_argument("--purge-args", default="", help="extra options of satchel purge")
    parser.add_argument("--keep-fill", metavar="DIR", help="SQLite: keep the filled file in"
                        " DIR and start from a copy of it next time (the fill takes a minute)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 k sessions")
    args = parser.parse_args(argv)
    if args.quick:
        args.sessions, args.expired, args.before, args.warmup = 20_000, 6_000, 2.0, 0.5
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
