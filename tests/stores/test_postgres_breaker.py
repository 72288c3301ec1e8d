"""PostgresStore's breaker under a slow server: a slow answer is not an outage.

On a loaded machine a statement may wait past the store's timeout while the server still
answers every other connection. That one call fails (its bound is the timeout), but the calls
after it must not get 503 as if the server were down: a probe opens a connection of its own,
which on such a machine takes longer than the breaker's patience. These tests make the probe
that slow (``_slow_probe``) and check that later calls are served.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from tests.services import cannot_test

try:
    import psycopg
    import psycopg_pool  # noqa: F401 - the store needs it
except ImportError as err:
    pytest.skip(f"no PostgreSQL driver ({err})", allow_module_level=True)

from psycopg import sql

from satchel.errors import StoreUnavailable
from satchel.store import Patch, Record
from satchel.stores.postgres import PostgresStore

URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def table() -> Iterator[str]:
    name = f"satchel_test_{uuid.uuid4().hex[:16]}"
    try:
        with psycopg.connect(URL, connect_timeout=3):
            pass
    except psycopg.Error as err:
        cannot_test(f"no PostgreSQL server at {URL}: {err}")
    yield name
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}, {}").format(
            sql.Identifier(name), sql.Identifier(name + "_locks")))


def _store(table: str, *, timeout: float, statement_timeout_ms: int) -> PostgresStore:
    options = quote(f"-c statement_timeout={statement_timeout_ms}")
    return PostgresStore.from_url(f"{URL}?options={options}", table=table, timeout=timeout,
                                  max_size=4)


def _slow_probe(store: PostgresStore, seconds: float = 0.5) -> None:
    """Make the breaker's probe take ``seconds`` longer, as connecting does on a loaded
    machine (the probe opens a connection of its own)."""
    probe = store._probe

    def slow() -> None:
        time.sleep(seconds)
        probe()

    store._probe = slow  # type: ignore[method-assign]


def _records(store: PostgresStore, *keys: str) -> None:
    now = time.time()
    for key in keys:
        store.create(key, Record({"n": b"0"}, now, now, now + 3600, False, None, None))


class RowLock:
    """A row of ``table`` locked by a transaction of another connection until :meth:`release`:
    a store call that writes the row waits for it."""

    def __init__(self, table: str, key: str) -> None:
        self._conn = psycopg.connect(URL)
        self._conn.execute(sql.SQL("SELECT 1 FROM {} WHERE key = %s FOR UPDATE").format(
            sql.Identifier(table)), (key,))

    def release(self) -> None:
        if not self._conn.closed:
            self._conn.commit()
            self._conn.close()


def _in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    """Run ``call()`` in a thread; the list gets its result or the exception it raised."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as err:  # kept for the test to look at
            outcome.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _write(store: PostgresStore, key: str) -> Any:
    return store.update(key, Patch(set={"n": b"1"}, last_seen=time.time()))


def test_a_statement_the_server_cancels_for_its_timeout_does_not_fail_the_next_calls(
        table: str) -> None:
    """The server answers a statement that waited past ``statement_timeout`` with an error:
    that call fails, but the server is reachable and the next calls are served."""
    _a_locked_write_fails_alone(_store(table, timeout=5.0, statement_timeout_ms=300), table)


def _a_locked_write_fails_alone(store: PostgresStore, table: str) -> None:
    """A write waiting on a row lock gets the server's statement timeout; the breaker stays
    closed, and the next calls are served without a probe. Closes ``store``."""
    try:
        _records(store, "locked", "free")
        lock = RowLock(table, "locked")
        try:
            with pytest.raises(StoreUnavailable, match="statement timeout"):
                _write(store, "locked")
        finally:
            lock.release()
        assert not store._breaker.down
        _slow_probe(store)
        assert store.load("free") is not None  # no 503: the server answered just now
        assert _write(store, "free")
    finally:
        store.close()


@pytest.mark.parametrize("timeout", [1.0, 2.5])
def test_from_urls_own_bounds_let_the_server_cancel_a_slow_statement_first(
        table: str, timeout: float) -> None:
    """A store from a URL with no ``statement_timeout`` of its own: a write waiting on a row
    lock is cancelled by the server before the client's own wait runs out, so the call gets
    the server's answer and the breaker stays closed. With both bounds equal, the client's
    wait often ran out first: the breaker tripped on a server that answers, and the next
    calls got 503 until a probe passed."""
    store = PostgresStore.from_url(URL, table=table, timeout=timeout, max_size=4)
    _a_locked_write_fails_alone(store, table)


def test_an_answer_after_another_call_timed_out_lets_the_next_calls_through(table: str) -> None:
    """One call gets no answer within the timeout (client side) and trips the breaker; a call
    that was waiting beside it then gets its answer: the server answers, and the calls that
    follow are served instead of failing until a probe passes."""
    timeout = 2.0
    store = _store(table, timeout=timeout, statement_timeout_ms=60_000)  # the client's bound
    try:
        _records(store, "first", "second", "free")
        first_lock, second_lock = RowLock(table, "first"), RowLock(table, "second")
        try:
            first, first_outcome = _in_thread(lambda: _write(store, "first"))
            time.sleep(timeout / 2)
            second, second_outcome = _in_thread(lambda: _write(store, "second"))
            first.join(timeout * 3)
            assert first_outcome and isinstance(first_outcome[0], StoreUnavailable)
            second_lock.release()  # the second call, still within its time, is answered
            second.join(timeout * 3)
            assert second_outcome and not isinstance(second_outcome[0], Exception)
        finally:
            first_lock.release()
            second_lock.release()
        _slow_probe(store)
        assert store.load("free") is not None  # no 503: the server answered just now
    finally:
        store.close()


CALLS = {
    "load": lambda store: store.load("k"),
    "update": lambda store: store.update("k", Patch(set={"n": b"1"})),
    "delete": lambda store: store.delete("k"),
    "sessions_of": lambda store: store.sessions_of("alice"),
    "delete_user": lambda store: store.delete_user("alice"),
    "all_sessions": lambda store: list(store.all_sessions()),
    "stats": lambda store: store.stats(),
    "acquire_lock": lambda store: store.acquire_lock("k", "token", 5.0),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_every_call_answered_while_another_tripped_the_breaker_closes_it(
        table: str, call: str) -> None:
    """Each kind of call (a session's, a user's, a listing's, a lock's) that gets the server's
    answer after another call tripped the breaker proves the server answers: the calls after
    it are served, not refused until a probe passes."""
    store = PostgresStore.from_url(URL, table=table, timeout=3.0, max_size=4)
    try:
        now = time.time()
        store.create("k", Record({"n": b"0"}, now, now, now + 3600, user="alice"))
        store.acquire_lock("other", "t", 1.0)  # the lock table exists
        pool: Any = store.pool
        getconn, connection = pool.getconn, pool.connection

        def trip() -> None:
            store._breaker.trip("another call timed out")

        def getconn_then_trip(*args: Any, **kwargs: Any) -> Any:
            conn = getconn(*args, **kwargs)
            trip()
            return conn

        def connection_then_trip(*args: Any, **kwargs: Any) -> Any:
            trip()
            return connection(*args, **kwargs)

        pool.getconn, pool.connection = getconn_then_trip, connection_then_trip
        try:
            CALLS[call](store)
        finally:
            del pool.getconn, pool.connection
        assert not store._breaker.down
    finally:
        store.close()


@pytest.mark.parametrize(("options", "warned"), [
    ("-c statement_timeout=5s", True),  # above the store's 3 s
    ("-c statement_timeout=3000", True),  # equal: the client's wait often runs out first
    ("-c statement_timeout=0", True),  # none at all
    ("-c statement_timeout=2s", False),
    ("-c statement_timeout='2400ms' -c lock_timeout=1s", False),
    ("-c lock_timeout=1s", False),  # satchel sets statement_timeout itself
])
def test_a_urls_own_statement_timeout_not_below_the_store_timeout_is_warned_of(
        options: str, warned: bool, caplog: pytest.LogCaptureFixture) -> None:
    """A URL's own ``statement_timeout`` is kept as given; one that does not leave the
    server's cancel time to come back before the client's wait runs out says so at start,
    with a value that would."""
    from satchel.stores.postgres.timed import pool_kwargs

    with caplog.at_level(logging.WARNING, logger="satchel"):
        kwargs = pool_kwargs({"options": options}, 3.0)
    warnings = [r.getMessage() for r in caplog.records if "statement_timeout" in r.getMessage()]
    assert bool(warnings) is warned, warnings
    if warned:
        assert "statement_timeout=2400" in warnings[0]
    if "statement_timeout" in options:
        assert "options" not in kwargs  # the URL's own is kept
    else:
        assert kwargs["options"] == f"{options} -c statement_timeout=2400"
