"""SQLiteStore when its file goes away: on the real filesystem, with real threads.

A write is never acknowledged into a file that is no longer the one at the
store's path (folder removed or moved, file replaced, its -wal or -shm
removed); the store answers StoreUnavailable while the path is gone, and
reopens, with its schema, once the path is usable again.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from satchel.errors import StoreUnavailable
from satchel.store import Patch, Record, Updated
from satchel.stores.sqlite import SQLiteStore
from tests.clock import FakeClock

FOREVER = 9e12


def record(**fields: bytes) -> Record:
    return Record(dict(fields), 0.0, 0.0, FOREVER)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def store(folder: Path) -> SQLiteStore:
    store = SQLiteStore(folder / "sessions.sqlite3", clock=FakeClock())
    store.create("before", record(a=b"1"))
    return store


def fresh_load(path: str, key: str) -> Record | None:
    """What a restarted app would read."""
    fresh = SQLiteStore(path, clock=FakeClock())
    try:
        return fresh.load(key)
    finally:
        fresh.close()


def test_a_write_into_a_removed_folder_is_not_acknowledged(store: SQLiteStore,
                                                           folder: Path) -> None:
    shutil.rmtree(folder)
    with pytest.raises(StoreUnavailable):
        store.create("lost", record(a=b"1"))
    with pytest.raises(StoreUnavailable):
        store.update("before", Patch(set={"a": b"2"}))
    with pytest.raises(StoreUnavailable):
        store.delete("before")


def test_the_store_reopens_with_its_schema_when_the_folder_is_back(store: SQLiteStore,
                                                                   folder: Path) -> None:
    shutil.rmtree(folder)
    with pytest.raises(StoreUnavailable):
        store.create("lost", record(a=b"1"))
    folder.mkdir()
    store.create("after", record(b=b"2"))
    assert store.load("after") is not None
    loaded = fresh_load(store.path, "after")
    assert loaded is not None and loaded.fields == {"b": b"2"}


def test_a_folder_moved_away_and_back_keeps_its_sessions(store: SQLiteStore,
                                                         folder: Path) -> None:
    away = folder.with_name("away")
    folder.rename(away)
    with pytest.raises(StoreUnavailable):
        store.update("before", Patch(set={"a": b"during"}))
    with pytest.raises(StoreUnavailable):
        store.load("before")
    away.rename(folder)
    assert store.update("before", Patch(set={"b": b"after"}))
    loaded = fresh_load(store.path, "before")
    assert loaded is not None and loaded.fields == {"a": b"1", "b": b"after"}


def test_a_replaced_file_is_reopened(store: SQLiteStore, folder: Path) -> None:
    path = store.path
    copy = str(folder / "restored.sqlite3")
    with sqlite3.connect(path) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    source.close()
    target.close()
    store.create("gone-with-the-old-file", record(x=b"1"))
    os.replace(copy, path)  # restoring a backup: the file, without the old -wal and -shm
    for suffix in ("-wal", "-shm"):
        os.remove(path + suffix)
    store.create("after", record(b=b"2"))  # rolled back in the old file, done in the new one
    assert store.load("gone-with-the-old-file") is None  # reads the file now at the path
    loaded = fresh_load(path, "after")
    assert loaded is not None and loaded.fields == {"b": b"2"}
    assert fresh_load(path, "before") is not None


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_a_removed_wal_or_shm_is_noticed(store: SQLiteStore, suffix: str) -> None:
    os.remove(store.path + suffix)
    store.create("after", record(b=b"2"))  # on a connection that has the files at the path
    loaded = fresh_load(store.path, "after")
    assert loaded is not None and loaded.fields == {"b": b"2"}


def settle(*folders: Path) -> None:
    """Make the folders look as if their entries last changed an hour ago: the store then
    checks its files with one stat of their folder, until the folder changes."""
    past = time.time() - 3600
    for folder in folders:
        os.utime(folder, (past, past))


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_a_removed_wal_or_shm_is_noticed_in_a_folder_unchanged_for_long(
        store: SQLiteStore, folder: Path, suffix: str) -> None:
    settle(folder)
    assert store.update("before", Patch(set={"a": b"2"}))  # a check that finds it settled
    assert store.update("before", Patch(set={"a": b"3"}))
    os.remove(store.path + suffix)
    store.create("after", record(b=b"2"))
    loaded = fresh_load(store.path, "after")
    assert loaded is not None and loaded.fields == {"b": b"2"}


def test_a_file_replaced_in_a_folder_unchanged_for_long_is_reopened(
        store: SQLiteStore, folder: Path) -> None:
    path = store.path
    copy = folder.with_name("restored.sqlite3")  # made outside: the folder stays settled
    with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    settle(folder)
    store.create("gone-with-the-old-file", record(x=b"1"))
    os.replace(copy, path)  # restoring a backup: the file, without the old -wal and -shm
    for suffix in ("-wal", "-shm"):
        os.remove(path + suffix)
    store.create("after", record(b=b"2"))
    assert store.load("gone-with-the-old-file") is None
    loaded = fresh_load(path, "after")
    assert loaded is not None and loaded.fields == {"b": b"2"}


def test_a_folder_moved_away_and_back_when_unchanged_for_long_keeps_its_sessions(
        store: SQLiteStore, folder: Path) -> None:
    settle(folder, folder.parent)
    assert store.update("before", Patch(set={"a": b"2"}))
    away = folder.with_name("away")
    folder.rename(away)
    with pytest.raises(StoreUnavailable):
        store.update("before", Patch(set={"a": b"during"}))
    away.rename(folder)
    assert store.update("before", Patch(set={"b": b"after"}))
    loaded = fresh_load(store.path, "before")
    assert loaded is not None and loaded.fields == {"a": b"2", "b": b"after"}


def test_a_replaced_file_behind_a_symlinked_path_is_reopened(tmp_path: Path) -> None:
    """The database path is a link to a file in another folder, where its -wal and -shm
    are: a file replaced there is noticed although the link's folder never changes."""
    real, links = tmp_path / "real", tmp_path / "links"
    real.mkdir()
    links.mkdir()
    (links / "sessions.sqlite3").symlink_to(real / "sessions.sqlite3")
    path = str(links / "sessions.sqlite3")
    store = SQLiteStore(path, clock=FakeClock())
    store.create("before", record(a=b"1"))
    copy = tmp_path / "restored.sqlite3"
    with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    settle(real, links)
    store.create("gone-with-the-old-file", record(x=b"1"))
    os.replace(copy, real / "sessions.sqlite3")
    for suffix in ("-wal", "-shm"):
        os.remove(str(real / "sessions.sqlite3") + suffix)
    store.create("after", record(b=b"2"))
    assert store.load("gone-with-the-old-file") is None
    loaded = fresh_load(path, "after")
    assert loaded is not None and loaded.fields == {"b": b"2"}
    store.close()


def while_writing(writer: Callable[[str], None], names: list[str], stop: threading.Event,
                  event: Callable[[], None]) -> None:
    """``writer(name)`` in a thread per name, until ``stop`` is set: 0.2 s after they start,
    ``event()``, then 0.3 s more."""
    threads = [threading.Thread(target=writer, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.2)
        event()
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)


def remove_under_writers(folder: Path) -> None:
    """``rm -rf folder``, again until it is gone: a writer that finds the database gone
    between rmtree's listing and its rmdir creates a new one in the folder (ENOTEMPTY)."""
    for _ in range(100):
        try:
            shutil.rmtree(folder)
            return
        except OSError:
            if not folder.exists():
                return
    raise AssertionError(f"{folder} kept being written into")


def test_no_acknowledged_write_is_lost_under_threads(folder: Path) -> None:
    """Writers on their own connections while the folder is removed and recreated: every
    write started after the removal and acknowledged is in the file a restarted app opens."""
    path = str(folder / "sessions.sqlite3")
    store = SQLiteStore(path, clock=FakeClock())
    removed_at = [float("inf")]
    acknowledged: list[tuple[float, str]] = []
    failures = [0]
    stop = threading.Event()

    def writer(name: str) -> None:
        count = 0
        while not stop.is_set():
            key = f"{name}-{count}"
            count += 1
            started = time.monotonic()
            try:
                store.create(key, record(v=key.encode()))
            except StoreUnavailable:
                failures[0] += 1
                continue
            acknowledged.append((started, key))

    def remove_and_remake() -> None:
        remove_under_writers(folder)
        removed_at[0] = time.monotonic()
        time.sleep(0.2)
        folder.mkdir()

    while_writing(writer, [f"w{n}" for n in range(4)], stop, remove_and_remake)
    after = [key for at, key in acknowledged if at > removed_at[0]]
    assert after, "no write was acknowledged once the folder was back"
    assert failures[0] > 0, "no write failed while the folder was gone"
    fresh = SQLiteStore(path, clock=FakeClock())
    lost = [key for key in after if fresh.load(key) is None]
    fresh.close()
    store.close()
    assert lost == []


def test_a_folder_recreated_while_no_connection_is_open_gets_the_schema(
        store: SQLiteStore, folder: Path) -> None:
    """As under a server with a thread per request: every connection closed meanwhile (the
    new file may even get the old one's inode number)."""
    store.close()
    shutil.rmtree(folder)
    folder.mkdir()
    store.create("after", record(b=b"2"))
    loaded = store.load("after")
    assert loaded is not None and loaded.fields == {"b": b"2"}


def restore_backup(store: SQLiteStore, folder: Path) -> None:
    """Replace the store's file by a copy of it, without the old -wal and -shm (restoring a
    backup), after one more write into the old file."""
    path = store.path
    copy = folder.with_name("restored.sqlite3")
    with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    assert store.update("before", Patch(set={"a": b"old-file"}))  # into the old file only
    os.replace(copy, path)
    for suffix in ("-wal", "-shm"):
        os.remove(path + suffix)


# A patch that sets one key and nothing else is one statement (which checks the session is
# live), and a delete another: each runs in the store's transaction, files checked before COMMIT.
def test_a_one_key_write_after_a_file_is_replaced_lands_in_the_new_file(
        store: SQLiteStore, folder: Path) -> None:
    restore_backup(store, folder)
    assert store.update("before", Patch(set={"a": b"new-file"}))
    loaded = fresh_load(store.path, "before")
    assert loaded is not None and loaded.fields == {"a": b"new-file"}
    assert store.load("before") == loaded


def test_a_delete_after_a_file_is_replaced_deletes_in_the_new_file(
        store: SQLiteStore, folder: Path) -> None:
    restore_backup(store, folder)
    store.delete("before")
    assert fresh_load(store.path, "before") is None  # not brought back by the restored file


@pytest.mark.parametrize("write", ["one-key patch", "delete"])
def test_a_write_into_a_moved_folder_is_refused_and_not_written_there(
        store: SQLiteStore, folder: Path, write: str) -> None:
    settle(folder, folder.parent)
    assert store.update("before", Patch(set={"a": b"2"}))
    away = folder.with_name("away")
    folder.rename(away)
    with pytest.raises(StoreUnavailable):
        if write == "delete":
            store.delete("before")
        else:
            store.update("before", Patch(set={"a": b"during"}))
    loaded = fresh_load(str(away / "sessions.sqlite3"), "before")
    assert loaded is not None and loaded.fields == {"a": b"2"}  # the old file is as it was


@pytest.mark.parametrize("write", ["one-key patch", "delete"])
def test_a_write_that_waits_for_the_lock_while_the_file_is_replaced_is_not_lost(
        store: SQLiteStore, folder: Path, write: str) -> None:
    """Another writer that does not queue on the store's lock file (an older version, the
    sqlite3 shell) holds SQLite's write lock; a write waits for it in SQLite's busy handler
    while the file is replaced by a backup. The files are checked after that wait, so the
    write is acknowledged only into the file now at the path."""
    path = store.path
    copy = folder.with_name("restored.sqlite3")
    with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    assert store.update("before", Patch(set={"a": b"2"}))  # the connection was checked just now
    done: list[object] = []

    def write_now() -> None:
        if write == "delete":
            store.delete("before")
            done.append("deleted")
        else:
            done.append(store.update("before", Patch(set={"a": b"written"})))

    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        thread = threading.Thread(target=write_now)
        thread.start()
        time.sleep(0.3)  # the write waits for SQLite's lock
        assert not done
        os.replace(copy, path)
        for suffix in ("-wal", "-shm"):
            os.remove(path + suffix)
        other.execute("ROLLBACK")
    thread.join(10)
    assert done, "the write neither finished nor failed"
    loaded = fresh_load(path, "before")
    if write == "delete":
        assert loaded is None
    else:
        assert done == [Updated.KEPT]
        assert loaded is not None and loaded.fields == {"a": b"written"}


def test_no_acknowledged_one_key_write_or_delete_is_lost_under_threads(folder: Path) -> None:
    """One-key patches and deletes from threads on their own connections, while the folder
    is replaced by a backup: the last write to each session that started after the
    replacement and was acknowledged is what a restarted app reads."""
    path = str(folder / "sessions.sqlite3")
    store = SQLiteStore(path, clock=FakeClock())
    names = [f"w{n}" for n in range(4)]
    for name in names:
        for i in range(200):
            store.create(f"{name}-{i}", record(a=b"0"))
    staged = folder.with_name("restored")  # a backup of the folder, without -wal and -shm
    staged.mkdir()
    with (closing(sqlite3.connect(path)) as source,
          closing(sqlite3.connect(staged / "sessions.sqlite3")) as target):
        source.backup(target)
    replaced_at = [float("inf")]
    last: dict[str, tuple[float, bytes | None]] = {}  # key -> (started, value; None: deleted)
    stop = threading.Event()

    def writer(name: str) -> None:
        count = 0
        while not stop.is_set():
            index = count % 200
            key = f"{name}-{index}"
            count += 1
            started = time.monotonic()
            try:
                if index % 7 == 0:  # these sessions are deleted, the others updated
                    store.delete(key)
                    last[key] = (started, None)
                elif store.update(key, Patch(set={"a": str(count).encode()})):
                    last[key] = (started, str(count).encode())
            except StoreUnavailable:
                pass

    def replace() -> None:  # the folder, not the file: no file is ever paired with another's WAL
        folder.rename(folder.with_name("replaced"))
        staged.rename(folder)
        replaced_at[0] = time.monotonic()

    while_writing(writer, names, stop, replace)
    after = {key: value for key, (at, value) in last.items() if at > replaced_at[0]}
    assert any(v is None for v in after.values()) and any(after.values()), after
    fresh = SQLiteStore(path, clock=FakeClock())
    loads = {key: fresh.load(key) for key in after}
    fresh.close()
    store.close()
    wrong = {key: (value, loads[key] and loads[key].fields)  # type: ignore[union-attr]
             for key, value in after.items()
             if (loads[key] is None) != (value is None)
             or (value is not None and loads[key].fields != {"a": value})}  # type: ignore[union-attr]
    assert wrong == {}
