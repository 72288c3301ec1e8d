"""A store built before a fork (``gunicorn --preload`` builds the app in the master) serves
each forked worker its own sessions: never another session's data, never a protocol error,
and the parent's connections still work afterwards.

Two children, four threads each, read and write their own sessions at once, through the
store the parent built from its URL and used. A child that shared the parent's sockets (a
PostgreSQL pool opened before the fork) interleaves its queries with the other child's on
one connection: each reads whichever answer comes first, another session's row among them.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from satchel.store import Patch, Prefetching, Record, Store
from satchel.urls import store_from_url
from tests.services import REDIS_URL, cannot_test, redis_client

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

CHILDREN = 2
THREADS = 4
SECONDS = 1.0


@contextmanager
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{folder}/sessions.db"


@contextmanager
def redis_url() -> Iterator[str]:
    with redis_client():  # the server is up, or cannot_test says why
        pass
    yield REDIS_URL


@contextmanager
def postgres_url() -> Iterator[str]:
    from tests.services import postgres_schema
    with postgres_schema() as url:  # the server is up, or cannot_test says why
        yield url


@contextmanager
def redis_cluster_url() -> Iterator[str]:
    from tests.stores.redis_cluster import missing_binaries, redis_cluster
    if missing_binaries():
        cannot_test(f"the Redis Cluster tests need {missing_binaries()}")
    with redis_cluster() as ports:
        yield f"redis+cluster://127.0.0.1:{ports[0]}"


URLS: dict[str, Callable[[], Any]] = {
    "sqlite": sqlite_url, "redis": redis_url, "redis+cluster": redis_cluster_url,
    "postgresql": postgres_url,
}


@contextmanager
def built_store(kind: str) -> Iterator[Store]:
    """A store of ``kind`` built from its URL, as ``SATCHEL_STORE`` builds one; closed after."""
    with URLS[kind]() as url, tempfile.TemporaryDirectory() as base:
        store = store_from_url(url, base_dir=base)
        try:
            yield store
        finally:
            store.close()


def record(owner: str) -> Record:
    now = time.time()
    return Record({"owner": json.dumps(owner).encode()}, now, now, now + 3600)


def work_on(store: Store, key: str, seconds: float, count: Callable[[str], None], *,
            prefetching: bool) -> None:
    """Read, and write, the session of ``key`` for ``seconds``, counting what each read got:
    "ok", "other" (another session's data), "none", or an error's name. With
    ``prefetching``, every other read is a prefetch."""
    end = time.monotonic() + seconds
    hits = 0
    while time.monotonic() < end:
        try:
            reads_ahead = prefetching and hits % 2 and isinstance(store, Prefetching)
            pending = store.prefetch(key) if reads_ahead else None
            got = store.load(key) if pending is None else pending.result()
            count("none" if got is None else
                  "ok" if got.fields.get("owner") == json.dumps(key).encode() else "other")
            hits += 1
            store.update(key, Patch(set={"hits": str(hits).encode()}, last_seen=time.time()))
        except Exception as err:
            count(type(err).__name__)


def hammer(store: Store, keys: list[str], seconds: float) -> dict[str, int]:
    """:func:`work_on` each key in a thread of its own, prefetching if the store can; the
    counts of all."""
    counts: dict[str, int] = {}
    lock = threading.Lock()
    prefetching = isinstance(store, Prefetching)

    def count(what: str) -> None:
        with lock:
            counts[what] = counts.get(what, 0) + 1

    threads = [threading.Thread(target=work_on, args=(store, key, seconds, count),
                                kwargs={"prefetching": prefetching}) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts


def python_fork() -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
        return os.fork()


def in_children(work: Callable[[Any], dict[str, int]], per_child: list[Any],
                fork: Callable[[], int] = python_fork) -> list[dict[str, int]]:
    """``work(part)`` in children forked with ``fork()`` at once, a part of ``per_child``
    each; their counts."""
    children = []
    for part in per_child:
        read, write = os.pipe()
        pid = fork()
        if pid == 0:  # pragma: no cover - the child's coverage is not collected
            os.close(read)
            try:
                result = work(part)
            except BaseException as err:
                result = {f"child raised {type(err).__name__}": 1}
            os.write(write, json.dumps(result).encode())
            os._exit(0)
        os.close(write)
        children.append((pid, read))
    results = []
    deadline = time.monotonic() + 60
    for pid, read in children:
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
        os.close(read)
        while not os.waitpid(pid, os.WNOHANG)[0]:
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                break
            time.sleep(0.01)
        results.append(json.loads(b"".join(chunks) or b'{"hung": 1}'))
    return results


@pytest.mark.parametrize("kind", list(URLS))
def test_each_forked_worker_gets_its_own_sessions(kind: str) -> None:
    with built_store(kind) as store:
        run = uuid.uuid4().hex[:8]
        keys = [[f"{run}{child}{n:055d}" for n in range(THREADS)]
                for child in range(CHILDREN)]
        every = [key for child in keys for key in child]
        for key in every:
            store.create(key, record(key))  # the parent uses its connections first
        assert store.load(keys[0][0]) is not None

        results = in_children(lambda part: hammer(store, part, SECONDS), keys)

        for counts in results:
            assert set(counts) == {"ok"}, counts
            assert counts["ok"] > 10 * THREADS, counts
        for key in every:  # the parent's connections were not disturbed
            got = store.load(key)
            assert got is not None and got.fields["owner"] == json.dumps(key).encode()
            assert int(got.fields["hits"]) > 0  # the children's writes landed


def requests(clients: dict[int, Any], seconds: float) -> dict[str, int]:
    """Each client, in a thread of its own, asks ``/me/<n>`` for ``seconds``: counts of the
    statuses (410: the session the request got was not its client's)."""
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def work(number: int, client: Any) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            status = str(client.get(f"/me/{number}").status_code)
            with lock:
                counts[status] = counts.get(status, 0) + 1

    threads = [threading.Thread(target=work, args=item) for item in clients.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts


@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgresql"])
def test_an_app_built_before_the_fork_serves_each_worker_its_own_sessions(kind: str) -> None:
    from tests.fault_apps import build_app
    with URLS[kind]() as url:
        app = build_app(url, None)  # Satchel(app) in the parent, as gunicorn --preload does
        clients = {}
        for number in range(CHILDREN * THREADS):
            clients[number] = app.test_client()
            assert clients[number].post(f"/login/{number}").status_code == 200
        parts = [{n: clients[n] for n in range(child * THREADS, (child + 1) * THREADS)}
                 for child in range(CHILDREN)]

        results = in_children(lambda part: requests(part, SECONDS), parts)

        for counts in results:
            assert set(counts) == {"200"}, counts  # 410: another's session; 503, 500: errors
        for number, client in clients.items():  # the parent still serves, with their writes
            answer = client.get(f"/hits/{number}")
            assert answer.status_code == 200 and int(answer.text) > 0


def test_a_pool_of_your_own_open_at_the_fork_is_refused_in_the_child() -> None:
    from psycopg_pool import ConnectionPool

    from satchel.errors import ConfigError
    from satchel.stores.postgres import PostgresStore
    from tests.services import POSTGRES_URL, postgres_store
    with postgres_store() as made:  # a table, and the server up (or cannot_test)
        pool: ConnectionPool[Any] = ConnectionPool(POSTGRES_URL, min_size=1, open=True,
                                                   kwargs={"autocommit": True})
        try:
            store = PostgresStore(pool, table=made.table, create_schema=False)
            key = uuid.uuid4().hex * 2
            store.create(key, record(key))

            def child(_: None) -> dict[str, int]:
                try:
                    store.load(key)
                except ConfigError as err:
                    told = "opened in a process this one was forked from" in str(err)
                    return {"refused, saying why" if told else str(err): 1}
                return {"served from the parent's connections": 1}

            assert in_children(child, [None]) == [{"refused, saying why": 1}]
            got = store.load(key)  # the parent's connections are untouched
            assert got is not None and got.fields["owner"] == json.dumps(key).encode()
        finally:
            pool.close()


def test_a_pool_of_your_own_opened_after_the_fork_serves_the_child() -> None:
    from psycopg_pool import ConnectionPool

    from satchel.stores.postgres import PostgresStore
    from tests.services import POSTGRES_URL, postgres_store
    with postgres_store() as made:
        key = uuid.uuid4().hex * 2
        made.create(key, record(key))
        pool: ConnectionPool[Any] = ConnectionPool(POSTGRES_URL, min_size=1, open=False,
                                                   kwargs={"autocommit": True})
        store = PostgresStore(pool, table=made.table, create_schema=False)

        def child(_: None) -> dict[str, int]:
            pool.open()  # gunicorn's post_fork, say
            try:
                got = store.load(key)
            finally:
                pool.close()
            return {"ok" if got and got.fields["owner"] == json.dumps(key).encode() else
                    "wrong": 1}

        assert in_children(child, [None]) == [{"ok": 1}]


def c_fork() -> int:
    """``fork()`` as C calls it, running none of Python's at-fork hooks: what uWSGI's workers
    get by default (without ``py-call-osafterfork``). Called holding the interpreter lock
    (``PyDLL``), so no other thread of the parent holds it in the child."""
    import ctypes
    pid: int = ctypes.PyDLL(None).fork()
    return pid


def one_thread(store: Store, key: str, seconds: float) -> dict[str, int]:
    """:func:`work_on` one key, in the calling thread only (a C fork's child has no
    working threading state to start threads from); its counts."""
    counts: dict[str, int] = {}

    def count(what: str) -> None:
        counts[what] = counts.get(what, 0) + 1

    work_on(store, key, seconds, count, prefetching=False)
    return counts


@pytest.mark.parametrize("kind", list(URLS))
def test_a_fork_that_runs_no_python_hook_gets_connections_of_its_own(kind: str) -> None:
    with built_store(kind) as store:
        run = uuid.uuid4().hex[:8]
        keys = [f"{run}{n:056d}" for n in range(CHILDREN)]
        for key in keys:
            store.create(key, record(key))
            assert store.load(key) is not None
        results = in_children(lambda key: one_thread(store, key, SECONDS), keys,
                              fork=c_fork)

        for counts in results:
            assert set(counts) == {"ok"}, counts
        for key in keys:  # the parent's connections still work
            got = store.load(key)
            assert got is not None and int(got.fields["hits"]) > 0


@pytest.mark.parametrize("kind", ["redis", "postgresql"])
@pytest.mark.parametrize("child_does", ["reads it", "drops it"])
def test_a_load_in_flight_at_the_fork_is_answered_in_the_parent(kind: str,
                                                                child_does: str) -> None:
    """A prefetched load sent before the fork (Flask sends it when the request opens its
    session): the child never reads the parent's answer, nor closes its connection."""
    with built_store(kind) as store:
        if not isinstance(store, Prefetching):
            pytest.skip(f"{kind} does not prefetch")
        run = uuid.uuid4().hex[:8]
        mine, other = f"{run}{1:056d}", f"{run}{2:056d}"
        for key in (mine, other):
            store.create(key, record(key))
        pending = store.prefetch(mine)
        assert pending is not None

        def child(_: None) -> dict[str, int]:
            if child_does == "reads it":
                got = pending.result()
                first = ("ok" if got and got.fields["owner"] == json.dumps(mine).encode()
                         else "wrong")
            else:
                pending.cancel()
                first = "ok"
            again = store.load(other)  # the child's own connections work
            return {first: 1, "other ok" if again and again.fields["owner"]
                    == json.dumps(other).encode() else "other wrong": 1}

        assert in_children(child, [None]) == [{"ok": 1, "other ok": 1}]
        got = pending.result()  # the parent reads its own answer, on a live connection
        assert got is not None and got.fields["owner"] == json.dumps(mine).encode()
        got = store.load(other)
        assert got is not None and got.fields["owner"] == json.dumps(other).encode()


def test_a_fork_while_another_thread_runs_an_sqlite_statement_does_not_wait_for_it() -> None:
    """CPython drops the parent's other threads' thread-local values inside ``fork``: the
    store's closer of such a thread's connection must neither close it in the child nor wait
    for the statement it runs (it would hold up the fork by ``CLOSE_WAIT``, 10 s)."""
    from satchel.stores.sqlite import SQLiteStore
    from satchel.stores.sqlite.files import CLOSE_WAIT
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(os.path.join(folder, "sessions.db"))
        try:
            store.count_expired()
            started, stop = threading.Event(), threading.Event()
            slow = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
                    " WHERE x < 200000000) SELECT count(*) FROM c")

            def busy() -> None:
                store.count_expired()
                started.set()
                try:
                    store._read(slow, ())  # running at the fork
                except Exception:
                    pass
                stop.wait()

            thread = threading.Thread(target=busy, daemon=True)
            thread.start()
            started.wait()
            theirs = list(store._opened)
            time.sleep(0.2)

            def child(_: None) -> dict[str, int]:
                closed = 0
                for conn in theirs:
                    try:
                        _ = conn.in_transaction  # raises on a closed connection
                    except Exception:
                        closed += 1
                return {"closed": closed}

            began = time.monotonic()
            assert in_children(child, [None]) == [{"closed": 0}]
            assert time.monotonic() - began < CLOSE_WAIT / 2  # a hang's mark, not a timing goal
            for conn in theirs:
                conn.interrupt()
            stop.set()
            thread.join(10)
        finally:
            store.close()


def test_a_store_built_in_the_child_around_a_pool_the_parent_opened_is_refused() -> None:
    """The pool is a module global the master opened (``gunicorn --preload``); the worker
    builds its store after the fork (``post_fork``, or lazily): refused at once."""
    from psycopg_pool import ConnectionPool

    from satchel.errors import ConfigError
    from satchel.stores.postgres import PostgresStore
    from tests.services import POSTGRES_URL, postgres_store
    with postgres_store() as made:
        pool: ConnectionPool[Any] = ConnectionPool(POSTGRES_URL, min_size=1, open=True,
                                                   kwargs={"autocommit": True})
        try:
            pool.wait(5)

            def child(_: None) -> dict[str, int]:
                try:
                    PostgresStore(pool, table=made.table, create_schema=False)
                except ConfigError as err:
                    return {"refused, saying why" if "opened in a process this one was"
                            " forked from" in str(err) else str(err): 1}
                return {"built on the parent's connections": 1}

            assert in_children(child, [None]) == [{"refused, saying why": 1}]
            PostgresStore(pool, table=made.table, create_schema=False)  # the parent's: fine
        finally:
            pool.close()
