"""Real services the tests use: where they are, and what to do when one is missing.

Under ``CI=true`` a missing service fails the run; elsewhere the test is skipped.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
LOOPBACK = "127.0.0.1"
REDIS_URL = os.environ.get("SATCHEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def cannot_test(reason: str) -> NoReturn:
    """Under CI a missing server or driver is a failure; on a laptop, a skip.

    Works in a test and at module level (an import guard).
    """
    if IN_CI:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def need_module(name: str) -> Any:
    """``import name``, or :func:`cannot_test` (a failure under CI, a skip elsewhere)."""
    try:
        return __import__(name)
    except ImportError:
        cannot_test(f"this test needs {name}: pip install -e '.[dev]'")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


def drops_to(count: Callable[[], int], expected: int) -> int:
    """``count()`` once it is ``expected``, or after 10 s: a server ends a closed connection's
    session a moment after the client has closed it."""
    deadline = time.monotonic() + 10
    while (now := count()) != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return now


def random_prefix() -> str:
    return f"satchel-test:{uuid.uuid4().hex}:"


def drop_keys(client: Any, prefix: str) -> None:
    for name in list(client.scan_iter(match=prefix + "*", count=1000)):
        client.delete(name)


@contextmanager
def redis_client() -> Iterator[Any]:
    """A client of the test Redis server, closed afterwards."""
    try:
        import redis
    except ImportError:
        cannot_test("the Redis store tests need redis-py: pip install -e '.[redis]'")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.RedisError as err:
        client.close()
        cannot_test(f"no Redis server at SATCHEL_TEST_REDIS_URL={REDIS_URL!r} ({err}); start"
                    " one (apt-get install redis-server) or point the variable at one")
    try:
        yield client
    finally:
        client.close()


POSTGRES_URL = os.environ.get("SATCHEL_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def postgres_store(**options: Any) -> Iterator[Any]:
    """A PostgresStore on a fresh table of the test server, dropped afterwards.

    ``options`` go to ``PostgresStore.from_url`` (``clock=``, ...).
    """
    try:
        import psycopg
        from psycopg import sql

        from satchel.stores.postgres import PostgresStore
    except ImportError:
        cannot_test("the PostgreSQL store tests need psycopg: pip install -e '.[postgres]'")
    from satchel.errors import StoreUnavailable

    table = f"satchel_test_{uuid.uuid4().hex[:16]}"
    try:
        store = PostgresStore.from_url(POSTGRES_URL, table=table, **options)
    except StoreUnavailable as err:
        cannot_test(f"no PostgreSQL server at SATCHEL_TEST_POSTGRES_URL={POSTGRES_URL!r}"
                    f" ({err}); start one or point the variable at one")
    try:
        yield store
    finally:
        store.close()  # the pool is shared with other stores from the URL: never pool.close()
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:  # closed store or not
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}, {}").format(
                sql.Identifier(table), sql.Identifier(table + "_locks")))


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL of the test server whose tables land in a schema of their own, dropped afterwards.

    The schema is first on the URL's ``search_path``, so a store with the default table
    (``SATCHEL_STORE`` set to the URL) keeps its sessions there. Its ``application_name`` is
    the schema's name, so the server's connections from it can be counted.
    """
    with postgres_store():  # the server is up, or cannot_test says why
        pass
    import psycopg
    from psycopg import sql

    name = f"satchel_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield (POSTGRES_URL + ("&" if "?" in POSTGRES_URL else "?")
               + f"application_name={name}&options=-csearch_path%3D{name}")
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
