"""PostgresStore's hot path next to the raw psycopg statements it wraps.

Each store call is timed beside the bare psycopg statement that does the
same work on an equivalent table (the store's own schema), on a connection
of the same server:

- ``load``: ``store.load(key)`` vs a prepared ``SELECT`` of the row by
  primary key (the same columns and expiry check);
- ``update``: ``store.update(key, Patch(set=..., last_seen=...))`` vs a
  prepared ``UPDATE`` merging one field into the ``jsonb`` column;
- ``touch``: ``store.update(key, Patch(last_seen=...))`` vs a prepared
  ``UPDATE`` of ``last_seen`` only.

Runs are interleaved and each cell reports its fastest run (see
``bench/timing.py``). The ratio is store / raw; 1.00 means
the store adds nothing to the round trip. Both tables are private to the run
and dropped at the end.

    python bench/postgres_store.py              # about half a minute
    python bench/postgres_store.py --quick      # a smoke run, figures not meaningful
    python bench/postgres_store.py --async-commit   # updates without the WAL flush wait
    SATCHEL_TEST_POSTGRES_URL=postgresql://... python bench/postgres_store.py
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql
from timing import fastest_interleaved

from satchel.store import Patch, Record
from satchel.stores.postgres import SCHEMA, PostgresStore

URL = os.environ.get("SATCHEL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
KEY = "4f1c" * 16  # a storage key has the shape of a SHA-256 hex digest
FIELDS = {"_user_id": b'"alice"', "csrf_token": b'"' + b"c" * 40 + b'"',
          "cart": b"[1,2,3,5,8]", "_flashes": b"[]"}

RAW_SELECT = ("SELECT data, created_at, last_seen, expires_at, permanent, user_id"
              " FROM {} WHERE key = %s AND expires_at > %s")
RAW_UPDATE = ("UPDATE {} SET data = data || %s::jsonb, last_seen = %s"
              " WHERE key = %s AND expires_at > %s")
RAW_TOUCH = "UPDATE {} SET last_seen = %s WHERE key = %s AND expires_at > %s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few calls")
    parser.add_argument("--seconds", type=float, default=0.1,
                        help="length of one timed run of one cell")
    parser.add_argument("--repeats", type=int, default=40,
                        help="timed runs per cell (the fastest counts)")
    parser.add_argument("--async-commit", action="store_true",
                        help="SET synchronous_commit = off on both sides: updates no longer wait"
                             " for the WAL flush, so the ratio shows the store's own cost with"
                             " less disk noise")
    args = parser.parse_args(argv)
    seconds, repeats = (0.01, 1) if args.quick else (args.seconds, args.repeats)

    name = f"satchel_bench_{uuid.uuid4().hex[:12]}"
    raw_name = name + "_raw"
    store = PostgresStore.from_url(URL, table=name, min_size=1, max_size=1)
    try:
        with psycopg.connect(URL, autocommit=True) as conn:
            try:
                if args.async_commit:
                    conn.execute("SET synchronous_commit = off")
                    with store.pool.connection() as pooled:
                        pooled.execute("SET synchronous_commit = off")
                raw = sql.Identifier(raw_name)
                conn.execute(sql.SQL(SCHEMA).format(
                    table=raw, expires_index=sql.Identifier(f"{raw_name}_expires_at"),
                    user_index=sql.Identifier(f"{raw_name}_user_id")))
                now = time.time()
                record = Record(dict(FIELDS), now, now, now + 10 * 365 * 86400, True, "alice")
                store.create(KEY, record)
                conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(
                    raw, sql.Identifier(name)))
                select = sql.SQL(RAW_SELECT).format(raw).as_bytes(conn)
                update = sql.SQL(RAW_UPDATE).format(raw).as_bytes(conn)
                touch = sql.SQL(RAW_TOUCH).format(raw).as_bytes(conn)
                # Patches are built beforehand: building one is the engine's work, not the store's.
                values = itertools.cycle([f'{{"counter": "{i}"}}' for i in range(1024)])
                patches = itertools.cycle([Patch(set={"counter": str(i).encode()},
                                                 last_seen=now + i) for i in range(1024)])
                touches = itertools.cycle([Patch(last_seen=now + i) for i in range(1024)])

                def raw_update() -> None:
                    conn.execute(update, (next(values), time.time(), KEY, time.time()),
                                 prepare=True)

                def store_update() -> None:
                    assert store.update(KEY, next(patches))

                cells: dict[str, Callable[[], Any]] = {
                    "raw SELECT": lambda: conn.execute(
                        select, (KEY, time.time()), prepare=True).fetchone(),
                    "store.load": lambda: store.load(KEY),
                    "raw UPDATE": raw_update,
                    "store.update": store_update,
                    "raw UPDATE last_seen": lambda: conn.execute(
                        touch, (time.time(), KEY, time.time()), prepare=True),
                    "store.update (touch)": lambda: store.update(KEY, next(touches)),
                }
                assert store.load(KEY) is not None
                results = fastest_interleaved(cells, seconds=seconds, repeats=repeats)
            finally:
                for table in (name, raw_name):
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(
                        sql.Identifier(table)))
    finally:
        store.close()

    print(f"per-call time in µs (fastest of {repeats} interleaved runs of ~{seconds}s each"
          + (", synchronous_commit off)" if args.async_commit else ")"))
    print(f"{'':24}{'raw':>10}{'store':>10}{'store/raw':>11}")
    for label, raw_cell, store_cell in (("load", "raw SELECT", "store.load"),
                                        ("update", "raw UPDATE", "store.update"),
                                        ("touch", "raw UPDATE last_seen",
                                         "store.update (touch)")):
        mine, theirs = results[store_cell], results[raw_cell]
        print(f"{label:24}{theirs * 1e6:>10.1f}{mine * 1e6:>10.1f}{mine / theirs:>10.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
