"""What satchel opens, satchel closes: the pools, clients and connections of stores.

A store built from a URL shares its pool or client with the other stores built from that URL
(satchel.resources), so building and dropping apps leaves the server's connection count and
the process's threads flat, with nothing left for the garbage collector to close on a pool's
own thread. The counts are taken on the real servers, by name (each test's URL carries its
own ``application_name`` / ``client_name``), so other users of the servers do not disturb them.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask, session

from satchel import Satchel
from satchel.resources import SharedResources
from satchel.store import Record
from satchel.stores.sqlite import SQLiteStore
from tests.services import POSTGRES_URL, REDIS_URL, drops_to, postgres_schema, redis_client

APPS = 300
ROOT = Path(__file__).resolve().parent.parent
RECORD = Record({"a": b"1"}, 0.0, 0.0, 9e12)


# -- the registry ---------------------------------------------------------------------------------


class Resource:
    def __init__(self, name: str = "r") -> None:
        self.name, self.closed = name, False

    def close(self) -> None:
        self.closed = True


def close(resource: Resource) -> None:
    resource.close()


def test_leases_on_one_key_share_one_resource_which_the_last_release_closes() -> None:
    registry = SharedResources()
    first = registry.lease("k", Resource, close)
    second = registry.lease("k", Resource, close)
    other = registry.lease("other", Resource, close)
    assert first.resource is second.resource is not other.resource
    first.release()
    first.release()  # twice: the second does nothing
    assert not second.resource.closed
    second.release()
    assert second.resource.closed and not other.resource.closed
    third = registry.lease("k", Resource, close)
    assert third.resource is not second.resource and not third.resource.closed
    assert "k" not in repr(third) and "k" not in repr(registry)


def test_a_collected_lease_stops_counting_and_closes_nothing() -> None:
    registry = SharedResources()
    registry.lease("k", Resource, close)  # dropped at once, never released
    gc.collect()
    kept = registry.lease("k", Resource, close)
    assert not kept.resource.closed  # the dropped lease's resource stayed, for the next one
    registry.lease("k", Resource, close)
    gc.collect()
    kept.release()  # the last live lease
    assert kept.resource.closed
    assert len(registry) == 0


def test_an_unusable_resource_is_replaced_and_its_leases_release_nothing() -> None:
    registry = SharedResources()

    def usable(resource: Resource) -> bool:
        return not resource.closed

    old = registry.lease("k", Resource, close, usable=usable)
    old.resource.close()  # closed by hand
    new = registry.lease("k", Resource, close, usable=usable)
    assert new.resource is not old.resource
    old.release()
    assert not new.resource.closed
    new.release()
    assert new.resource.closed


def test_two_threads_building_one_key_at_once_end_up_sharing_one() -> None:
    registry = SharedResources()
    both_building = threading.Barrier(2, timeout=10)  # a build under the lock: broken
    built: list[Resource] = []

    def build() -> Resource:
        resource = Resource()
        built.append(resource)
        both_building.wait()
        return resource

    leases: list[Any] = []
    threads = [threading.Thread(target=lambda: leases.append(registry.lease("k", build, close)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 2 and leases[0].resource is leases[1].resource
    spare, = (resource for resource in built if resource is not leases[0].resource)
    assert spare.closed and not leases[0].resource.closed


def test_close_all_closes_every_resource_even_if_one_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = SharedResources()

    def fail(resource: Resource) -> None:
        raise OSError("cannot close")

    failing = registry.lease("bad", Resource, fail)
    fine = registry.lease("good", Resource, close)
    registry.close_all()
    assert fine.resource.closed and not failing.resource.closed
    assert "closing a shared Resource failed" in caplog.text
    assert registry.lease("good", Resource, close).resource is not fine.resource


def test_after_a_fork_the_child_builds_its_own_and_leaves_the_parents_alone() -> None:
    registry = SharedResources()
    parents = registry.lease("k", Resource, close)
    registry.forget_all()  # what runs in a forked child
    childs = registry.lease("k", Resource, close)
    assert childs.resource is not parents.resource
    parents.release()
    registry.close_all()
    assert childs.resource.closed and not parents.resource.closed


# -- apps on one URL ------------------------------------------------------------------------------


@contextmanager
def postgres_url() -> Iterator[tuple[str, Callable[[], int]]]:
    """A URL of the test server with a schema of its own (services.postgres_schema), and a
    counter of the server's connections from it (by its ``application_name``)."""
    import psycopg

    with postgres_schema() as url, psycopg.connect(POSTGRES_URL, autocommit=True) as observer:
        name = parse_qs(urlsplit(url).query)["application_name"][0]

        def count() -> int:
            row = observer.execute("SELECT count(*) FROM pg_stat_activity"
                                   " WHERE application_name = %s", (name,)).fetchone()
            return int(row[0]) if row else 0

        yield url, count


def with_query(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + "&".join(f"{k}={v}" for k, v in params.items())


@contextmanager
def redis_url() -> Iterator[tuple[str, Callable[[], int]]]:
    """A URL of the test server with its own client name, and a counter of its connections."""
    name = f"satchel-test-{uuid.uuid4().hex[:12]}"
    with redis_client() as admin:
        yield (with_query(REDIS_URL, client_name=name),
               lambda: sum(client.get("name") == name for client in admin.client_list()))


@contextmanager
def sqlite_url(folder: Path) -> Iterator[tuple[str, Callable[[], int]]]:
    """An SQLite URL of a file in ``folder``; there is no server to count (-1)."""
    yield f"sqlite:///{folder}/sessions.sqlite3", lambda: -1


# Each kind of store: a URL of it (given a folder of the test's own), and a counter of the
# server's connections from it.
URLS: dict[str, Callable[[Path], AbstractContextManager[tuple[str, Callable[[], int]]]]] = {
    "postgresql": lambda folder: postgres_url(),
    "redis": lambda folder: redis_url(),
    "sqlite": sqlite_url,
}


def build_app(url: str, number: int) -> Flask:
    """An app on SATCHEL_STORE ``url`` that has written a session and deleted it again."""
    app = Flask(f"app{number}")
    app.config.update(SECRET_KEY="resources test secret " * 2, SATCHEL_STORE=url)
    Satchel(app)

    @app.post("/")
    def write() -> str:
        session["n"] = number
        return "ok"

    @app.delete("/")
    def end() -> str:
        session.clear()
        return "ok"

    client = app.test_client()
    assert client.post("/").status_code == 200
    assert client.delete("/").status_code == 200
    return app


# -- 300 apps in a process of their own, under -W error ------------------------------------------


@pytest.mark.parametrize("kind", list(URLS))
def test_apps_built_and_dropped_leave_nothing_behind(kind: str, tmp_path: Path) -> None:
    """300 apps on one SATCHEL_STORE URL, each dropped and collected: nothing is printed as
    "Exception ignored" (psycopg_pool's "cannot join current thread"), and the threads, the
    open files and the server's connections stay as they were after the first apps."""
    with URLS[kind](tmp_path) as (url, _):
        run = subprocess.run([sys.executable, "-W", "error", "-m", "tests.churn", url,
                              str(APPS)], cwd=ROOT, capture_output=True, text=True,
                             timeout=300, check=False)
    assert run.stderr == ""
    assert run.returncode == 0
    counts = json.loads(run.stdout)
    first, tenth, last = counts["1"], counts["10"], counts[str(APPS)]
    assert last["threads"] == first["threads"]
    assert last["fds"] == tenth["fds"]
    if kind != "sqlite":
        assert 1 <= last["server"] == tenth["server"] <= 10  # one pool: at most its max_size


# -- in this process: no collection needed -------------------------------------------------------


def test_postgres_apps_on_one_url_share_one_pool_that_the_last_close_closes() -> None:
    """Apps built from one URL share one pool, without any garbage collection: the server sees
    one pool's connections, the process one pool's threads. The last store to close closes
    it; the stores the collector took do not count."""
    threads_before = threading.active_count()
    with postgres_url() as (url, connections):
        apps = [build_app(url, 1)]
        pool = Satchel.store_of(apps[0]).pool  # type: ignore[attr-defined]
        threads, server = threading.active_count(), connections()
        assert 1 <= server <= 2  # min_size, and one more if the first use came before it
        for number in range(2, APPS + 1):
            apps.append(build_app(url, number))
            # checked at once: 300 pools would take all the server's connections
            assert Satchel.store_of(apps[-1]).pool is pool  # type: ignore[attr-defined]
        assert threading.active_count() == threads
        assert connections() == server
        last = Satchel.store_of(apps.pop())
        del apps
        gc.collect()
        assert connections() == server  # the dropped stores' pool is the last one's: still open
        last.close()  # type: ignore[attr-defined]
        assert last.pool.closed  # type: ignore[attr-defined]
        assert drops_to(connections, 0) == 0
        assert threading.active_count() == threads_before
        last.close()  # type: ignore[attr-defined]  # twice: nothing more to do


def test_redis_apps_on_one_url_share_one_client() -> None:
    threads_before = threading.active_count()
    with redis_url() as (url, connections):
        apps = [build_app(url, 1)]
        client = Satchel.store_of(apps[0]).client  # type: ignore[attr-defined]
        for number in range(2, APPS + 1):
            apps.append(build_app(url, number))
            assert Satchel.store_of(apps[-1]).client is client  # type: ignore[attr-defined]
            if number == 10:
                server = connections()
        assert threading.active_count() == threads_before
        assert 1 <= connections() == server
        stores = [Satchel.store_of(app) for app in apps]
        del apps
        for store in stores:
            store.close()  # type: ignore[attr-defined]
        assert drops_to(connections, 0) == 0


def test_a_dropped_postgres_store_is_never_collected_on_its_pools_thread() -> None:
    """The original failure: a store dropped while its pool's worker is still connecting left
    the worker holding the pool's last reference, and the pool's __del__ then joined its own
    thread ("Exception ignored in ConnectionPool.__del__ ... cannot join current thread",
    an error for pytest here)."""
    from satchel.stores.postgres import PostgresStore

    with postgres_url() as (url, connections):
        for _ in range(20):
            PostgresStore.from_url(url, create_schema=False)  # dropped at once
        gc.collect()
        store = PostgresStore.from_url(url, create_schema=False)
        with store.pool.connection() as conn:
            conn.execute("SELECT 1")
        assert 1 <= connections() <= 2  # one pool's: min_size, and one more if it grew
        store.close()
        assert drops_to(connections, 0) == 0


def test_postgres_stores_share_a_pool_by_url_and_pool_options_not_by_table() -> None:
    from satchel.stores.postgres import PostgresStore

    with postgres_url() as (url, connections):
        first = PostgresStore.from_url(url, table="first")
        second = PostgresStore.from_url(url, table="second", durable_writes=True)
        small = PostgresStore.from_url(url, table="first", max_size=2)
        assert first.pool is second.pool
        assert small.pool is not first.pool and small.pool.max_size == 2
        first.close()
        second.create("k", RECORD)  # the other store on the pool still works
        assert second.load("k") is not None
        second.close()
        assert first.pool.closed
        assert small.load("k") is None  # and a store on another pool was never touched
        small.close()
        assert drops_to(connections, 0) == 0


def test_a_shared_pool_closed_by_hand_is_replaced_and_its_stores_release_nothing() -> None:
    """``store.pool.close()`` is what the docs said before pools were shared: the next store
    from that URL gets a new pool, and closing the old store leaves the new pool open."""
    from satchel.stores.postgres import PostgresStore

    with postgres_url() as (url, _):
        old = PostgresStore.from_url(url)
        old.pool.close()
        new = PostgresStore.from_url(url)
        assert new.pool is not old.pool
        old.close()
        new.create("k", RECORD)
        assert new.load("k") is not None
        new.close()


def test_a_pool_built_from_a_url_is_closed_at_exit() -> None:
    """The registry closes what stores left open when the interpreter exits; the check is an
    exit hook registered before it, so it runs after it."""
    script = (
        "import atexit, sys\n"
        "pools = []\n"
        "atexit.register(lambda: print('closed' if pools[0].closed else 'open'))\n"
        "from satchel.stores.postgres import PostgresStore\n"
        "pools.append(PostgresStore.from_url(sys.argv[1]).pool)\n"
    )
    with postgres_url() as (url, connections):
        run = subprocess.run([sys.executable, "-W", "error", "-c", script, url], cwd=ROOT,
                             capture_output=True, text=True, timeout=60, check=False)
        assert drops_to(connections, 0) == 0
    assert (run.stdout, run.stderr, run.returncode) == ("closed\n", "", 0)


def test_a_store_never_closes_the_pool_or_client_it_was_given() -> None:
    from psycopg_pool import ConnectionPool

    from satchel.stores.postgres import PostgresStore
    from satchel.stores.redis import RedisStore

    with postgres_url() as (url, _):
        pool: ConnectionPool[Any] = ConnectionPool(url, min_size=1, open=True,
                                                   kwargs={"autocommit": True})
        try:
            PostgresStore(pool).close()
            assert not pool.closed
            with pool.connection() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            pool.close()
    with redis_client() as client:
        store = RedisStore(client, prefix=f"satchel-test:{uuid.uuid4().hex}:")
        store.load("k")
        store.close()
        assert client.ping()


# -- SQLite: a connection per thread, each closed -------------------------------------------------


def open_files(path: Path) -> int:
    """How many of the process's file descriptors are ``path`` or its -wal/-shm files."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith(str(path))
        except OSError:  # closed since listed
            pass
    return count


@pytest.fixture
def db(tmp_path: Path) -> Path:
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("counts open files in /proc/self/fd (Linux)")
    return tmp_path / "sessions.sqlite3"


@contextmanager
def threads_using(store: SQLiteStore | list[SQLiteStore], count: int) -> Iterator[None]:
    """``count`` threads that have used ``store`` and stay alive until the block ends.

    ``store`` may be in a list, which the threads do not keep: emptying it drops the store.
    """
    used, finish = threading.Barrier(count + 1, timeout=10), threading.Event()
    holder = store if isinstance(store, list) else [store]

    def work() -> None:
        holder[0].load("k")
        used.wait()
        finish.wait()

    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    used.wait()
    try:
        yield
    finally:
        finish.set()
        for thread in threads:
            thread.join()


def on_a_thread(function: Callable[[], Any]) -> Any:
    """``function()``, called on a thread of its own, which has ended when this returns."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(function()))
    thread.start()
    thread.join()
    return result[0]


# SQLite defers closing a connection's files while another connection of the process holds a
# lock on the same database, so the counts below are taken with no other connection open.


def test_sqlite_close_closes_every_threads_connection(db: Path) -> None:
    store = SQLiteStore(db)
    with threads_using(store, 3):
        assert open_files(db) > 0
        store.close()
        assert open_files(db) == 0  # the threads are alive, their connections closed
        store.create("k", RECORD)  # a closed store opens again when used
        assert store.load("k") is not None
        store.close()
        assert open_files(db) == 0
    store.close()  # twice: nothing more to do


def test_sqlite_a_threads_connection_closes_when_the_thread_ends(db: Path) -> None:
    store = on_a_thread(lambda: SQLiteStore(db))
    assert open_files(db) == 0
    for _ in range(5):
        on_a_thread(lambda: store.load("k"))
        assert open_files(db) == 0


def test_sqlite_a_dropped_store_closes_its_connections_on_every_thread(db: Path) -> None:
    holder = [SQLiteStore(db)]
    with threads_using(holder, 2):
        assert open_files(db) > 0
        holder.clear()
        gc.collect()
        assert open_files(db) == 0
