"""A forked child (``gunicorn --preload`` with threads) whose threads make their first writes
at once: what the store made in the parent (its connections, its write lock's file and
thread lock, its group commit's queue, its checkpoint thread) is replaced once in the child,
by one thread, and every thread writes through the replacement.

Replaced twice, the second thread's replacement would drop the first thread's: a file lock
taken on the first lock file would never be released (every later write, in this process and
in the others, would wait for it until its busy timeout), and the first thread would release
a thread lock the second holds. The test widens the window: in the child, each replacement
pauses, so that the other threads reach the check meanwhile, as they may under load.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from satchel import forks as process
from satchel.forks import adopt, process_id
from satchel.store import Patch, Record
from satchel.stores.sqlite import SQLiteStore
from satchel.stores.sqlite.checkpoints import Checkpointer
from satchel.stores.sqlite.connections import Connections
from satchel.stores.sqlite.writers import Writers
from tests.stores.forks import in_child

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
FOREVER = 9e12
THREADS = 4


def slowed(calls: list[str], name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """``method``, counting its calls in ``calls`` and pausing first."""

    def slow(self: Any, *args: Any) -> Any:
        calls.append(name)
        time.sleep(0.05)
        return method(self, *args)

    return slow


def first_writes_at_once(store: SQLiteStore, calls: list[str]) -> int:
    """In the child: THREADS threads write at once; then one more write. 0 if every write
    was kept and each replacement ran once, else 2 (3: a thread still running)."""
    Writers._forked = slowed(calls, "writers", Writers._forked)  # type: ignore[method-assign]
    Connections._forked = slowed(calls, "connections",  # type: ignore[method-assign]
                                 Connections._forked)
    start = threading.Barrier(THREADS)
    outcomes: list[object] = []

    def write(n: int) -> None:
        start.wait()
        try:
            outcomes.append(store.update(f"k{n}", Patch(set={"child": str(n).encode()})))
        except Exception as err:  # the outcome under test
            outcomes.append(err)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    if any(thread.is_alive() for thread in threads):
        return 3
    after = store.update("k0", Patch(set={"after": b"1"}))
    kept = len(outcomes) == THREADS and all(outcomes) and after
    return 0 if kept and sorted(calls) == ["connections", "writers"] else 2


def test_threads_of_a_forked_child_writing_at_once_replace_the_parents_state_once(
        tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sessions.sqlite3", busy_timeout=2.0)
    for n in range(THREADS):
        store.create(f"k{n}", Record({}, 0.0, 0.0, FOREVER))
    calls: list[str] = []
    assert in_child(lambda: first_writes_at_once(store, calls), seconds=30) == 0
    assert store.update("k1", Patch(set={"parent": b"1"}))
    for n in range(THREADS):
        loaded = store.load(f"k{n}")
        assert loaded is not None
        assert loaded.fields["child"] == str(n).encode()
    loaded = store.load("k0")
    assert loaded is not None and loaded.fields["after"] == b"1"


def test_a_checkpointer_asked_by_threads_of_a_forked_child_at_once_runs_one_thread(
        tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sessions.sqlite3")
    checkpoints = store._checkpoints
    checkpoints.ask()  # the parent's thread: not copied into the child

    def in_the_child() -> int:
        original = Checkpointer._reset_in_child
        resets: list[int] = []

        def slow(self: Checkpointer) -> None:
            resets.append(1)
            time.sleep(0.05)
            original(self)

        Checkpointer._reset_in_child = slow  # type: ignore[method-assign]
        start = threading.Barrier(THREADS)

        def ask() -> None:
            start.wait()
            checkpoints.ask()

        threads = [threading.Thread(target=ask) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        running = [thread for thread in threading.enumerate()
                   if thread.name.startswith("satchel checkpoint")]
        return 0 if len(resets) == 1 and len(running) == 1 else 2

    assert in_child(in_the_child, seconds=30) == 0


def close_while_others_write(store: SQLiteStore) -> int:
    """In the child: one thread closes the store's lock file (as a reader that found the
    file moved does, or ``store.close()``) while another holds the write lock and a third
    asks for it. 0 if the holder released cleanly and the third waited for it, else 2."""
    close = Writers._close

    def slow_close(self: Writers) -> None:
        time.sleep(0.2)
        close(self)

    Writers._close = slow_close  # type: ignore[method-assign]
    events: list[str] = []

    def holder() -> None:
        time.sleep(0.05)  # the closer first
        try:
            with store._writing():
                events.append("held")
                time.sleep(0.4)
                events.append("releasing")
        except Exception as err:  # the outcome under test
            events.append(f"holder: {err!r}")

    def closer() -> None:
        store._writers.close()

    def writer() -> None:
        time.sleep(0.3)  # while the holder holds the lock
        store.update("k0", Patch(set={"third": b"1"}))
        events.append("written")

    threads = [threading.Thread(target=run) for run in (holder, closer, writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return 0 if events == ["held", "releasing", "written"] else 2


def test_a_forked_childs_lock_file_closed_while_its_threads_write_keeps_them_in_turn(
        tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sessions.sqlite3", busy_timeout=2.0)
    store.create("k0", Record({}, 0.0, 0.0, FOREVER))
    assert store.update("k0", Patch(set={"parent": b"1"}))  # the parent's lock file is open
    assert in_child(lambda: close_while_others_write(store), seconds=30) == 0
    loaded = store.load("k0")
    assert loaded is not None and loaded.fields == {"parent": b"1", "third": b"1"}


def test_a_forked_childs_close_closes_the_connections_it_inherited_after_a_write(
        tmp_path: Path) -> None:
    """A child's first use is usually a request, not close(): close() still closes what the
    child inherited (as the SQLite store's docs say), not only when it comes first."""
    store = SQLiteStore(tmp_path / "sessions.sqlite3")
    store.create("k0", Record({}, 0.0, 0.0, FOREVER))
    inherited = store._local.conn
    assert inherited is not None

    def write_then_close() -> int:
        assert store.update("k0", Patch(set={"child": b"1"}))
        assert inherited.total_changes >= 0  # left open by the write: the parent's
        store.close()
        try:
            changes = inherited.total_changes
        except sqlite3.ProgrammingError:  # "Cannot operate on a closed database."
            return 0
        return 2 if changes >= 0 else 3

    assert in_child(write_then_close) == 0
    assert inherited.total_changes >= 0  # the parent's own stays open
    loaded = store.load("k0")
    assert loaded is not None and loaded.fields == {"child": b"1"}


# adopt() alone


def test_adopt_records_the_process_only_after_replacing() -> None:
    """A thread that finds the process recorded skips adopt(): the state must be replaced
    by then."""
    owner = SimpleNamespace(_pid=-1)
    seen: list[int] = []
    adopt(owner, lambda: seen.append(owner._pid))
    assert seen == [-1]
    assert owner._pid == process_id() == os.getpid()


def test_adopt_replaces_once_whatever_the_threads_and_they_wait_for_it() -> None:
    owner = SimpleNamespace(_pid=-1)
    replaced: list[int] = []
    returned: list[int] = []

    def replace() -> None:
        time.sleep(0.05)
        replaced.append(1)

    def use() -> None:
        adopt(owner, replace)
        returned.append(len(replaced))  # after the replacement, in every thread

    threads = [threading.Thread(target=use) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert replaced == [1]
    assert returned == [1] * THREADS


def test_adopt_leaves_the_owner_unadopted_if_the_replacement_raises() -> None:
    owner = SimpleNamespace(_pid=-1)

    def fail() -> None:
        raise OSError("too many open files")

    with pytest.raises(OSError, match="too many"):
        adopt(owner, fail)
    assert owner._pid == -1
    adopt(owner, lambda: None)  # the next use tries again
    assert owner._pid == process_id()


def test_a_child_adopts_even_if_a_parent_thread_was_adopting_at_the_fork() -> None:
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with process._ADOPTING[0]:
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    try:
        owner = SimpleNamespace(_pid=-1)
        assert in_child(lambda: (adopt(owner, lambda: None), 0)[1], seconds=10) == 0
    finally:
        release.set()
        holder.join(10)
