"""PostgresStore on a table made by the previous schema (no ``device`` column): the store
adds what is missing, once, with several processes starting at once; with
``create_schema=False``, or without the rights to change it, it says what SQL to run."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.services import cannot_test

try:
    import psycopg
    import psycopg_pool  # noqa: F401 - the store needs it
except ImportError:
    cannot_test("the PostgreSQL tests need pip install -e '.[postgres]'")

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from satchel.errors import ConfigError, StoreUnavailable
from satchel.store import Record
from satchel.stores.postgres import PostgresStore
from tests.clock import FakeClock
from tests.stores.contract_users import keys, login
from tests.stores.test_postgres import DEFAULT_URLS, ENV_URL

# The table the store made before sessions had a device.
OLD_SCHEMA = """
CREATE TABLE {table} (
    key        text PRIMARY KEY,
    data       jsonb NOT NULL DEFAULT '{{}}',
    created_at double precision NOT NULL,
    last_seen  double precision NOT NULL,
    expires_at double precision NOT NULL,
    permanent  boolean NOT NULL DEFAULT false,
    user_id    text
);
CREATE INDEX {expires_index} ON {table} (expires_at);
CREATE INDEX {user_index} ON {table} (user_id) WHERE user_id IS NOT NULL;
INSERT INTO {table} (key, data, created_at, last_seen, expires_at, user_id)
    VALUES ('old', '{{"a": "1"}}', 1799999000, 1799999000, 9e12, 'alice');
"""


@pytest.fixture(scope="module")
def pool() -> Iterator[ConnectionPool[Any]]:
    url = ENV_URL or DEFAULT_URLS[0]
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as err:
        cannot_test(f"no PostgreSQL server for the tests at {url!r} ({err})")
    with ConnectionPool(url, min_size=1, max_size=10, timeout=5, open=True,
                        kwargs={"autocommit": True}) as pool:
        yield pool


@pytest.fixture
def schema(pool: ConnectionPool[Any]) -> Iterator[str]:
    """A schema of its own, dropped afterwards with everything in it."""
    name = f"satchel_test_{uuid.uuid4().hex[:12]}"
    with pool.connection() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    with pool.connection() as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def old_table(pool: ConnectionPool[Any], schema: str) -> str:
    """A table of the previous schema in ``schema``, holding alice's session "old"."""
    with pool.connection() as conn:
        conn.execute(sql.SQL(OLD_SCHEMA).format(
            table=sql.Identifier(schema, "sessions"),
            expires_index=sql.Identifier("sessions_expires_at"),
            user_index=sql.Identifier("sessions_user_id")))
    return f"{schema}.sessions"


def columns(pool: ConnectionPool[Any], table: str) -> list[str]:
    with pool.connection() as conn:
        rows = conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass"
                            " AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                            (table,)).fetchall()
    return [row[0] for row in rows]


def test_stores_starting_at_once_upgrade_an_old_table_once(
        pool: ConnectionPool[Any], schema: str) -> None:
    table = old_table(pool, schema)
    clock = FakeClock()
    start = threading.Barrier(6)
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            start.wait()
            stores.append(PostgresStore(pool, table=table, clock=clock))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(stores) == 6
    assert columns(pool, table)[-1] == "device"
    store = stores[0]
    loaded = store.load("old")
    assert loaded is not None and loaded.fields == {"a": b"1"} and loaded.device is None
    login(store, clock, "new", "alice", device="Firefox")
    loaded = stores[1].load("new")
    assert loaded is not None and loaded.device == "Firefox"
    assert keys(stores[2].sessions_of("alice")) == ["old", "new"]


def test_an_old_table_without_its_user_index_gets_it(
        pool: ConnectionPool[Any], schema: str) -> None:
    table = old_table(pool, schema)
    with pool.connection() as conn:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, "sessions_user_id")))
    PostgresStore(pool, table=table)
    with pool.connection() as conn:
        found = conn.execute("SELECT to_regclass(%s)", (f"{schema}.sessions_user_id",)).fetchone()
    assert found is not None and found[0] is not None


def test_create_schema_false_on_an_old_table_names_the_sql_to_run(
        pool: ConnectionPool[Any], schema: str) -> None:
    table = old_table(pool, schema)
    store = PostgresStore(pool, table=table, create_schema=False)
    calls = [lambda: store.load("old"), lambda: store.sessions_of("alice"),
             lambda: store.create("k", Record({}, 0.0, 0.0, 9e12, device="x"))]
    for call in calls:
        expected = f'ALTER TABLE "{schema}"."sessions" ADD COLUMN IF NOT EXISTS device text'
        with pytest.raises(StoreUnavailable, match=re.escape(expected)) as info:
            call()
        assert isinstance(info.value.__cause__, psycopg.errors.UndefinedColumn)
    assert "device" not in columns(pool, table)  # create_schema=False: no DDL


def test_a_user_who_may_not_alter_an_old_table_is_told_the_sql(
        pool: ConnectionPool[Any], schema: str) -> None:
    table = old_table(pool, schema)
    role = f"{schema}_user"
    try:
        with pool.connection() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    except psycopg.errors.InsufficientPrivilege:
        pytest.skip("the test user cannot create roles")
    info = conninfo_to_dict(pool.conninfo)
    info["user"] = role
    try:
        with pool.connection() as conn:
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {0} TO {1};"
                                 " GRANT ALL ON {0}.sessions TO {1}").format(
                sql.Identifier(schema), sql.Identifier(role)))
        with ConnectionPool(kwargs=info, min_size=1, open=True) as limited:
            with pytest.raises(ConfigError, match=f"'{table}': cannot upgrade it .*run: ALTER"
                                                  " TABLE .* ADD COLUMN IF NOT EXISTS device"):
                PostgresStore(limited, table=table)
        PostgresStore(pool, table=table)  # its owner upgrades it
        with ConnectionPool(kwargs=info, min_size=1, open=True) as limited:
            store = PostgresStore(limited, table=table)  # up to date: no DDL needed
            store.create("k", Record({}, 0.0, 0.0, 9e12, user="bob", device="phone"))
            assert [info.device for info in store.sessions_of("bob")] == ["phone"]
    finally:
        with pool.connection() as conn:
            conn.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(sql.Identifier(role)))
