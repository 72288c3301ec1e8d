"""``sessions_of(user)`` stays flat as the store fills: issue 12's "within 2x" goal.

For each store, one user has 5 sessions; the store then holds 10 other users'
sessions (one each), and later 100,000. ``sessions_of`` of the first user is
timed at both sizes: the median of many calls, after a warm-up. A user index
costs O(that user's sessions), so the ratio should stay near 1 (the goal: at
most 2). A scan of the store would grow with it, about 10,000-fold.

The others are written in bulk (SQLite: one transaction; Redis: the store's own
create script, pipelined; PostgreSQL: COPY), the way the store lays them out.
Everything lives under a random prefix, table or temporary file, removed at the
end. Needs the test servers (SATCHEL_TEST_REDIS_URL, SATCHEL_TEST_POSTGRES_URL,
defaults on 127.0.0.1).

    python bench/user_index.py                  # about a minute
    python bench/user_index.py --others 10000   # a smaller store
    python bench/user_index.py --stores sqlite,memory
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from typing import Any

from satchel.store import Record

REDIS_URL = os.environ.get("SATCHEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("SATCHEL_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")
USER = "bench-user"
MINE = 5
SMALL = 10
NOW = time.time()
EXPIRES = NOW + 3600
FIELDS = {"_user_id": b'"42"', "csrf_token": b'"' + b"t" * 40 + b'"'}

Filler = Callable[[Any, range], None]  # writes the others numbered by the range


def key_of(n: int) -> str:
    return hashlib.sha256(b"other %d" % n).hexdigest()


def median_call(call: Callable[[], Any], calls: int, rounds: int = 5) -> float:
    """Seconds per call of ``call``: the median of ``calls`` timed calls, in ``rounds``
    rounds after a warm-up; the lowest round's median (a burst of noise on the machine
    spoils a round, not the figure)."""
    for _ in range(min(100, calls)):
        call()
    medians = []
    for _ in range(rounds):
        times = []
        for _ in range(max(1, calls // rounds)):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        medians.append(statistics.median(times))
    return min(medians)


def fill_by_create(store: Any, numbers: range) -> None:
    for n in numbers:
        store.create(key_of(n), Record(dict(FIELDS), NOW, NOW, EXPIRES, user=f"other-{n}"))


def fill_sqlite(store: Any, numbers: range) -> None:
    with closing(sqlite3.connect(store.path)) as conn, conn:
        conn.executemany("INSERT INTO satchel_sessions (key, created_at, last_seen, expires_at,"
                         " permanent, user) VALUES (?, ?, ?, ?, 0, ?)",
                         ((key_of(n), NOW, NOW, EXPIRES, f"other-{n}") for n in numbers))
        conn.executemany("INSERT INTO satchel_fields (key, name, value) VALUES (?, ?, ?)",
                         ((key_of(n), name, value) for n in numbers
                          for name, value in FIELDS.items()))
        conn.execute("ANALYZE")


def fill_redis(store: Any, numbers: range) -> None:
    from satchel.store import Record
    from satchel.stores.redis.record import encode
    from satchel.stores.redis.scripts import CREATE_SHA
    from satchel.stores.redis.users import set_until

    until = set_until(EXPIRES, NOW)
    ttl, set_ttl = store._ttl(EXPIRES, NOW), store._ttl(until, NOW)
    pipe = store.client.pipeline(transaction=False)
    for n in numbers:  # the store's own create script, as store.create sends it
        key, user = key_of(n), f"other-{n}"
        pipe.evalsha(CREATE_SHA, 2, store._names.of(key), store._users(user), NOW, ttl, set_ttl,
                     key, encode(Record(dict(FIELDS), NOW, NOW, EXPIRES, user=user), until, None))
        if len(pipe) >= 2000:
            pipe.execute()
    pipe.execute()


def fill_postgres(store: Any, numbers: range) -> None:
    from psycopg import sql

    from satchel.stores.postgres.statements import encode_fields

    data = encode_fields(FIELDS)
    copy = sql.SQL("COPY {} (key, data, created_at, last_seen, expires_at, user_id)"
                   " FROM STDIN").format(store._ident)
    with store.pool.connection() as conn, conn.cursor() as cursor:
        with cursor.copy(copy) as rows:
            for n in numbers:
                rows.write_row((key_of(n), data, NOW, NOW, EXPIRES, f"other-{n}"))
        cursor.execute(sql.SQL("ANALYZE {}").format(store._ident))


@contextmanager
def memory_store() -> Iterator[tuple[Any, Filler]]:
    from satchel.stores.memory import MemoryStore

    yield MemoryStore(), fill_by_create


@contextmanager
def sqlite_store() -> Iterator[tuple[Any, Filler]]:
    from satchel.stores.sqlite import SQLiteStore

    with tempfile.TemporaryDirectory(prefix="satchel-bench-") as folder:
        store = SQLiteStore(os.path.join(folder, "sessions.sqlite3"))
        try:
            yield store, fill_sqlite
        finally:
            store.close()


@contextmanager
def redis_store() -> Iterator[tuple[Any, Filler]]:
    import redis

    from satchel.stores.redis import RedisStore

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=30)
    prefix = f"satchel-bench:{uuid.uuid4().hex}:"
    store = RedisStore(client, prefix=prefix)
    try:
        yield store, fill_redis
    finally:
        store.close()
        pipe = client.pipeline(transaction=False)
        for name in client.scan_iter(match=prefix + "*", count=5000):
            pipe.unlink(name)
            if len(pipe) >= 5000:
                pipe.execute()
        pipe.execute()
        client.close()


@contextmanager
def postgres_store() -> Iterator[tuple[Any, Filler]]:
    from psycopg import sql

    from satchel.stores.postgres import PostgresStore

    table = f"satchel_bench_{uuid.uuid4().hex[:12]}"
    store = PostgresStore.from_url(POSTGRES_URL, table=table)
    try:
        yield store, fill_postgres
    finally:
        with store.pool.connection() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(store._ident))
        store.close()


STORES = {"memory": memory_store, "sqlite": sqlite_store, "redis": redis_store,
          "postgres": postgres_store}


def measure(name: str, others: int, calls: int) -> tuple[float, float, float]:
    """(seconds per call with SMALL others, with ``others``, seconds spent filling)."""
    with ExitStack() as stack:
        store, fill = stack.enter_context(STORES[name]())
        for n in range(MINE):
            store.create(hashlib.sha256(b"mine %d" % n).hexdigest(),
                         Record(dict(FIELDS), NOW - n, NOW, EXPIRES, user=USER,
                                device="Firefox on Linux, 203.0.113.9"))
        fill(store, range(SMALL))

        def call() -> None:
            assert len(store.sessions_of(USER)) == MINE

        small = median_call(call, calls)
        start = time.perf_counter()
        fill(store, range(SMALL, others))
        filled = time.perf_counter() - start
        assert store.stats().sessions == MINE + others  # the fill worked (not timed)
        large = median_call(call, calls)
    return small, large, filled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--others", type=int, default=100_000,
                        help="other users' sessions in the large store (default 100,000)")
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per size")
    parser.add_argument("--stores", default=",".join(STORES),
                        help="comma-separated: " + ", ".join(STORES))
    args = parser.parse_args()
    print(f"sessions_of(a user with {MINE} sessions), median of {args.calls} calls"
          " (best of 5 rounds)")
    print(f"{'store':10} {f'{SMALL} others':>14} {f'{args.others:,} others':>16}"
          f" {'ratio':>7} {'fill':>8}")
    for name in args.stores.split(","):
        small, large, filled = measure(name, args.others, args.calls)
        print(f"{name:10} {small * 1e6:11.1f} us {large * 1e6:13.1f} us"
              f" {large / small:7.2f} {filled:7.1f}s", flush=True)


if __name__ == "__main__":
    main()
