from __future__ import annotations

import multiprocessing
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from satchel.errors import ConfigError, StoreUnavailable
from satchel.store import Patch, Record, Updated
from satchel.stores.sqlite import SQLiteStore
from satchel.stores.sqlite.users import SESSIONS_OF
from tests.clock import FakeClock
from tests.stores.contract import StoreContract, make_record
from tests.stores.contract_expired import ExpiredLookupContract
from tests.stores.contract_users import keys, login

# The schema files were made with before sessions had a device and an index by user.
OLD_SCHEMA = """
CREATE TABLE satchel_sessions (
    key        TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    last_seen  REAL NOT NULL,
    expires_at REAL NOT NULL,
    permanent  INTEGER NOT NULL DEFAULT 0,
    user       TEXT
) WITHOUT ROWID;
CREATE INDEX satchel_sessions_expires_at ON satchel_sessions (expires_at);
CREATE TABLE satchel_fields (
    key   TEXT NOT NULL REFERENCES satchel_sessions (key) ON DELETE CASCADE,
    name  TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (key, name)
) WITHOUT ROWID;
CREATE TABLE satchel_locks (
    key        TEXT PRIMARY KEY,
    token      TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
"""


def old_file(path: Path, clock: FakeClock) -> None:
    """An SQLite file of the old schema holding alice's session "old" (a field a=1)."""
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(OLD_SCHEMA)
        conn.execute("INSERT INTO satchel_sessions VALUES ('old', ?, ?, ?, 0, 'alice')",
                     (clock.now - 60, clock.now - 60, clock.now + 3600))
        conn.execute("INSERT INTO satchel_fields VALUES ('old', 'a', x'31')")
        conn.commit()


class TestSQLiteStore(StoreContract, ExpiredLookupContract):
    @pytest.fixture
    def store(self, clock: FakeClock, tmp_path: Path) -> SQLiteStore:
        return SQLiteStore(tmp_path / "sessions.sqlite3", clock=clock)

    def test_schema_creation_is_idempotent(self, store: SQLiteStore, clock: FakeClock) -> None:
        store.create("k", make_record(clock, a=b"1"))
        again = SQLiteStore(store.path, clock=clock)
        loaded = again.load("k")
        assert loaded is not None and loaded.fields == {"a": b"1"}

    def test_a_users_sessions_are_read_through_the_user_index_without_a_sort(
            self, store: SQLiteStore) -> None:
        with closing(sqlite3.connect(store.path)) as conn:
            plan = " ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + SESSIONS_OF,
                                                             ("alice", 0.0)))
        assert "satchel_sessions_user" in plan and "TEMP B-TREE" not in plan, plan

    def test_a_file_of_the_previous_schema_is_upgraded(
            self, tmp_path: Path, clock: FakeClock) -> None:
        path = tmp_path / "old.sqlite3"
        old_file(path, clock)
        store = SQLiteStore(path, clock=clock)
        loaded = store.load("old")
        assert loaded is not None and loaded.fields == {"a": b"1"}
        assert loaded.user == "alice" and loaded.device is None
        login(store, clock, "new", "alice", device="Firefox")
        loaded = store.load("new")
        assert loaded is not None and loaded.device == "Firefox"
        assert keys(store.sessions_of("alice")) == ["old", "new"]
        with closing(sqlite3.connect(path)) as conn:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert "satchel_sessions_user" in names
        SQLiteStore(path, clock=clock).close()  # opening it again changes nothing
        assert keys(store.sessions_of("alice")) == ["old", "new"]

    def test_an_update_that_finds_its_session_expired_leaves_the_rows_as_they_were(
            self, store: SQLiteStore, clock: FakeClock) -> None:
        store.create("k", make_record(clock, ttl=10, a=b"1"))
        clock.advance(10)
        assert store.update("k", Patch(set={"a": b"2"})) == Updated.GONE
        assert store.update("k", Patch(set={"a": b"2", "b": b"3"})) == Updated.GONE
        assert store.update("k", Patch(delete=frozenset({"a"}))) == Updated.GONE
        assert store.update("k", Patch(set={"b": b"3"}, last_seen=clock.now)) == Updated.GONE
        with closing(sqlite3.connect(store.path)) as conn:
            assert conn.execute("SELECT key, name, value FROM satchel_fields").fetchall() == [
                ("k", "a", b"1")]
            assert conn.execute("SELECT last_seen FROM satchel_sessions").fetchall() == [
                (clock.now - 10,)]

    def test_uses_wal(self, store: SQLiteStore) -> None:
        with sqlite3.connect(store.path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    def test_a_missing_folder_makes_calls_raise_store_unavailable(self, tmp_path: Path) -> None:
        store = SQLiteStore(tmp_path / "no-such-dir" / "s.sqlite3")  # down, not an error
        with pytest.raises(StoreUnavailable, match="no-such-dir"):
            store.load("k")

    def test_not_a_database_is_a_config_error(self, tmp_path: Path) -> None:
        path = tmp_path / "junk.sqlite3"
        path.write_bytes(b"this is not an sqlite file" * 100)
        with pytest.raises(ConfigError, match="not an SQLite database"):
            SQLiteStore(path)


def _open_old_file(path: str, name: str, start: Any) -> None:
    start.wait(30)
    store = SQLiteStore(path)
    store.create(name, Record({}, 0.0, 0.0, 9e12, user="alice", device=f"device {name}"))


def test_processes_opening_an_old_file_at_once_upgrade_it_once(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old_file(path, FakeClock())
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(4)
    procs = [ctx.Process(target=_open_old_file, args=(str(path), f"p{n}", start))
             for n in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    store = SQLiteStore(path)
    devices = {info.key: info.device for info in store.sessions_of("alice")}
    assert devices == {"old": None, **{f"p{n}": f"device p{n}" for n in range(4)}}


def _writer(path: str, name: str, count: int) -> None:
    store = SQLiteStore(path)
    for i in range(count):
        assert store.update("shared", Patch(set={f"{name}{i}": b"1"}))


def test_processes_sharing_the_file_do_not_lose_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    store = SQLiteStore(path)
    store.create("shared", Record({}, 0.0, 0.0, 9e12))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, f"p{n}-", 40)) for n in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    loaded = store.load("shared")
    assert loaded is not None and len(loaded.fields) == 120
