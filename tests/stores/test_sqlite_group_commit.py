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
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from satchel.errors import StoreUnavailable
from satchel.store import Patch, Record, Updated
from satchel.stores.sqlite import SQLiteStore
from satchel.stores.sqlite.group_commit import GroupCommit, Pending

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

        thread = threading.Thread(target=run, daemon=True)
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
        wait_for(lambda: store._group._turn.locked())  # the first holds the turn, waiting
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


def test_a_caller_that_waits_past_the_busy_timeout_is_taken_back_and_never_written(
        path: str) -> None:
    store = SQLiteStore(path, busy_timeout=0.3)
    store.create("a", Record({"n": b"0"}, 0.0, 0.0, FOREVER))
    calls = Calls()
    with closing(blocking(path)) as holder:
        calls.start("first", lambda: store.update("a", Patch(set={"n": b"1"})))
        wait_for(lambda: store._group._turn.locked())
        calls.start("second", lambda: store.update("a", Patch(set={"n": b"2"})))
        outcomes = calls.join()
        holder.execute("ROLLBACK")
    assert isinstance(outcomes["first"], StoreUnavailable)  # SQLite's busy timeout
    assert isinstance(outcomes["second"], StoreUnavailable)  # the turn's
    assert "busy timeout" in str(outcomes["second"])
    assert queued(store) == 0
    assert store.update("a", Patch(set={"m": b"3"})) == Updated.KEPT  # nothing left behind
    loaded = store.load("a")
    assert loaded is not None and loaded.fields == {"n": b"0", "m": b"3"}


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
def test_a_child_forked_while_a_thread_held_the_turn_writes(path: str) -> None:
    store = SQLiteStore(path)
    store.create("a", Record({}, 0.0, 0.0, FOREVER))
    turn = store._group._turn
    turn.acquire()  # as a thread of the parent's that the child does not have
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
            child = os.fork()
        if child == 0:  # pragma: no cover - the child's coverage is not collected
            try:
                ok = store.update("a", Patch(set={"child": b"1"}))
            except BaseException:
                os._exit(1)
            os._exit(0 if ok else 2)
        deadline = time.monotonic() + 10
        while True:
            pid, status = os.waitpid(child, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.kill(child, 9)
                os.waitpid(child, 0)
                pytest.fail("the child hung on the parent's turn")
            time.sleep(0.005)
    finally:
        turn.release()
    assert os.waitstatus_to_exitcode(status) == 0
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
    wait_for(group._turn.locked)
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
    wait_for(group._turn.locked)
    calls.start("second", lambda: group.write(lambda conn: 2, run, 10, str))
    calls.start("third", lambda: group.write(lambda conn: 3, run, 10, str))
    wait_for(lambda: len(group._queue) == 2)
    release.set()
    outcomes = calls.join()
    kinds = sorted(type(outcomes[name]).__name__ for name in ("second", "third"))
    assert kinds == ["KeyboardInterrupt", "StoreUnavailable"]  # the runner's, the other's
    assert not group._turn.locked() and group._queue == []
