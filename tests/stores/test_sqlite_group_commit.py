"""Group commit (satchel.stores.sqlite.group_commit): writes that threads ask for while another
is writing run together in one transaction. Each caller gets its own outcome: a work that
raises is undone alone, a transaction that fails fails every caller in it loudly, and a
caller that waits past its timeout is taken back, never run later.

The store's tests hold the write open with a connection of the test's own (``BEGIN
IMMEDIATE`` on the same file), so that the store's writers queue behind it, as they do under
load, and form one transaction when it lets go.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from satchel.errors import StoreUnavailable
from satchel.store import Patch, Record, Updated
from satchel.stores.sqlite import SQLiteStore
from satchel.stores.sqlite.group_commit import GroupCommit, Pending
from tests.stores.forks import update_in_child

FOREVER = 9e12


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "sessions.sqlite3")


def queued(store: SQLiteStore) -> int:
    return len(store._group._queue)


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class Calls:
    """Calls run on threads of their own; each one's outcome (its value, or what it raised)."""

    def __init__(self) -> None:
        self.outcomes: dict[str, Any] = {}
        self.threads: list[threading.Thread] = []

    def start(self, name: str, call: Callable[[], Any]) -> None:
        def run() -> None:
            try:
                self.outcomes[name] = call()
            except BaseException as err:  # the outcome under test
                self.outcomes[name] = err

        thread = threading.Thread(target=run, daemon=True, name=name)
        self.threads.append(thread)
        thread.start()

    def join(self) -> dict[str, Any]:
        for thread in self.threads:
            thread.join(30)
            assert not thread.is_alive()
        return self.outcomes


def blocking(path: str) -> sqlite3.Connection:
    """A connection of the test's own holding the file's write lock (BEGIN IMMEDIATE)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_writes_queued_behind_a_transaction_commit_together_and_each_keeps_its_outcome(
        path: str) -> None:
    store = SQLiteStore(path)
    for key in ("a", "b", "c", "taken"):
        store.create(key, Record({"n": b"0"}, 0.0, 0.0, FOREVER))
    calls = Calls()
    with closing(blocking(path)) as holder:
        calls.start("first", lambda: store.update("a", Patch(set={"n": b"1"})))
        wait_for(lambda: store._group.running)  # the first is running, waiting
        calls.start("b", lambda: store.update("b", Patch(set={"n": b"2"})))
        calls.start("dup", lambda: store.create("taken", Record({"x": b"1"}, 0.0, 0.0, FOREVER)))
        calls.start("c", lambda: store.update("c", Patch(set={"n": b"3", "m": b"4"})))
        calls.start("gone", lambda: store.update("missing", Patch(set={"n": b"5"})))
        wait_for(lambda: queued(store) == 4)
        holder.execute("ROLLBACK")
    outcomes = calls.join()
    assert outcomes["first"] == Updated.KEPT
    assert outcomes["b"] == Updated.KEPT
    assert outcomes["c"] == Updated.KEPT
    assert outcomes["gone"] == Updated.GONE
    assert isinstance(outcomes["dup"], KeyError)  # undone alone: the others are written
    for key, fields in {"a": {"n": b"1"}, "b": {"n": b"2"}, "c": {"n": b"3", "m": b"4"},
                        "taken": {"n": b"0"}}.items():
        loaded = store.load(key)
        assert loaded is not None and loaded.fields == fields, key
    assert store.load("missing") is None


def test_a_write_queued_past_the_busy_timeout_fails_and_is_never_written(path: str) -> None:
    store = SQLiteStore(path, busy_timeout=0.5)
    store.create("a", Record({"n": b"0"}, 0.0, 0.0, FOREVER))
    calls = Calls()
    with closing(blocking(path)) as holder:
        calls.start("first", lambda: store.update("a", Patch(set={"n": b"1"})))
        wait_for(lambda: store._group.running)
        calls.start("second", lambda: store.update("a", Patch(set={"n": b"2"})))
        outcomes = calls.join()
        holder.execute("ROLLBACK")
    assert isinstance(outcomes["first"], StoreUnavailable)
    assert isinstance(outcomes["second"], StoreUnavailable)
    assert queued(store) == 0
    assert store.update("a", Patch(set={"m": b"3"})) == Updated.KEPT  # nothing left behind
    loaded = store.load("a")
    assert loaded is not None and loaded.fields == {"n": b"0", "m": b"3"}


def table_store(path: str) -> SQLiteStore:
    store = SQLiteStore(path)
    store._write(lambda conn: conn.execute("CREATE TABLE t (name TEXT PRIMARY KEY)"))
    return store


def names(path: str) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [name for (name,) in conn.execute("SELECT name FROM t ORDER BY name")]


def insert(name: str, returns: object = None) -> Callable[[sqlite3.Connection], object]:
    def work(conn: sqlite3.Connection) -> object:
        conn.execute("INSERT INTO t VALUES (?)", (name,))
        return returns
    return work


def run_batch(store: SQLiteStore, path: str,
              works: dict[str, Callable[[sqlite3.Connection], object]]) -> dict[str, Any]:
    """``works`` queued behind a first write held up by the test's own lock: one batch."""
    calls = Calls()
    with closing(blocking(path)) as holder:
        calls.start("first", lambda: store._write(insert("first")))
        wait_for(lambda: store._group.running)
        for name, work in works.items():
            calls.start(name, lambda work=work: store._write(work))  # type: ignore[misc]
        wait_for(lambda: queued(store) == len(works))
        holder.execute("ROLLBACK")
    return calls.join()


def test_a_work_that_wrote_then_raised_is_undone_alone(path: str) -> None:
    store = table_store(path)

    def half(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES ('half')")
        raise KeyError("after writing")

    outcomes = run_batch(store, path, {"a": insert("a", "a ok"), "half": half,
                                       "b": insert("b", "b ok")})
    assert outcomes["a"] == "a ok" and outcomes["b"] == "b ok"
    assert isinstance(outcomes["half"], KeyError)
    assert names(path) == ["a", "b", "first"]


def test_a_batch_run_again_on_a_moved_file_gives_each_its_second_outcome(path: str) -> None:
    store = table_store(path)
    folder = os.path.dirname(path)
    runs: list[int] = []

    def mover(conn: sqlite3.Connection) -> str:
        if not runs:  # the folder is replaced during the first run
            os.rename(folder, folder + ".old")
            os.mkdir(folder)
        runs.append(1)
        return "mover ok"

    def once(conn: sqlite3.Connection) -> str:
        if len(runs) == 1:
            raise KeyError("the first run only")
        return "second run ok"

    outcomes = run_batch(store, path, {"mover": mover, "once": once})
    assert outcomes == {"first": None, "mover": "mover ok", "once": "second run ok"}


def test_a_failure_after_the_commit_leaves_the_others_their_outcome(
        path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writes are committed: a batch-mate must not be told its write failed."""
    store = table_store(path)
    writers = store._writers
    release = writers.release
    failed: list[int] = []

    def release_failing_once() -> None:
        release()
        if failed == [] and queued(store) == 0 and store._group.running:
            failed.append(1)
            raise OSError("flock failed")

    calls = Calls()
    with closing(blocking(path)) as holder:
        calls.start("first", lambda: store._write(insert("first")))
        wait_for(lambda: store._group.running)
        calls.start("a", lambda: store._write(insert("a", "a ok")))
        calls.start("b", lambda: store._write(insert("b", "b ok")))
        wait_for(lambda: queued(store) == 2)
        monkeypatch.setattr(writers, "release", release_failing_once)
        holder.execute("ROLLBACK")
    outcomes = calls.join()
    assert failed == [1]
    assert names(path) == ["a", "b", "first"]
    ok = [name for name in ("first", "a", "b") if not isinstance(outcomes[name], OSError)]
    assert len(ok) == 2  # the thread that ran the batch got the error, the others their own
    assert all(outcomes[name] in (None, f"{name} ok") for name in ok)


class Interrupted(Exception):
    """What the test's signal handler raises."""


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="no SIGUSR1 on this platform")
def test_a_waiting_write_interrupted_by_a_signal_is_taken_back(path: str) -> None:
    store = table_store(path)

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGUSR1, interrupt)
    calls = Calls()
    try:
        with closing(blocking(path)) as holder:
            calls.start("other", lambda: store._write(insert("other")))
            wait_for(lambda: store._group.running)
            timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1))
            timer.start()
            with pytest.raises(Interrupted):
                store._write(insert("main"))  # this thread: the one a signal interrupts
            assert queued(store) == 0
            holder.execute("ROLLBACK")
    finally:
        signal.signal(signal.SIGUSR1, previous)
    calls.join()
    store._write(insert("later"))
    assert names(path) == ["later", "other"]


def test_many_threads_lose_no_write(path: str) -> None:
    """Threads writing their own keys of shared sessions at once: every write is kept."""
    store = SQLiteStore(path)
    for n in range(4):
        store.create(f"k{n}", Record({}, 0.0, 0.0, FOREVER))
    start = threading.Barrier(8)

    def write(n: int) -> None:
        start.wait()
        for i in range(150):
            assert store.update(f"k{n % 4}", Patch(set={f"t{n}": str(i).encode()}))

    workers = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    for n in range(4):
        loaded = store.load(f"k{n}")
        assert loaded is not None
        assert loaded.fields == {f"t{n}": b"149", f"t{n + 4}": b"149"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_child_forked_while_a_parent_thread_wrote_writes(path: str) -> None:
    store = SQLiteStore(path)
    store.create("a", Record({}, 0.0, 0.0, FOREVER))
    turn = store._group._turn
    turn.acquire()  # as a thread of the parent's that the child does not have
    try:
        outcome = update_in_child(store, "a", Patch(set={"child": b"1"}))
    finally:
        turn.release()
    assert outcome == 0  # not "hung" on the parent's turn
    loaded = store.load("a")
    assert loaded is not None and loaded.fields == {"child": b"1"}


# GroupCommit alone, with a run of the test's own.


def test_a_failed_transaction_fails_every_caller_with_an_error_of_its_own() -> None:
    group = GroupCommit()
    release = threading.Event()
    batches: list[int] = []

    def run(batch: list[Pending], left: float) -> None:
        batches.append(len(batch))
        if len(batches) == 1:
            release.wait(10)
            for item in batch:
                item.result = item.work(None)
            return
        raise StoreUnavailable("the commit failed")

    calls = Calls()
    calls.start("first", lambda: group.write(lambda conn: 1, run, 10, str))
    wait_for(lambda: group.running)
    for name in ("x", "y", "z"):
        calls.start(name, lambda: group.write(lambda conn: 2, run, 10, str))
    wait_for(lambda: len(group._queue) == 3)
    release.set()
    outcomes = calls.join()
    assert batches == [1, 3]
    assert outcomes["first"] == 1
    errors = [outcomes[name] for name in ("x", "y", "z")]
    assert all(isinstance(err, StoreUnavailable) for err in errors)
    assert len({id(err) for err in errors}) == 3  # one each: raised in three threads
    assert all("the commit failed" in str(err) for err in errors)


def test_an_interrupt_in_the_transaction_reaches_its_thread_and_fails_the_others() -> None:
    group = GroupCommit()
    release = threading.Event()
    ran: list[str] = []

    def run(batch: list[Pending], left: float) -> None:
        ran.append("run")
        if len(ran) == 1:
            release.wait(10)
            for item in batch:
                item.result = item.work(None)
            return
        raise KeyboardInterrupt

    calls = Calls()
    calls.start("first", lambda: group.write(lambda conn: 1, run, 10, str))
    wait_for(lambda: group.running)
    calls.start("second", lambda: group.write(lambda conn: 2, run, 10, str))
    calls.start("third", lambda: group.write(lambda conn: 3, run, 10, str))
    wait_for(lambda: len(group._queue) == 2)
    release.set()
    outcomes = calls.join()
    kinds = sorted(type(outcomes[name]).__name__ for name in ("second", "third"))
    assert kinds == ["KeyboardInterrupt", "StoreUnavailable"]  # the runner's, the other's
    assert not group.running and group._queue == []


def test_a_batch_runs_on_the_latest_deadline_of_its_callers() -> None:
    """The thread that runs a batch may have waited most of its own time: a write queued
    a moment ago keeps its own. (The later write is queued by the test itself, so that
    the thread that waited longer is the one that runs the batch.)"""
    group = GroupCommit()
    lefts: list[float] = []
    release = threading.Event()

    def run(batch: list[Pending], left: float) -> None:
        lefts.append(left)
        if len(lefts) == 1:
            release.wait(10)
        for item in batch:
            item.result = item.work(None)

    calls = Calls()
    calls.start("first", lambda: group.write(lambda conn: 1, run, 10, str))
    wait_for(lambda: group.running)
    calls.start("old", lambda: group.write(lambda conn: 2, run, 1.0, str))
    wait_for(lambda: len(group._queue) == 1)
    time.sleep(0.8)
    fresh = Pending(lambda conn: 3)
    fresh.deadline = time.monotonic() + 1.0
    with group._queue_lock:
        group._queue.append(fresh)
    release.set()
    assert calls.join() == {"first": 1, "old": 2}
    assert fresh.done and fresh.result == 3
    assert lefts[1] > 0.6  # fresh's, not old's (under 0.2 by now)


def test_a_write_queued_past_its_timeout_is_never_run() -> None:
    group = GroupCommit()
    release = threading.Event()
    ran: list[int] = []

    def run(batch: list[Pending], left: float) -> None:
        if not ran:
            release.wait(10)
        for item in batch:
            ran.append(item.work(None))

    calls = Calls()
    calls.start("first", lambda: group.write(lambda conn: 1, run, 10, str))
    wait_for(lambda: group.running)
    start = time.monotonic()
    with pytest.raises(StoreUnavailable, match="locked"):
        group.write(lambda conn: 2, run, 0.2, lambda: "locked")
    assert time.monotonic() - start < 5
    release.set()
    calls.join()
    group.write(lambda conn: 3, run, 1.0, str)
    assert ran == [1, 3]
