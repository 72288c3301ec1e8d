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


def record(owner: str) -> Record:
    now = time.time()
    return Record({"owner": json.dumps(owner).encode()}, now, now, now + 3600)


def hammer(store: Store, keys: list[str], seconds: float) -> dict[str, int]:
    """Each thread reads, and writes, the session of its own key for ``seconds``; counts
    of what came back: "ok", "other" (another session's data), "none", or an error's name."""
    counts: dict[str, int] = {}
    lock = threading.Lock()
    prefetching = isinstance(store, Prefetching)  # every other read is a prefetch then

    def count(what: str) -> None:
        with lock:
            counts[what] = counts.get(what, 0) + 1

    def work(key: str) -> None:
        end = time.monotonic() + seconds
        hits = 0
        while time.monotonic() < end:
            try:
                pending = store.prefetch(key) if prefetching and hits % 2 else None
                got = store.load(key) if pending is None else pending.result()
                if got is None:
                    count("none")
                elif got.fields.get("owner") != json.dumps(key).encode():
                    count("other")
                else:
                    count("ok")
                hits += 1
                store.update(key, Patch(set={"hits": str(hits).encode()}, last_seen=time.time()))
            except Exception as err:
                count(type(err).__name__)

    threads = [threading.Thread(target=work, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts


def in_children(work: Callable[[Any], dict[str, int]],
                per_child: list[Any]) -> list[dict[str, int]]:
    """``work(part)`` in forked children at once, a part of ``per_child`` each; their counts."""
    children = []
    for part in per_child:
        read, write = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
            pid = os.fork()
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
    with URLS[kind]() as url, tempfile.TemporaryDirectory() as base:
        store = store_from_url(url, base_dir=base)
        try:
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
        finally:
            store.close()


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
                    told = "open when this process was forked" in str(err)
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
