"""SQLiteStore's write lock across processes (satchel.stores.sqlite.writers), with real
processes on the real filesystem: writers queue on it and keep every write, a holder that
dies frees it, and a holder that stays past the busy timeout makes a write StoreUnavailable.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import sqlite3
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from satchel.errors import StoreUnavailable
from satchel.store import Patch, Record
from satchel.stores.sqlite import SQLiteStore

FOREVER = 9e12
SPAWN = multiprocessing.get_context("spawn")


def _hold(path: str, held: Any, release: Any) -> None:
    """Hold the store's write lock (inside a write of key "held") until ``release`` is set."""
    store = SQLiteStore(path)

    def work(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO satchel_sessions (key, created_at, last_seen, expires_at)"
                     " VALUES ('held', 0, 0, 9e12)")
        held.set()
        release.wait(60)

    store._write(work)


def _writer(path: str, name: str, count: int) -> None:
    store = SQLiteStore(path)

    def write(thread: int) -> None:
        for i in range(count):
            assert store.update("shared", Patch(set={f"{name}-{thread}-{i}": b"1"}))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.fixture
def path(tmp_path: Path) -> str:
    path = str(tmp_path / "sessions.sqlite3")
    SQLiteStore(path).create("shared", Record({}, 0.0, 0.0, FOREVER))
    return path


def test_processes_of_several_threads_writing_keys_of_one_session_keep_every_write(
        path: str) -> None:
    procs = [SPAWN.Process(target=_writer, args=(path, f"p{n}", 25)) for n in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    loaded = SQLiteStore(path).load("shared")
    assert loaded is not None and len(loaded.fields) == 2 * 4 * 25


def _write_behind_a_holder(path: str, store: SQLiteStore, *, queued_for: float = 0.3,
                           while_queued: Any = None) -> None:
    """Another process holds the write lock; ``store`` writes key "a" of "shared", which
    must wait ``queued_for`` seconds without finishing (``while_queued()`` is called then),
    and finish once the holder lets go; the holder's own write is committed."""
    held, release = SPAWN.Event(), SPAWN.Event()
    holder = SPAWN.Process(target=_hold, args=(path, held, release))
    holder.start()
    try:
        assert held.wait(30)
        done = threading.Event()
        writer = threading.Thread(
            target=lambda: (store.update("shared", Patch(set={"a": b"1"})), done.set()))
        writer.start()
        assert not done.wait(queued_for)  # queued behind the holder
        if while_queued is not None:
            while_queued()
        release.set()
        writer.join(30)
        assert done.is_set()
    finally:
        release.set()
        holder.join(30)
    assert holder.exitcode == 0
    assert store.load("held") is not None


def test_a_write_waits_for_another_process_holding_the_lock_and_both_are_kept(
        path: str) -> None:
    store = SQLiteStore(path)
    _write_behind_a_holder(path, store)
    loaded = store.load("shared")
    assert loaded is not None and loaded.fields == {"a": b"1"}


def test_a_write_waiting_for_another_process_does_not_poll_the_lock(
        path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer queued behind another process tries the lock again only for its first
    millisecond (writers.SPIN), then sleeps until the lock is granted: no ``flock`` call
    after that in half a second, not one every millisecond (polling cost a contended
    write about 120 µs of CPU under gunicorn)."""
    from satchel.stores.sqlite import writers

    calls: list[tuple[float, int]] = []
    real = writers.fcntl

    class Counting:
        LOCK_EX, LOCK_NB, LOCK_UN = real.LOCK_EX, real.LOCK_NB, real.LOCK_UN

        @staticmethod
        def flock(fd: int, operation: int) -> None:
            calls.append((time.monotonic(), operation))
            real.flock(fd, operation)

    monkeypatch.setattr(writers, "fcntl", Counting)
    store = SQLiteStore(path)
    waiting: list[list[tuple[float, int]]] = []
    _write_behind_a_holder(path, store, queued_for=0.5,
                           while_queued=lambda: waiting.append(list(calls)))
    [made] = waiting
    assert made and made[-1][0] - made[0][0] < 0.2, made  # the tries of SPIN, then none
    assert [op for _, op in made].count(real.LOCK_EX) <= 1, made  # the waiter's one
    assert store.update("shared", Patch(set={"b": b"1"}))  # the lock was given back
    loaded = store.load("shared")
    assert loaded is not None and loaded.fields == {"a": b"1", "b": b"1"}


def test_a_lock_let_go_within_the_spin_is_taken_by_the_writer_itself(
        path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that finds the file lock taken tries it again itself for writers.SPIN
    seconds: a lock let go meanwhile is taken with no waiter thread (whose wake-ups cost
    a contended write about one context switch more)."""
    from satchel.stores.sqlite import writers

    monkeypatch.setattr(writers, "SPIN", 10.0)  # long enough on a loaded machine
    store = SQLiteStore(path)
    fd = os.open(path + "-lock", os.O_RDWR | os.O_CREAT)  # another open file: another holder
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        timer = threading.Timer(0.05, fcntl.flock, (fd, fcntl.LOCK_UN))
        timer.start()
        store.create("s", Record({}, 0.0, 0.0, 9e12))
        timer.join(10)
    finally:
        os.close(fd)
    assert store._writers._waiter is None  # taken without it
    assert store.load("s") is not None


def test_a_lock_holder_that_dies_frees_the_lock(path: str) -> None:
    held, release = SPAWN.Event(), SPAWN.Event()
    holder = SPAWN.Process(target=_hold, args=(path, held, release))
    holder.start()
    assert held.wait(30)
    holder.kill()
    holder.join(30)
    store = SQLiteStore(path, busy_timeout=10)
    assert store.update("shared", Patch(set={"a": b"1"}))
    assert store.load("held") is None  # the dead holder's write was never committed
    loaded = store.load("shared")
    assert loaded is not None and loaded.fields == {"a": b"1"}


def test_a_lock_held_past_the_busy_timeout_makes_writes_unavailable(path: str) -> None:
    held, release = SPAWN.Event(), SPAWN.Event()
    holder = SPAWN.Process(target=_hold, args=(path, held, release))
    holder.start()
    try:
        assert held.wait(30)
        store = SQLiteStore(path, busy_timeout=0.2)
        with pytest.raises(StoreUnavailable, match="locked"):
            store.update("shared", Patch(set={"a": b"1"}))
        with pytest.raises(StoreUnavailable, match="locked"):
            store.acquire_lock("shared", "token", 10.0)
        assert store.load("shared") is not None  # reads do not wait for writers
    finally:
        release.set()
        holder.join(30)
    assert store.update("shared", Patch(set={"a": b"1"}))


def test_a_writer_outside_the_lock_still_makes_writes_wait_then_unavailable(path: str) -> None:
    """An SQLite writer that does not take the lock file (another program, an older satchel)
    is waited for by SQLite itself, for the same busy timeout."""
    store = SQLiteStore(path, busy_timeout=0.2)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            store.update("shared", Patch(set={"a": b"1"}))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.update("shared", Patch(set={"a": b"1"}))


def test_a_lock_file_that_cannot_be_opened_leaves_writers_to_sqlite(path: str) -> None:
    os.remove(path + "-lock")
    os.mkdir(path + "-lock")  # a folder where the lock file would be
    store = SQLiteStore(path)
    assert store.update("shared", Patch(set={"a": b"1"}))
    loaded = SQLiteStore(path).load("shared")
    assert loaded is not None and loaded.fields == {"a": b"1"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_child_forked_while_a_thread_writes_gets_its_own_lock(path: str) -> None:
    """A forked child (gunicorn --preload) does not inherit a lock held by a parent's
    thread that the child has not got: it waits for the parent's write, then writes."""
    store = SQLiteStore(path)
    inside, release = threading.Event(), threading.Event()

    def work(conn: sqlite3.Connection) -> None:
        inside.set()
        release.wait(30)

    parent_writer = threading.Thread(target=store._write, args=(work,))
    parent_writer.start()
    assert inside.wait(30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
        child = os.fork()
    if child == 0:  # pragma: no cover - the child's coverage is not collected
        try:
            store.close()  # not the parent's SQLite connections (SQLite: none across a fork)
            ok = store.update("shared", Patch(set={"child": b"1"}))
        except BaseException:
            os._exit(1)
        os._exit(0 if ok else 2)
    threading.Timer(0.3, release.set).start()
    _, status = os.waitpid(child, 0)
    parent_writer.join(30)
    assert os.waitstatus_to_exitcode(status) == 0
    loaded = store.load("shared")
    assert loaded is not None and loaded.fields == {"child": b"1"}


def test_a_forked_child_opens_its_own_connection_and_leaves_the_parents_open(
        path: str) -> None:
    """gunicorn --preload: the master used the store before forking its workers. A child
    never uses the parent's SQLite connection (SQLite forbids it), nor closes it."""
    store = SQLiteStore(path)
    assert store.load("shared") is not None
    inherited = store._local.conn
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's coverage is not collected
        try:
            ok = store.update("shared", Patch(set={"child": b"1"}))
            mine = store._local.conn
            code = 0 if ok and mine is not inherited and inherited.total_changes >= 0 else 2
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store._local.conn is inherited  # the parent's own is untouched
    assert store.update("shared", Patch(set={"parent": b"1"}))
    loaded = store.load("shared")
    assert loaded is not None and loaded.fields == {"child": b"1", "parent": b"1"}
