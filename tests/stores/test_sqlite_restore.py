"""SQLiteStore when a backup is put in place of its file while the app runs, beside the old
file's -wal: SQLite would apply that WAL to the restored file (sessions written after the
backup come back, or the file is corrupt), so the store answers StoreUnavailable (503),
loudly, until the -wal and -shm are removed, then opens the restored file.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from satchel.errors import StoreUnavailable
from satchel.store import Patch, Record
from satchel.stores.sqlite import SQLiteStore

FOREVER = 9e12


def record(value: bytes) -> Record:
    return Record({"x": value}, 0.0, 0.0, FOREVER)


def backup(path: str, to: Path) -> None:
    with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(to)) as target:
        source.backup(target)


@pytest.fixture
def path(tmp_path: Path) -> str:
    folder = tmp_path / "data"
    folder.mkdir()
    return str(folder / "sessions.sqlite3")


def restored_beside_the_old_wal(path: str, tmp_path: Path,
                                stores: list[SQLiteStore]) -> None:
    """Sessions "before" (in the backup) and "after" (written after it, in the WAL), then
    the backup put in place of the file with os.replace, the -wal and -shm left."""
    stores[0].create("before", record(b"1"))
    copy = tmp_path / "backup.sqlite3"
    backup(path, copy)
    stores[0].create("after", record(b"2"))
    stores[0].update("before", Patch(set={"x": b"changed after the backup"}))
    for store in stores:
        assert store.load("before") is not None  # each has a connection to the old file
    os.replace(copy, path)
    assert os.path.exists(path + "-wal")


@pytest.mark.parametrize("write", ["create", "update", "delete"])
def test_a_file_put_beside_the_old_wal_gets_503_not_the_old_wal(
        path: str, tmp_path: Path, write: str, caplog: pytest.LogCaptureFixture) -> None:
    first, second = SQLiteStore(path), SQLiteStore(path)  # as two processes: two connections
    restored_beside_the_old_wal(path, tmp_path, [first, second])
    with caplog.at_level(logging.ERROR, logger="satchel"), pytest.raises(StoreUnavailable):
        if write == "create":
            first.create("new", record(b"3"))
        elif write == "update":
            first.update("before", Patch(set={"x": b"3"}))
        else:
            first.delete("before")
    assert "the -wal next to it is still the old file's" in caplog.text
    assert "remove them" in caplog.text
    with pytest.raises(StoreUnavailable):  # the other store, and again: until it is removed
        second.update("before", Patch(set={"x": b"3"}))
    with pytest.raises(StoreUnavailable):
        first.load("before")
    for suffix in ("-wal", "-shm"):
        os.remove(path + suffix)
    first.create("new", record(b"3"))
    assert second.update("before", Patch(set={"y": b"4"}))
    fresh = SQLiteStore(path)
    assert fresh.load("after") is None  # the backup as it was: not the old file's WAL
    loaded = fresh.load("before")
    assert loaded is not None and loaded.fields == {"x": b"1", "y": b"4"}
    assert fresh.load("new") is not None
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_a_file_put_in_place_with_the_old_wal_removed_opens_at_once(
        path: str, tmp_path: Path) -> None:
    first, second = SQLiteStore(path), SQLiteStore(path)
    restored_beside_the_old_wal(path, tmp_path, [first, second])
    for suffix in ("-wal", "-shm"):
        os.remove(path + suffix)
    assert first.update("before", Patch(set={"x": b"3"}))
    assert second.update("before", Patch(set={"y": b"4"}))  # a write checks the file first
    fresh = SQLiteStore(path)
    assert fresh.load("after") is None
    loaded = fresh.load("before")
    assert loaded is not None and loaded.fields == {"x": b"3", "y": b"4"}
