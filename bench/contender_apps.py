"""The contenders of the benchmarks: one small Flask app, with each session layer.

Every app has the same routes (:func:`routes`): ``/login`` puts a user in the session,
``/write`` adds one to a counter, ``/read`` reads the user, ``/untouched`` never touches the
session. :func:`bare` has no session layer at all, nor has :func:`sqlite_calls`, whose views
make the bare SQLite calls a session layer on SQLite needs (the floor under one). Built by
``bench/overhead.py`` (timed in-process through WSGI with :func:`drive`), ``bench/load.py``
(under gunicorn) and the other benchmarks. The Redis and PostgreSQL contenders use
``SATCHEL_TEST_REDIS_URL`` and ``SATCHEL_TEST_POSTGRES_URL`` (loopback defaults), with keys
and tables of the run's own (``BENCH_PREFIX``, ``BENCH_TABLE``), which :func:`cleanup_redis`
and :func:`cleanup_postgres` remove.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from flask import Flask, Request, Response, session
from flask.sessions import SessionInterface, SessionMixin
from timing import fastest_interleaved
from werkzeug.test import EnvironBuilder

from satchel import MemoryStore, Satchel, SealedCookies, SQLiteStore
from satchel.store import Patch, Record, Updated
from satchel.stores.sqlite.schema import LOAD, UPSERT_LIVE_FIELD

SECRET = "bench-secret-key-of-a-sensible-length-0123456789"


def routes(app: Flask, *, use_session: bool) -> Flask:
    app.config["SECRET_KEY"] = SECRET

    @app.get("/login")
    def login() -> str:
        if use_session:
            session["user"] = "alice"
            session["n"] = 0
            session.permanent = app.config.get("BENCH_PERMANENT", False)
        return "ok"

    @app.get("/write")
    def write() -> str:
        if use_session:
            session["n"] = session.get("n", 0) + 1
        return "ok"

    @app.get("/read")
    def read() -> str:
        return str(session.get("user")) if use_session else "alice"

    @app.get("/untouched")
    def untouched() -> str:
        return "ok"

    return app


class _NoSessions(SessionInterface):
    """No session machinery at all: Flask's null session, nothing opened or saved."""

    def open_session(self, app: Flask, request: Request) -> None:
        return None

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        raise AssertionError("a null session is never saved")


def bare() -> Flask:
    app = routes(Flask("bare"), use_session=False)
    app.session_interface = _NoSessions()
    return app


def flask_cookie() -> Flask:
    return routes(Flask("flask_cookie"), use_session=True)


def satchel_on(store: MemoryStore, name: str) -> Flask:
    """The benchmark's app under satchel on ``store`` (a memory store, or one built on it)."""
    app = routes(Flask(name), use_session=True)
    Satchel(app, store=store)
    return app


def satchel_memory() -> Flask:
    return satchel_on(MemoryStore(), "satchel_memory")


def satchel_sqlite(tmp: Path) -> Flask:
    # A folder of its own, as advised (README): Flask-Session's SQLite file, in rollback-journal
    # mode, creates and deletes a -journal next to it on every write.
    folder = tmp / "satchel"
    folder.mkdir(exist_ok=True)
    app = routes(Flask("satchel_sqlite"), use_session=True)
    Satchel(app, store=SQLiteStore(folder / "sessions.sqlite3"))
    return app


def _calls_app(name: str, read: Callable[[], object], write: Callable[[], object]) -> Flask:
    """A bare app (no session layer) whose ``/read`` and ``/write`` make only the store calls
    ``read`` and ``write``: what a session layer on that store that did nothing else would
    cost (through the driver's ordinary API)."""
    app = Flask(name)
    app.config["SECRET_KEY"] = SECRET
    app.session_interface = _NoSessions()

    @app.get("/login")
    def login() -> Response:
        response = Response("ok")
        response.set_cookie("session", "calls")  # the load client checks a login sets one
        return response

    @app.get("/read")
    def read_view() -> str:
        read()
        return "alice"

    @app.get("/write")
    def write_view() -> str:
        write()
        return "ok"

    @app.get("/untouched")
    def untouched() -> str:
        return "ok"

    return app


CALLS_SELECT = "SELECT data FROM sessions WHERE key = ?"
CALLS_WRITE = "INSERT OR REPLACE INTO sessions (key, data) VALUES (?, ?)"


def calls_connection(path: Path) -> sqlite3.Connection:
    """A connection to the calls' SQLite file at ``path``, as :class:`SQLiteStore` opens its
    own: autocommit (``BEGIN`` is explicit), ``synchronous=NORMAL``, any thread's."""
    db = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def calls_db(path: Path) -> sqlite3.Connection:
    """:func:`calls_connection` to ``path``, a WAL file made ready: its one table, with the
    one row (key ``'k'``) the calls read and write."""
    db = calls_connection(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS sessions (key TEXT PRIMARY KEY, data BLOB NOT NULL)"
               " WITHOUT ROWID")
    db.execute("INSERT OR REPLACE INTO sessions VALUES ('k', ?)", (b'{"n": 0}',))
    return db


def calls_lock(path: Path) -> int:
    """A descriptor of the lock file next to ``path`` on which guarded writes queue."""
    return os.open(f"{path}-lock", os.O_RDWR | os.O_CREAT, 0o644)


def guarded_write(cur: sqlite3.Cursor, lock_fd: int, folder: str | Path,
                  params: Sequence[object], sql: str = CALLS_WRITE) -> int:
    """``sql`` (:data:`CALLS_WRITE` unless named) as :class:`SQLiteStore` writes: queued on
    ``flock`` of ``lock_fd``, in ``BEGIN IMMEDIATE`` ... ``COMMIT``, with a ``stat`` of
    ``folder`` (the store's check that its files are still at the path) before the commit.
    Returns the rows it changed."""
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    try:
        cur.execute("BEGIN IMMEDIATE")
        changed = int(cur.execute(sql, params).rowcount)
        os.stat(folder)
        cur.execute("COMMIT")
    finally:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
    return changed


class SchemaFloor(MemoryStore):
    """satchel's memory store whose load and update also run the SQLite store's own
    statements on its schema (``bench/sqlite_floor.py``'s ``memory+schema`` line and
    ``bench/load.py``'s ``satchel-memory+schema`` floor), with a connection per thread, on a
    file that several processes may share: on load its SELECT of a session
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
        self._lock_fd = calls_lock(self._path)

    def _cursor(self) -> sqlite3.Cursor:
        cur: sqlite3.Cursor | None = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._local.cur = calls_connection(self._path).cursor()
        return cur

    def load(self, key: str) -> Record | None:
        if not self._cursor().execute(LOAD, ("k", 1.0)).fetchall():
            raise AssertionError("the schema floor's read found nothing")
        return super().load(key)

    def update(self, key: str, patch: Patch) -> Updated:
        cur = self._cursor()
        with self._threads:
            changed = guarded_write(cur, self._lock_fd, self._folder,
                                    ("n", bytearray(b"1"), "k", 1.0), UPSERT_LIVE_FIELD)
        if changed != 1:
            raise AssertionError("the schema floor's write wrote nothing")
        return super().update(key, patch)


def sqlite_calls(tmp: Path) -> Flask:
    """No session layer: in its views, the SQLite calls that any SQLite-backed one makes.

    ``/write`` reads a row by key and writes it back (a SELECT, then an autocommitted
    INSERT OR REPLACE), ``/read`` reads it (a SELECT), on a file in WAL mode with
    ``synchronous=NORMAL``, as :class:`SQLiteStore` opens its files. ``bench/overhead.py``
    times it as it times the layers, inside a request, so the calls run with the caches the
    request's Flask work leaves them: its overhead over the bare app is the floor under any
    SQLite session layer's. One connection, for bench/overhead.py's single thread.
    """
    folder = tmp / "sqlite_calls"
    folder.mkdir(exist_ok=True)
    cursor = calls_db(folder / "calls.sqlite3").cursor()

    def write() -> None:
        data = cursor.execute(CALLS_SELECT, ("k",)).fetchall()
        cursor.execute(CALLS_WRITE, ("k", data[0][0]))

    return _calls_app("sqlite_calls", lambda: cursor.execute(CALLS_SELECT, ("k",)).fetchall(),
                      write)


def sqlite_calls_threaded(folder: Path) -> Flask:
    """No session layer, for bench/load.py's threaded servers: in its views, the SQLite calls
    a layer with :class:`SQLiteStore`'s guarantees needs at the least.

    Each thread has its own connection to one file in ``folder`` (WAL,
    ``synchronous=NORMAL``, as :class:`SQLiteStore` opens its files), which the servers
    share. ``/read`` reads a row by key (a SELECT); ``/write`` reads it, then writes it
    back as SQLiteStore writes: the servers' writers queued on a ``flock`` of a lock file
    next to the database, the write in ``BEGIN IMMEDIATE`` ... ``COMMIT``, a ``stat`` of
    the folder before the commit (``bench/sqlite_floor.py``'s guards).
    """
    folder.mkdir(exist_ok=True)
    path = folder / "calls.sqlite3"
    calls_db(path).close()
    local = threading.local()
    lock_fd = calls_lock(path)
    threads = threading.Lock()

    def cursor() -> sqlite3.Cursor:
        cur: sqlite3.Cursor | None = getattr(local, "cur", None)
        if cur is None:
            cur = local.cur = calls_connection(path).cursor()
        return cur

    def write() -> None:
        cur = cursor()
        data = cur.execute(CALLS_SELECT, ("k",)).fetchall()
        with threads:  # the process's threads queue here, then on the flock
            guarded_write(cur, lock_fd, folder, ("k", data[0][0]))

    return _calls_app("sqlite_calls",
                      lambda: cursor().execute(CALLS_SELECT, ("k",)).fetchall(), write)


def satchel_cookie() -> Flask:
    app = routes(Flask("satchel_cookie"), use_session=True)
    Satchel(app, store=SealedCookies())
    return app


def flask_session_sqlalchemy(uri: str, name: str = "flask_session_sqlalchemy") -> Flask | None:
    try:
        from flask_session import Session as FlaskSessionExt
        from flask_sqlalchemy import SQLAlchemy
    except ImportError:
        return None
    app = routes(Flask(name), use_session=True)
    app.config["SQLALCHEMY_DATABASE_URI"] = uri
    app.config["SESSION_TYPE"] = "sqlalchemy"
    app.config["SESSION_SQLALCHEMY_TABLE"] = BENCH_TABLE + "_flask_session"
    app.config["SESSION_SQLALCHEMY"] = SQLAlchemy(app)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        FlaskSessionExt(app)
    return app


POSTGRES_URL = os.environ.get("SATCHEL_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")
# Per run: a parallel run (make test) drops its own. bench/load.py names them for its servers.
BENCH_TABLE = os.environ.get("SATCHEL_BENCH_TABLE", f"satchel_bench_{os.getpid()}")


def postgres_up() -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def satchel_postgres(*, durable_writes: bool = False) -> Flask | None:
    """satchel on PostgreSQL; ``durable_writes`` waits for the WAL flush on every write."""
    if not postgres_up():
        return None
    from satchel.stores.postgres import PostgresStore

    suffix = "_durable" if durable_writes else ""
    app = routes(Flask("satchel_postgres" + suffix), use_session=True)
    Satchel(app, store=PostgresStore.from_url(POSTGRES_URL, table=BENCH_TABLE + suffix,
                                              durable_writes=durable_writes))
    return app


def flask_session_postgres() -> Flask | None:
    if not postgres_up():
        return None
    uri = POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    return flask_session_sqlalchemy(uri, "flask_session_postgres")


def postgres_floors(seconds: float, repeats: int) -> dict[str, float]:
    if not postgres_up():
        return {}
    import psycopg

    from satchel.stores.postgres.statements import ASYNC_COMMIT

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {BENCH_TABLE}_raw"
                     " (key text PRIMARY KEY, data jsonb, last_seen float8)")
        conn.execute(f"INSERT INTO {BENCH_TABLE}_raw VALUES ('k', '{{\"user\": \"alice\"}}', 0)"
                     " ON CONFLICT DO NOTHING")
        select = f"SELECT data, last_seen FROM {BENCH_TABLE}_raw WHERE key = %s"
        update = f"UPDATE {BENCH_TABLE}_raw SET last_seen = %s WHERE key = %s"
        # As PostgresStore's default (durable_writes=False) commits: no wait for the WAL flush.
        update_async = (f"UPDATE {BENCH_TABLE}_raw SET last_seen = %s{ASYNC_COMMIT}"
                        " WHERE key = %s")
        return fastest_interleaved({
            "psycopg SELECT": lambda: conn.execute(select, ("k",), prepare=True).fetchone(),
            "psycopg UPDATE": lambda: conn.execute(update, (time.time(), "k"), prepare=True),
            "psycopg UPDATE, async commit": lambda: conn.execute(
                update_async, (time.time(), "k"), prepare=True),
        }, seconds=seconds, repeats=repeats)


def cleanup_postgres() -> None:
    if not postgres_up():
        return
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        for table in (BENCH_TABLE, BENCH_TABLE + "_durable", BENCH_TABLE + "_raw",
                      BENCH_TABLE + "_flask_session", BENCH_TABLE + "_calls"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")


REDIS_URL = os.environ.get("SATCHEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BENCH_PREFIX = os.environ.get("SATCHEL_BENCH_PREFIX", f"satchel-bench-{os.getpid()}:")


def redis_client() -> Any:
    try:
        import redis
    except ImportError:
        return None
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.RedisError:
        return None
    return client


def satchel_redis() -> Flask | None:
    client = redis_client()
    if client is None:
        return None
    from satchel.stores.redis import RedisStore

    app = routes(Flask("satchel_redis"), use_session=True)
    Satchel(app, store=RedisStore(client, prefix=BENCH_PREFIX))
    return app


def redis_calls() -> Flask | None:
    """No session layer: per read a ``GET``, per write a ``GET`` and a ``SET`` (of a record
    the size of a small session), the calls a Redis session layer makes at the least."""
    client = redis_client()
    if client is None:
        return None
    key, value = BENCH_PREFIX + "calls", b"x" * 64
    client.set(key, value)

    def write() -> None:
        client.get(key)
        client.set(key, value)

    return _calls_app("redis_calls", lambda: client.get(key), write)


def postgres_calls() -> Flask | None:
    """No session layer: per read a ``SELECT`` of a row by key, per write the same and an
    ``UPDATE`` merging a JSON field that commits without waiting for the WAL flush (as
    PostgresStore's default), each on a connection from a psycopg pool: the calls a
    PostgreSQL session layer makes at the least."""
    if not postgres_up():
        return None
    from psycopg_pool import ConnectionPool

    from satchel.stores.postgres.statements import ASYNC_COMMIT

    table = BENCH_TABLE + "_calls"
    pool = ConnectionPool(POSTGRES_URL, min_size=1, max_size=10, open=True,
                          kwargs={"autocommit": True})
    with pool.connection() as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (key text PRIMARY KEY,"
                     " data jsonb NOT NULL, expires_at double precision NOT NULL)")
        conn.execute(f"INSERT INTO {table} VALUES ('k', '{{\"n\": \"0\"}}', 1e12)"
                     " ON CONFLICT DO NOTHING")
    select = f"SELECT data::text, expires_at FROM {table} WHERE key = %s AND expires_at > %s"
    update = (f"UPDATE {table} SET data = data || %s::jsonb{ASYNC_COMMIT}"
              " WHERE key = %s AND expires_at > %s")

    def read() -> None:
        with pool.connection() as conn:
            conn.execute(select, ("k", time.time()), prepare=True).fetchone()

    def write() -> None:
        read()
        with pool.connection() as conn:
            conn.execute(update, ('{"n": "1"}', "k", time.time()), prepare=True)

    return _calls_app("postgres_calls", read, write)


def flask_session_redis() -> Flask | None:
    client = redis_client()
    try:
        from flask_session import Session as FlaskSessionExt
    except ImportError:
        return None
    if client is None:
        return None
    app = routes(Flask("flask_session_redis"), use_session=True)
    app.config["SESSION_TYPE"] = "redis"
    app.config["SESSION_REDIS"] = client
    app.config["SESSION_KEY_PREFIX"] = BENCH_PREFIX + "fs:"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        FlaskSessionExt(app)
    return app


def raw_round_trips(seconds: float, repeats: int) -> dict[str, float]:
    """Seconds per bare driver call on the same servers: the floor under any store."""
    floors: dict[str, float] = {}
    client = redis_client()
    if client is not None:
        key = BENCH_PREFIX + "raw"
        client.set(key, b"x" * 64)
        floors |= fastest_interleaved({
            "redis GET": lambda: client.get(key),
            "redis SET": lambda: client.set(key, b"x" * 64),
        }, seconds=seconds, repeats=repeats)
    return floors


def cleanup_redis() -> None:
    client = redis_client()
    if client is not None:
        for name in list(client.scan_iter(match=BENCH_PREFIX + "*", count=1000)):
            client.delete(name)


def flask_session_cachelib() -> Flask | None:
    try:
        from cachelib import SimpleCache
        from flask_session import Session as FlaskSessionExt
    except ImportError:
        return None
    app = routes(Flask("flask_session_cachelib"), use_session=True)
    app.config["SESSION_TYPE"] = "cachelib"
    app.config["SESSION_CACHELIB"] = SimpleCache(threshold=1_000_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        FlaskSessionExt(app)
    return app


def environ_for(path: str, cookie: str | None) -> dict[str, Any]:
    headers = {"Cookie": cookie} if cookie else {}
    return EnvironBuilder(path=path, base_url="http://localhost/", headers=headers).get_environ()


def login_cookie(app: Flask) -> str | None:
    """The ``Cookie`` header a browser would send after logging in."""
    client = app.test_client()
    client.get("/login")
    name = app.config["SESSION_COOKIE_NAME"]
    cookie = client.get_cookie(name)
    return f"{name}={cookie.value}" if cookie else None


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    if not status.startswith("200"):
        raise RuntimeError(f"benchmark request failed: {status}")


def drive(app: Flask, environ: dict[str, Any], count: int) -> float:
    """Seconds per request over ``count`` requests."""
    wsgi: Callable[..., Iterable[bytes]] = app.wsgi_app
    copy = environ.copy
    start = time.perf_counter()
    for _ in range(count):
        body = wsgi(copy(), start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return (time.perf_counter() - start) / count
