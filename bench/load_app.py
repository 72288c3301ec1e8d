"""The app bench/load.py serves under gunicorn: one contender of bench/overhead.py.

gunicorn calls ``load_app:make_app()`` in its worker. The environment names the contender
(``SATCHEL_BENCH_CONTENDER``), the folder of the SQLite file that both servers share
(``SATCHEL_BENCH_DIR``), and the run's own Redis prefix and PostgreSQL database
(``SATCHEL_BENCH_PREFIX``, ``SATCHEL_TEST_POSTGRES_URL``: read by overhead.py).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import contender_apps
from flask import Flask

from satchel import MemoryStore, Satchel, SQLiteStore
from satchel.store import Patch, Record, Updated
from satchel.stores.sqlite.schema import LOAD, UPSERT_LIVE_FIELD


def _sqlite() -> Flask:
    return contender_apps.satchel_sqlite(Path(os.environ["SATCHEL_BENCH_DIR"]))


def _sqlite_calls() -> Flask:
    return contender_apps.sqlite_calls_threaded(Path(os.environ["SATCHEL_BENCH_DIR"])
                                                / "sqlite_calls")


class SchemaFloor(MemoryStore):
    """satchel's memory store whose load and update also run the SQLite store's own
    statements on its schema, as ``bench/sqlite_floor.py``'s ``memory+schema`` line does, with
    a connection per thread, on a file both servers share: on load its SELECT of a session
    with its fields, on update its INSERT of one key that checks in the same statement that
    the session is live, guarded as :class:`SQLiteStore` writes (the process's threads queued
    on a lock, then the servers on a ``flock``, ``BEGIN IMMEDIATE``, a ``stat`` of the folder,
    ``COMMIT``). Each statement must find or write its row, or the request fails (a floor
    that wrote nothing would look cheap). What it leaves out is the SQLite store's own
    Python (its group commit, lock waiter, connection checks and checkpoint thread); its
    wait for the ``flock`` is unbounded, where the store's is bounded by its timeout."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        folder.mkdir(exist_ok=True)
        self._path = folder / "schema.sqlite3"
        store = SQLiteStore(self._path)  # the schema, and the one session the statements use
        try:
            store.create("k", Record({"n": b"0"}, 0.0, 0.0, 2e9, False, None, None))
        except KeyError:
            pass  # the other server, started first, made it
        finally:
            store.close()
        self._folder = str(folder)
        self._local = threading.local()
        self._threads = threading.Lock()
        self._lock_fd = contender_apps.calls_lock(self._path)

    def _cursor(self) -> sqlite3.Cursor:
        cur: sqlite3.Cursor | None = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._local.cur = contender_apps.calls_connection(self._path).cursor()
        return cur

    def load(self, key: str) -> Record | None:
        if not self._cursor().execute(LOAD, ("k", 1.0)).fetchall():
            raise AssertionError("the schema floor's read found nothing")
        return super().load(key)

    def update(self, key: str, patch: Patch) -> Updated:
        cur = self._cursor()
        with self._threads:
            changed = contender_apps.guarded_write(cur, self._lock_fd, self._folder,
                                                   ("n", bytearray(b"1"), "k", 1.0),
                                                   UPSERT_LIVE_FIELD)
        if changed != 1:
            raise AssertionError("the schema floor's write wrote nothing")
        return super().update(key, patch)


def _on(store: MemoryStore, name: str) -> Flask:
    app = contender_apps.routes(Flask(name), use_session=True)
    Satchel(app, store=store)
    return app


# The cells of each contender: scenario -> (path, the body every response must have).
SCENARIOS = {"read": ("/read", "alice"), "write": ("/write", "ok")}

CONTENDERS: dict[str, Callable[[], Flask | None]] = {
    "flask-cookie": contender_apps.flask_cookie,
    "flask-session-redis": contender_apps.flask_session_redis,
    "flask-session-postgres": contender_apps.flask_session_postgres,
    "satchel-cookie": contender_apps.satchel_cookie,
    "satchel-sqlite": _sqlite,
    "satchel-redis": contender_apps.satchel_redis,
    "satchel-postgres": contender_apps.satchel_postgres,
    # No session layer: the bare app making only the calls a layer on that store needs
    # (load_report.CALLS_ONLY): what a layer that did nothing else would reach.
    "sqlite-calls": _sqlite_calls,
    "redis-calls": contender_apps.redis_calls,
    "postgres-calls": contender_apps.postgres_calls,
}


# Floors, run only when named (``bench/load.py --only``): satchel's layer with less under it,
# to tell where satchel's SQLite write goes under load. Its sessions live in each server's
# memory: each wrk client keeps its connections to one server.
FLOORS: dict[str, Callable[[], Flask | None]] = {
    "satchel-memory": lambda: _on(MemoryStore(), "satchel_memory"),
    "satchel-memory+schema": lambda: _on(
        SchemaFloor(Path(os.environ["SATCHEL_BENCH_DIR"]) / "schema_floor"),
        "satchel_memory_schema"),
}


def make_app() -> Flask:
    """The contender ``SATCHEL_BENCH_CONTENDER`` names; SystemExit if it cannot run here."""
    name = os.environ["SATCHEL_BENCH_CONTENDER"]
    app = {**CONTENDERS, **FLOORS}[name]()
    if app is None:
        raise SystemExit(f"{name}: its package or server is missing")
    return app
