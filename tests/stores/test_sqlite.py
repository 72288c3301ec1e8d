from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from satchel.errors import ConfigError, StoreUnavailable
from satchel.store import Patch, Record
from satchel.stores.sqlite import SQLiteStore
from tests.clock import FakeClock
from tests.stores.contract import StoreContract, make_record


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def store(self, clock: FakeClock, tmp_path: Path) -> SQLiteStore:
        return SQLiteStore(tmp_path / "sessions.sqlite3", clock=clock)

    def test_schema_creation_is_idempotent(self, store: SQLiteStore, clock: FakeClock) -> None:
        store.create("k", make_record(clock, a=b"1"))
        again = SQLiteStore(store.path, clock=clock)
        loaded = again.load("k")
        assert loaded is not None and loaded.fields == {"a": b"1"}

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
