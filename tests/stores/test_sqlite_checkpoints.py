"""SQLiteStore's WAL checkpoints (satchel.stores.sqlite.checkpoints), on the real filesystem
with real threads and processes: the WAL stays bounded while writers keep writing, the
checkpoint runs on the store's own thread, a failed one loses nothing, and the thread
ends with the store.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import satchel.stores.sqlite.connections as sqlite_connections
import satchel.stores.sqlite.store as sqlite_store
from satchel.store import Patch, Record
from satchel.stores.sqlite import SQLiteStore
from tests.stores.forks import update_in_child

FOREVER = 9e12
SPAWN = multiprocessing.get_context("spawn")
MB = 1024 * 1024


def wal_size(path: str) -> int:
    return os.path.getsize(path + "-wal")


def new_store(path: str, keys: int = 4) -> SQLiteStore:
    store = SQLiteStore(path)
    for n in range(keys):
        store.create(f"k{n}", Record({}, 0.0, 0.0, FOREVER))
    return store


def write_from_threads(store: SQLiteStore, threads: int, each: int, tag: str = "") -> None:
    """``threads`` threads, each updating its own session ``each`` times, all at once."""
    start = threading.Barrier(threads)

    def write(n: int) -> None:
        start.wait()
        for i in range(each):
            assert store.update(f"k{n % 4}", Patch(set={f"f{tag}{n}": str(i).encode()}))

    workers = [threading.Thread(target=write, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)


def wait_for_checkpoints(store: SQLiteStore, done: int) -> None:
    deadline = time.monotonic() + 30
    while store._checkpoints.done < done:
        assert time.monotonic() < deadline, "no checkpoint ran"
        time.sleep(0.01)


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "sessions.sqlite3")


def test_the_wal_stays_bounded_while_threads_keep_writing(path: str) -> None:
    """Writers that keep appending while a checkpoint runs must not keep the WAL from ever
    starting over: before the checkpoint took the writers' lock to finish, it grew by a
    frame (4 KB) per write, to 80 MB here."""
    store = new_store(path)
    write_from_threads(store, threads=4, each=5000)
    assert wal_size(path) < 16 * MB  # a checkpoint every 1,000 rows: about 4 MB each
    loaded = store.load("k1")
    assert loaded is not None and loaded.fields == {"f1": b"4999"}


def _write_for_a_while(path: str, name: str, written: Any, leave: Any) -> None:
    store = SQLiteStore(path)
    write_from_threads(store, threads=4, each=1500, tag=name)
    written.release()
    leave.wait(60)  # open until the WAL is measured: the last connection closed deletes it


def test_the_wal_stays_bounded_while_processes_keep_writing(path: str) -> None:
    new_store(path).close()
    written, leave = SPAWN.Semaphore(0), SPAWN.Event()
    procs = [SPAWN.Process(target=_write_for_a_while, args=(path, f"p{n}", written, leave))
             for n in range(2)]
    for proc in procs:
        proc.start()
    try:
        for _ in procs:
            assert written.acquire(timeout=120)
        # 12,000 writes: 48 MB if every frame stayed. A checkpoint every CHECKPOINT_CHANGES
        # rows per process (a 4 KB frame each): 5-10 MB seen at 1,000, 4-5 MB at 500
        assert wal_size(path) < 6 * sqlite_store.CHECKPOINT_CHANGES * 4096
    finally:
        leave.set()
        for proc in procs:
            proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0]
    loaded = SQLiteStore(path).load("k0")
    assert loaded is not None and loaded.fields == {"fp00": b"1499", "fp10": b"1499"}


def test_the_wal_is_folded_into_the_file_when_the_last_process_exits(path: str) -> None:
    """A clean exit leaves everything in the database file: copying that file alone, with
    the app stopped, copies every session (no connection, the checkpoint thread's
    included, is left open to keep the WAL)."""
    new_store(path).close()
    written, leave = SPAWN.Semaphore(0), SPAWN.Event()
    leave.set()
    proc = SPAWN.Process(target=_write_for_a_while, args=(path, "p", written, leave))
    proc.start()
    proc.join(120)
    assert proc.exitcode == 0
    assert not os.path.exists(path + "-wal")


def test_checkpoints_run_on_the_stores_thread_not_the_writers(
        path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ran_on: list[str] = []
    checkpoint = sqlite_store.checkpoint_wal

    def recorded(conn: sqlite3.Connection) -> None:
        ran_on.append(threading.current_thread().name)
        checkpoint(conn)

    monkeypatch.setattr(sqlite_store, "checkpoint_wal", recorded)
    store = new_store(path)
    for i in range(sqlite_store.CHECKPOINT_CHANGES + 1):
        store.update("k0", Patch(set={"n": str(i).encode()}))
    wait_for_checkpoints(store, 1)
    assert ran_on and all(name.startswith("satchel checkpoint") for name in ran_on)
    assert threading.current_thread().name not in ran_on


def test_a_failing_checkpoint_is_logged_and_loses_nothing(
        path: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def failing(conn: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite_store, "checkpoint_wal", failing)
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_CHANGES", 10)
    store = new_store(path)
    with caplog.at_level(logging.DEBUG, logger="satchel"):
        for i in range(25):
            assert store.update("k0", Patch(set={f"n{i}": b"1"}))
        wait_for_checkpoints(store, 1)
    assert "checkpoint failed: disk I/O error" in caplog.text
    with closing(sqlite3.connect(path)) as conn:  # another process's view
        count = conn.execute("SELECT count(*) FROM satchel_fields WHERE key = 'k0'").fetchone()
    assert count == (25,)


def test_a_wal_grown_past_the_limit_is_cut_back_when_it_starts_over(
        path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader on an old snapshot keeps the WAL from starting over, so it grows; once the
    reader is done, the next write that starts it over cuts the file back to the limit."""
    monkeypatch.setattr(sqlite_connections, "WAL_SIZE_LIMIT", 256 * 1024)
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_CHANGES", 50)
    store = new_store(path)
    with closing(sqlite3.connect(path, isolation_level=None)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM satchel_sessions").fetchall()  # holds a snapshot
        for i in range(500):
            store.update("k0", Patch(set={"n": str(i).encode()}))
        wait_for_checkpoints(store, 1)
        assert wal_size(path) > 1 * MB
        reader.execute("COMMIT")
    thread = store._checkpoints.stop()  # its checkpoint may have begun before the COMMIT,
    if thread is not None:  # and one running would keep the next write from starting over
        thread.join(10)
    store._checkpoint()  # the reader is gone: this one copies all of the WAL
    store.update("k0", Patch(set={"n": b"last"}))  # starts the WAL over, and cuts it back
    assert wal_size(path) <= 256 * 1024 + 8 * 4120
    loaded = store.load("k0")
    assert loaded is not None and loaded.fields == {"n": b"last"}


def checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("satchel checkpoint")]


def ended(thread: threading.Thread) -> bool:
    thread.join(10)
    return not thread.is_alive()


def started_store(path: str, monkeypatch: pytest.MonkeyPatch) -> tuple[SQLiteStore,
                                                                        threading.Thread]:
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_CHANGES", 5)
    before = set(checkpoint_threads())
    store = new_store(path)
    for i in range(6):
        store.update("k0", Patch(set={"n": str(i).encode()}))
    wait_for_checkpoints(store, 1)
    [thread] = set(checkpoint_threads()) - before
    return store, thread


def test_the_checkpoint_thread_ends_when_the_store_is_closed(
        path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store, thread = started_store(path, monkeypatch)
    store.close()
    assert ended(thread)
    for i in range(6):  # a store used after close() checkpoints again, on a new thread
        store.update("k0", Patch(set={"n": str(i).encode()}))
    wait_for_checkpoints(store, 2)
    store.close()


def test_the_checkpoint_thread_ends_when_the_store_is_dropped(
        path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store, thread = started_store(path, monkeypatch)
    del store
    gc.collect()
    assert ended(thread)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_checkpoints_on_a_thread_of_its_own(
        path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """gunicorn --preload: the master's checkpoint thread is not copied into a worker."""
    store, thread = started_store(path, monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
        child = os.fork()
    if child == 0:  # pragma: no cover - the child's coverage is not collected
        try:
            done = store._checkpoints.done
            for i in range(6):
                store.update("k1", Patch(set={"n": str(i).encode()}))
            deadline = time.monotonic() + 20
            while store._checkpoints.done == done and time.monotonic() < deadline:
                time.sleep(0.01)
            code = 0 if store._checkpoints.done > done else 2
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert thread.is_alive()  # the parent's own goes on
    store.close()


CLOSE_RIGHT_AFTER_WRITES = """
import os, sys, time
import satchel.stores.sqlite.store as sqlite_store
from satchel.store import Record
from satchel.stores.sqlite import SQLiteStore
sqlite_store.CHECKPOINT_CHANGES = 1  # every write asks for a checkpoint
folder = sys.argv[1]
for i in range(300):
    path = os.path.join(folder, f"{i}.sqlite3")
    store = SQLiteStore(path)
    store.create("k", Record({}, 0.0, 0.0, 9e12))
    store.close()
    for suffix in ("", "-wal", "-shm", "-lock"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
time.sleep(0.3)
print(sorted(os.listdir(folder)))
"""


def test_close_right_after_writes_waits_for_the_checkpoint_and_nothing_reopens(
        tmp_path: Path) -> None:
    """close() used to close the checkpoint thread's connection while a statement ran on it
    (a segmentation fault in Python 3.11's sqlite3), and a checkpoint already woken opened
    the path again after close() returned (recreating a removed file)."""
    folder = tmp_path / "stores"
    folder.mkdir()
    done = subprocess.run([sys.executable, "-c", CLOSE_RIGHT_AFTER_WRITES, str(folder)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_stop_on_the_thread_that_holds_the_checkpointers_lock_returns(
        path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A garbage collection on the checkpoint thread, while it holds its lock, may collect
    the store, whose finalizer calls stop() there: that must not wait for itself (the
    thread would hang, and so would the interpreter's exit, which stops it)."""
    store, thread = started_store(path, monkeypatch)
    checkpointer = store._checkpoints
    returned = threading.Event()

    def stop_while_holding() -> None:
        with checkpointer._cond:
            checkpointer.stop()
        returned.set()

    helper = threading.Thread(target=stop_while_holding, daemon=True)
    helper.start()
    assert returned.wait(10)
    assert ended(thread)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_fork_waits_for_a_running_checkpoint_and_the_child_writes(
        path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """gunicorn --preload: a master that wrote sessions forks its workers. A child forked
    in the middle of a checkpoint inherited SQLite's mutexes held by the checkpoint
    thread, which it does not have, and hung on them (about half the children did)."""
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_CHANGES", 1)  # a checkpoint every write
    store = new_store(path)
    outcomes: list[int | str] = []
    for n in range(30):
        store.update("k0", Patch(set={"n": str(n).encode() * 200}))
        outcomes.append(update_in_child(store, "k1", Patch(set={"child": str(n).encode()})))
    assert outcomes == [0] * 30
    loaded = store.load("k1")
    assert loaded is not None and loaded.fields == {"child": b"29"}


def test_a_checkpoint_thread_that_cannot_start_fails_no_write(
        path: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Thread.start() raising (a process or memory limit) must not turn a committed write
    into an error, nor stop checkpoints for good: the next ask tries again."""
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_CHANGES", 5)
    store = new_store(path)
    start = threading.Thread.start
    failing = [True]

    def start_or_fail(thread: threading.Thread) -> None:
        if failing[0] and thread.name.startswith("satchel checkpoint"):
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", start_or_fail)
    with caplog.at_level(logging.WARNING, logger="satchel"):
        for i in range(6):
            assert store.update("k0", Patch(set={"n": str(i).encode()}))
    assert "cannot start the checkpoint thread" in caplog.text
    failing[0] = False
    for i in range(6):
        assert store.update("k0", Patch(set={"n": str(i).encode()}))
    wait_for_checkpoints(store, 1)
    store.close()
