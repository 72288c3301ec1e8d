"""PostgresStore against a real PostgreSQL (SATCHEL_TEST_POSTGRES_URL), a fresh table per test."""

from __future__ import annotations

import gc
import hashlib
import itertools
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.services import IN_CI, cannot_test, closed_port

try:
    import psycopg
    import psycopg_pool  # noqa: F401 - the store needs it
except ImportError as err:  # under CI a missing driver fails the run instead of skipping it
    if IN_CI:
        raise ImportError("the PostgreSQL tests need pip install -e '.[postgres]'") from err
    pytest.skip(f"no PostgreSQL driver ({err})", allow_module_level=True)

from psycopg import pq, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from satchel.errors import ConfigError, StoreUnavailable
from satchel.store import Patch, Purgeable, Record, apply_patch
from satchel.stores.postgres import PostgresStore
from tests.clock import FakeClock
from tests.stores.contract import HOUR, PrefetchContract, StoreContract, make_record
from tests.stores.contract_expired import ExpiredLookupContract

DEFAULT_URLS = ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://127.0.0.1:5432/test")
ENV_URL = os.environ.get("SATCHEL_TEST_POSTGRES_URL")
SECRET_KEY = hashlib.sha256(b"a session id that must never be shown").hexdigest()
HOST = "127.0.0.1"


def _table() -> str:
    return f"satchel_test_{uuid.uuid4().hex[:16]}"


def _drop(pool: ConnectionPool[Any], table: str) -> None:
    with pool.connection() as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}, {}").format(
            sql.Identifier(table), sql.Identifier(table + "_locks")))


@pytest.fixture(scope="module")
def pg_url() -> str:
    """The first URL of the test server that accepts a connection."""
    errors = []
    for url in (ENV_URL,) if ENV_URL else DEFAULT_URLS:
        try:
            with psycopg.connect(url, connect_timeout=3):
                return url
        except psycopg.Error as err:
            errors.append(f"{url!r}: {err}")
    cannot_test("no PostgreSQL server for the tests (" + "; ".join(errors) + "); start one"
                 " (apt-get install postgresql) or set SATCHEL_TEST_POSTGRES_URL")


@pytest.fixture(scope="module")
def pool(pg_url: str) -> Iterator[ConnectionPool[Any]]:
    pool: ConnectionPool[Any] = ConnectionPool(pg_url, min_size=1, max_size=10, timeout=5,
                                               open=True, kwargs={"autocommit": True})
    yield pool
    pool.close()


@pytest.fixture
def table(pool: ConnectionPool[Any]) -> Iterator[str]:
    name = _table()
    yield name
    _drop(pool, name)


class TestPostgresStore(StoreContract, PrefetchContract, ExpiredLookupContract):
    @pytest.fixture
    def store(self, clock: FakeClock, pool: ConnectionPool[Any], table: str) -> PostgresStore:
        return PostgresStore(pool, table=table, clock=clock)

    def _row(self, store: PostgresStore, key: str) -> tuple[Any, ...] | None:
        query = sql.SQL("SELECT data, expires_at, user_id FROM {} WHERE key = %s").format(
            sql.Identifier(store.table))
        with store.pool.connection() as conn:
            row: tuple[Any, ...] | None = conn.execute(query, (key,)).fetchone()
        return row

    def test_is_purgeable(self, store: PostgresStore) -> None:
        assert isinstance(store, Purgeable)

    def test_schema_creation_is_idempotent(self, store: PostgresStore, clock: FakeClock) -> None:
        store.create("k", make_record(clock, a=b"1"))
        again = PostgresStore(store.pool, table=store.table, clock=clock)
        loaded = again.load("k")
        assert loaded is not None and loaded.fields == {"a": b"1"}

    def test_text_values_are_readable_json_strings(
        self, store: PostgresStore, clock: FakeClock
    ) -> None:
        store.create("k", make_record(clock, text=b'{"x":[1,2]}', raw=b"\xff\x00"))
        row = self._row(store, "k")
        assert row is not None
        assert row[0] == {"text": '{"x":[1,2]}', "raw": {"b64": "/wA="}}

    @pytest.mark.parametrize("durable", [False, True])
    def test_data_writes_commit_without_waiting_for_the_disk_unless_asked(
            self, store: PostgresStore, clock: FakeClock, durable: bool) -> None:
        store = PostgresStore(store.pool, table=store.table, durable_writes=durable, clock=clock)
        seen = f"{store.table}_seen"
        with store.pool.connection() as conn:  # a trigger notes each write's commit mode
            conn.execute(sql.SQL(
                "CREATE TABLE {seen} (op text, mode text);"
                " CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " INSERT INTO {seen} VALUES (TG_OP, current_setting('synchronous_commit'));"
                " RETURN NULL; END $$;"
                " CREATE TRIGGER note AFTER INSERT OR UPDATE OR DELETE ON {table}"
                " FOR EACH ROW EXECUTE FUNCTION {fn}()").format(
                    seen=sql.Identifier(seen), fn=sql.Identifier(f"{seen}_fn"),
                    table=sql.Identifier(store.table)))
        try:
            store.create("k", make_record(clock, a=b"1"))
            assert store.update("k", Patch(set={"a": b"2"}, last_seen=clock.now))
            store.delete("k")
            with store.pool.connection() as conn:
                modes = conn.execute(sql.SQL("SELECT op, mode FROM {}").format(
                    sql.Identifier(seen))).fetchall()
                server = conn.execute("SHOW synchronous_commit").fetchone()
            data_mode = server[0] if durable else "off"
            assert modes == [("INSERT", data_mode), ("UPDATE", data_mode),
                             ("DELETE", server[0])]
            assert server == ("on",)  # the server's setting, untouched by the store
        finally:
            with store.pool.connection() as conn:
                conn.execute(sql.SQL("DROP TABLE {seen}; DROP FUNCTION {fn} CASCADE").format(
                    seen=sql.Identifier(seen), fn=sql.Identifier(f"{seen}_fn")))

    def test_update_of_expired_row_leaves_it_untouched(
        self, store: PostgresStore, clock: FakeClock
    ) -> None:
        store.create("k", make_record(clock, ttl=10, a=b"1"))
        clock.advance(10)
        assert not store.update("k", Patch(set={"a": b"2"}, clear=True, user="eve",
                                           expires_at=clock.now + HOUR))
        assert not store.update("k", Patch(expires_at=clock.now + HOUR))
        assert self._row(store, "k") == ({"a": "1"}, clock.now, None)

    def test_many_fields_match_the_reference_semantics(
        self, store: PostgresStore, clock: FakeClock
    ) -> None:
        record = make_record(clock, **{f"k{i}": b"v" for i in range(2500)})
        store.create("k1", record)
        patches = [Patch(delete=frozenset(f"k{i}" for i in range(1200, 3700)),
                         set={f"n{i}": b"w" for i in range(1500)}, user="ann"),
                   Patch(clear=True, set={f"m{i}": b"x" for i in range(2100)},
                         delete=frozenset({"m0", "k1"}), user=""),
                   Patch(last_seen=clock.now + 1, permanent=True)]
        for patch in patches:
            assert store.update("k1", patch)
            apply_patch(record, patch)
            assert store.load("k1") == record

    def test_every_patch_shape_matches_the_reference_semantics(
        self, store: PostgresStore, clock: FakeClock
    ) -> None:
        shapes = list(itertools.product((False, True), repeat=7))
        for i in range(len(shapes)):
            record = Record({"a": b"1", "b": b"2"}, clock.now, clock.now, clock.now + HOUR,
                            False, "ann")
            store.create(f"live{i}", record)
            store.create(f"dead{i}", make_record(clock, ttl=10, a=b"1"))
        clock.advance(11)
        for i, (clear, delete, set_, last_seen, expires_at, permanent, user) in enumerate(shapes):
            patch = Patch(set={"b": b"3", "c": b"\xff"} if set_ else {},
                          delete=frozenset({"a", "b", "zz"}) if delete else frozenset(),
                          clear=clear, last_seen=clock.now + 1 if last_seen else None,
                          expires_at=clock.now + 2 * HOUR if expires_at else None,
                          permanent=True if permanent else None,
                          user=("bob" if i % 2 else "") if user else None)
            expected = store.load(f"live{i}")
            assert expected is not None
            assert store.update(f"live{i}", patch), patch
            apply_patch(expected, patch)
            assert store.load(f"live{i}") == expected, patch
            before = self._row(store, f"dead{i}")
            assert not store.update(f"dead{i}", patch), patch
            assert self._row(store, f"dead{i}") == before, patch

    @pytest.mark.parametrize("autocommit", [True, False])
    def test_each_operation_is_one_round_trip(
        self, pg_url: str, table: str, clock: FakeClock, autocommit: bool
    ) -> None:
        kwargs = {"autocommit": True} if autocommit else {}
        with ConnectionPool(pg_url, min_size=1, max_size=1, open=True, kwargs=kwargs) as pool:
            store = PostgresStore(pool, table=table, clock=clock)
            keys = iter(range(1000))
            calls: dict[str, Callable[[], object]] = {
                "create": lambda: store.create(f"k{next(keys)}", make_record(clock, a=b"1")),
                "load": lambda: store.load("k0"),
                "load (miss)": lambda: store.load("nope"),
                "update": lambda: store.update("k0", Patch(set={"b": b"2"}, last_seen=1.0)),
                "touch": lambda: store.update("k0", Patch(last_seen=clock.now)),
                "delete": lambda: store.delete("nope"),
                "purge_expired": store.purge_expired,
                "count_expired": store.count_expired,
            }
            for _ in range(8):  # past psycopg's prepare_threshold
                for call in calls.values():
                    call()
            for name, call in calls.items():
                assert _round_trips(pool, call) == 1, name
        if not autocommit:
            with ConnectionPool(pg_url, min_size=1, max_size=1, open=True) as other:
                with other.connection() as conn:
                    assert not conn.autocommit
                loaded = PostgresStore(other, table=table).load("k0")
            assert loaded is not None and loaded.fields == {"a": b"1", "b": b"2"}

    def test_purge_expired_in_bounded_batches(
        self, store: PostgresStore, clock: FakeClock
    ) -> None:
        for i in range(25):
            store.create(f"old{i}", make_record(clock, ttl=10, a=b"1"))
        for i in range(5):
            store.create(f"live{i}", make_record(clock, ttl=HOUR, a=b"1"))
        clock.advance(11)
        assert store.count_expired() == 25
        assert [store.purge_expired(batch=10) for _ in range(4)] == [10, 10, 5, 0]
        assert store.count_expired() == 0
        assert all(store.load(f"live{i}") is not None for i in range(5))

    def test_two_threads_updating_different_fields_both_survive(
        self, store: PostgresStore, clock: FakeClock
    ) -> None:
        store.create("k", make_record(clock, keep=b"0"))
        rounds = 100
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def work(name: str) -> None:
            try:
                barrier.wait()
                for i in range(rounds):
                    patch = Patch(set={name: str(i).encode(), f"{name}{i}": b"1"},
                                  delete=frozenset({f"{name}{i - 1}"}))
                    assert store.update("k", patch)
            except BaseException as err:  # pragma: no cover - reported below
                errors.append(err)

        threads = [threading.Thread(target=work, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        loaded = store.load("k")
        last = str(rounds - 1).encode()
        assert loaded is not None and loaded.fields == {
            "keep": b"0", "a": last, "b": last, f"a{rounds - 1}": b"1", f"b{rounds - 1}": b"1"}

    def test_repr_shows_the_server_not_keys(
        self, store: PostgresStore, clock: FakeClock, pg_url: str
    ) -> None:
        store.create(SECRET_KEY, make_record(clock))
        shown = repr(store)
        info = conninfo_to_dict(pg_url)
        port = f":{info['port']}" if info.get("port") else ""
        assert shown.startswith(f"<PostgresStore {info['host']}{port}/{info['dbname']} ")
        assert f"table={store.table!r}" in shown and SECRET_KEY not in shown

    def test_lost_connection_raises_store_unavailable_then_recovers(
        self, pg_url: str, table: str, clock: FakeClock
    ) -> None:
        with ConnectionPool(pg_url, min_size=1, max_size=1, timeout=5, open=True,
                            kwargs={"autocommit": True}) as pool:
            store = PostgresStore(pool, table=table, clock=clock)
            store.create(SECRET_KEY, make_record(clock, a=b"1"))
            with pool.connection() as conn:
                pid = conn.info.backend_pid
            with psycopg.connect(pg_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            with pytest.raises(StoreUnavailable, match=re.escape(store._where)) as info:
                store.load(SECRET_KEY)
            assert isinstance(info.value.__cause__, psycopg.OperationalError)
            assert SECRET_KEY not in str(info.value)
            assert store.load(SECRET_KEY) is not None  # the pool replaced the broken connection
            assert len(store._cursors) == 1  # the broken connection's cursor was dropped

    def test_pool_without_autocommit_commits_each_operation(
        self, pg_url: str, table: str, clock: FakeClock
    ) -> None:
        with ConnectionPool(pg_url, min_size=1, max_size=2, open=True) as pool:
            store = PostgresStore(pool, table=table, clock=clock)
            store.create("k", make_record(clock, a=b"1"))
            assert store.update("k", Patch(set={"b": b"2"}))
            with pytest.raises(KeyError):
                store.create("k", make_record(clock))
            assert store.update("k", Patch(delete=frozenset({"a"})))
        with ConnectionPool(pg_url, min_size=1, max_size=1, open=True) as other:
            loaded = PostgresStore(other, table=table, clock=clock).load("k")
        assert loaded is not None and loaded.fields == {"b": b"2"}

    # -- prefetch: a SELECT sent on a held connection, read later ----------------------------

    @staticmethod
    @contextmanager
    def one_connection(pg_url: str, table: str,
                       clock: FakeClock) -> Iterator[tuple[ConnectionPool[Any], PostgresStore]]:
        """A store on a pool of one autocommit connection, holding "k" = {"a": b"1"}."""
        with ConnectionPool(pg_url, min_size=1, max_size=1, open=True, timeout=5,
                            kwargs={"autocommit": True}) as pool:
            store = PostgresStore(pool, table=table, clock=clock)
            store.create("k", make_record(clock, a=b"1"))
            yield pool, store

    @staticmethod
    def prefetch_k(store: PostgresStore) -> None:
        pending = store.prefetch("k")
        assert pending is not None
        loaded = pending.result()
        assert loaded is not None and loaded.fields == {"a": b"1"}

    def test_a_prefetch_never_read_closes_its_connection(
            self, pg_url: str, table: str, clock: FakeClock) -> None:
        with self.one_connection(pg_url, table, clock) as (pool, store):
            with pool.connection() as conn:
                first = conn.info.backend_pid
            pending = store.prefetch("k")  # holds the pool's only connection
            assert pending is not None
            del pending
            gc.collect()
            loaded = store.load("k")  # no PoolTimeout: the connection went back, closed
            assert loaded is not None and loaded.fields == {"a": b"1"}
            with pool.connection() as conn:
                assert conn.info.backend_pid != first

    def test_a_prefetch_prepares_its_statement_again_when_a_reset_dropped_it(
            self, pg_url: str, table: str, clock: FakeClock) -> None:
        with self.one_connection(pg_url, table, clock) as (pool, store):
            for _ in range(3):
                self.prefetch_k(store)
                with pool.connection() as conn:
                    conn.execute("DEALLOCATE ALL")  # as a pool's reset with DISCARD ALL does
            def fetch() -> None:
                self.prefetch_k(store)

            assert _round_trips(pool, fetch) == 2  # the statement is gone: then load() answers
            assert _round_trips(pool, fetch) == 2  # prepared again, then sent
            assert _round_trips(pool, fetch) == 1

    def test_a_prefetch_does_not_wait_for_a_busy_pool(
            self, pg_url: str, table: str, clock: FakeClock) -> None:
        with self.one_connection(pg_url, table, clock) as (pool, store):
            with pool.connection():  # another request holds the only connection
                started = time.monotonic()
                assert store.prefetch("k") is None
                assert time.monotonic() - started < 1  # not the pool's 5 s
            self.prefetch_k(store)

    def test_no_prefetch_on_a_pool_without_autocommit(
            self, pg_url: str, table: str, clock: FakeClock) -> None:
        with ConnectionPool(pg_url, min_size=1, max_size=1, open=True) as pool:
            store = PostgresStore(pool, table=table, clock=clock)
            assert store.prefetch("k") is None  # load() switches autocommit for its statement

    def test_a_failed_prefetch_reports_as_load_does(
            self, store: PostgresStore, clock: FakeClock) -> None:
        store.create(SECRET_KEY, make_record(clock, a=b"1"))
        pending = store.prefetch(SECRET_KEY)  # prepared on this connection
        assert pending is not None and pending.result() is not None
        _drop(store.pool, store.table)
        pending = store.prefetch(SECRET_KEY)
        with pytest.raises(StoreUnavailable, match="does not exist") as info:
            pending.result() if pending is not None else store.load(SECRET_KEY)
        assert SECRET_KEY not in str(info.value)


def _round_trips(pool: ConnectionPool[Any], call: Callable[[], object]) -> int:
    """How many times the server said ReadyForQuery during ``call`` (libpq's trace)."""
    with tempfile.TemporaryFile("w+") as out:
        fd = os.dup(out.fileno())  # libpq writes through its own FILE on this copy
        with pool.connection() as conn:
            conn.pgconn.trace(fd)
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            call()
        finally:
            with pool.connection() as conn:
                conn.pgconn.untrace()  # flushes the trace
            os.close(fd)
        out.seek(0)
        return sum(line.startswith("B") and "\tReadyForQuery" in line for line in out)


def test_pool_with_another_row_factory(pg_url: str, table: str) -> None:
    kwargs = {"autocommit": True, "row_factory": dict_row}
    with ConnectionPool(pg_url, min_size=1, max_size=2, open=True, kwargs=kwargs) as pool:
        store = PostgresStore(pool, table=table)
        store.create("k", Record({"a": b"1"}, 0.0, 0.0, 9e12, True, "ann"))
        assert store.load("k") == Record({"a": b"1"}, 0.0, 0.0, 9e12, True, "ann")
        assert store.count_expired() == 0


def test_create_schema_false_on_a_missing_table_names_it(
    pool: ConnectionPool[Any], table: str
) -> None:
    store = PostgresStore(pool, table=table, create_schema=False)
    calls: list[Callable[[], object]] = [
        lambda: store.load(SECRET_KEY), lambda: store.create(SECRET_KEY, make_record(FakeClock())),
        lambda: store.update(SECRET_KEY, Patch(set={"a": b"1"})), store.count_expired]
    for call in calls:
        with pytest.raises(StoreUnavailable, match=f"table '{table}' does not exist") as info:
            call()
        assert isinstance(info.value.__cause__, psycopg.errors.UndefinedTable)
        assert SECRET_KEY not in str(info.value)


def test_the_lock_table_is_made_on_first_use_or_named_when_missing(
    pool: ConnectionPool[Any], table: str
) -> None:
    PostgresStore(pool, table=table)  # a table from before session locks: no lock table
    managed = PostgresStore(pool, table=table, create_schema=False)
    with pytest.raises(StoreUnavailable, match=f"lock table '{table}_locks'.*LOCK_SCHEMA") as info:
        managed.acquire_lock("k", "t", 30)
    assert isinstance(info.value.__cause__, psycopg.errors.UndefinedTable)
    store = PostgresStore(pool, table=table)
    assert store.acquire_lock("k", "t", 30)
    assert not managed.acquire_lock("k", "u", 30)
    assert managed.release_lock("k", "t")
    with pool.connection() as conn:
        persistence = conn.execute("SELECT relpersistence FROM pg_class WHERE oid = %s::regclass",
                                   (table + "_locks",)).fetchone()
    assert persistence == ("u",)  # unlogged: a server crash frees every lock


def test_create_schema_false_uses_a_table_made_elsewhere(
    pool: ConnectionPool[Any], table: str
) -> None:
    PostgresStore(pool, table=table)
    store = PostgresStore(pool, table=table, create_schema=False)
    store.create("k", Record({"a": b"1"}, 0.0, 0.0, 9e12))
    assert store.load("k") == Record({"a": b"1"}, 0.0, 0.0, 9e12)


def test_schema_qualified_table(pool: ConnectionPool[Any]) -> None:
    schema = f"satchel_test_{uuid.uuid4().hex[:12]}"
    with pool.connection() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        store = PostgresStore(pool, table=f"{schema}.sessions")
        store.create("k", Record({"a": b"1"}, 0.0, 0.0, 9e12))
        assert store.load("k") is not None
    finally:
        with pool.connection() as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.mark.parametrize("table", ["", "1abc", "a-b", "a b", 'x"; DROP TABLE y; --', "a.b.c",
                                   "a" * 49, "naïve", ".a", "a."])
def test_bad_table_name_is_a_config_error(table: str) -> None:
    pool: ConnectionPool[Any] = ConnectionPool("postgresql://127.0.0.1/x", open=False)
    with pytest.raises(ConfigError, match="not a plain identifier"):
        PostgresStore(pool, table=table)
    with pytest.raises(ValueError, match="table"):
        PostgresStore(pool, table=table)


def test_closed_port_starts_and_every_call_raises_store_unavailable(
        caplog: pytest.LogCaptureFixture) -> None:
    port = closed_port()
    started = time.monotonic()
    store = PostgresStore.from_url(f"postgresql://postgres:s3cret@{HOST}:{port}/test",
                                   timeout=1)
    try:
        assert time.monotonic() - started < 5
        [line] = [r.getMessage() for r in caplog.records if r.name == "satchel"]
        assert "cannot reach the server at start" in line and "s3cret" not in line
        with pytest.raises(StoreUnavailable, match=f"PostgresStore {HOST}:{port}/test") as info:
            store.load(SECRET_KEY)
        assert isinstance(info.value.__cause__, psycopg.OperationalError)
        assert "s3cret" not in str(info.value)
    finally:
        store.close()


def test_closed_port_without_schema_fails_on_first_use() -> None:
    port = closed_port()
    store = PostgresStore.from_url(f"postgres://{HOST}:{port}/test", timeout=0.5,
                                   create_schema=False)
    try:
        calls: list[Callable[[], object]] = [
            lambda: store.load(SECRET_KEY), lambda: store.delete(SECRET_KEY),
            lambda: store.update(SECRET_KEY, Patch(expires_at=1.0)), store.purge_expired]
        assert store.prefetch(SECRET_KEY) is None  # the engine then loads, which reports it
        for call in calls:
            with pytest.raises(StoreUnavailable, match=f"{HOST}:{port}") as info:
                call()
            assert isinstance(info.value.__cause__, psycopg.OperationalError)
            assert SECRET_KEY not in str(info.value)
    finally:
        store.close()


def test_from_url_works(pg_url: str, table: str) -> None:
    store = PostgresStore.from_url(pg_url, table=table, max_size=2)
    try:
        assert store.pool.max_size == 2
        store.create("k", Record({"a": b"1"}, 0.0, 0.0, 9e12))
        assert store.load("k") is not None
    finally:
        store.close()


@pytest.mark.parametrize("url", ["postgresql://", "postgres:///test", "postgresql://:s3cret@/x"])
def test_from_url_without_host_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="no host") as info:
        PostgresStore.from_url(url)
    assert "s3cret" not in str(info.value)


def test_from_url_rejects_other_schemes_and_bad_urls() -> None:
    with pytest.raises(ConfigError, match="unknown scheme"):
        PostgresStore.from_url("mysql://127.0.0.1/x")
    with pytest.raises(ConfigError, match="PostgreSQL URL"):
        PostgresStore.from_url("postgresql://127.0.0.1/x?nosuchoption=1")



def test_user_without_create_rights(pg_url: str, pool: ConnectionPool[Any]) -> None:
    role = schema = f"satchel_test_{uuid.uuid4().hex[:12]}"
    table = f"{schema}.sessions"
    try:
        with pool.connection() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    except psycopg.errors.InsufficientPrivilege:
        pytest.skip("the test user cannot create roles")
    info = conninfo_to_dict(pg_url)
    info["user"] = role
    try:
        with pool.connection() as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {0}; GRANT USAGE ON SCHEMA {0} TO {1}").format(
                sql.Identifier(schema), sql.Identifier(role)))
        with ConnectionPool(kwargs=info, min_size=1, open=True) as limited:
            with pytest.raises(ConfigError, match=f"'{table}': cannot create it"):
                PostgresStore(limited, table=table)
            PostgresStore(pool, table=table)
            with pool.connection() as conn:
                conn.execute(sql.SQL("GRANT ALL ON {}.sessions TO {}").format(
                    sql.Identifier(schema), sql.Identifier(role)))
            store = PostgresStore(limited, table=table)  # the table exists: no DDL needed
            store.create("k", Record({"a": b"1"}, 0.0, 0.0, 9e12))
            assert store.load("k") is not None
    finally:
        with pool.connection() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
