"""Group commit: the writes that a store's threads ask for while another is writing, run
together in one transaction.

A thread that asks to write while a transaction of the store's is running queues its work
and waits. When the transaction ends, the first waiting thread to wake takes every work
queued by then, its own and the others', and runs them in one transaction (the store's:
one write lock taken, one ``BEGIN IMMEDIATE``, one check of the files, one ``COMMIT``); a
thread whose work another ran finds it done and returns. Alone, a write runs as it would
without this; under load, writes share the lock and the commit.

Why: under a threaded server the write lock is the bottleneck of a write-heavy load, and
most of its cycle is not the write but the handing over: the next writer must wake, then
get the interpreter lock (measured under gunicorn, 2 processes x 4 threads: the lock held
35 % of the time, handed over the rest). See docs/stores/sqlite.rst for the figures.

Each work of a transaction of several runs in a ``SAVEPOINT`` of its own: a work that raises
is undone alone (``ROLLBACK TO``), and its caller gets the exception; the others commit. If
the transaction fails as a whole (an error that ends it, the commit, the write lock's
timeout), every caller in it gets :class:`~satchel.errors.StoreUnavailable` and nothing of
it is written; an error after the commit (releasing the lock) reaches only the thread that
ran it, and the others get their outcome. The wait of a caller whose work is still queued
is bounded by its timeout (the store's ``busy_timeout``); a transaction's own waits, by the
latest deadline of its callers.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from satchel.errors import StoreUnavailable


class Pending:
    """One queued write: the work and its caller's deadline (``time.monotonic()``), then
    what it returned or raised once done, and whether its transaction committed."""

    __slots__ = ("committed", "deadline", "done", "error", "result", "work")

    def __init__(self, work: Callable[[Any], Any], deadline: float) -> None:
        self.work = work
        self.deadline = deadline
        self.done = False
        self.committed = False
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommit:
    """The queue of a store's writes, and whether a transaction is running them (one per
    store and process; a forked child must make its own: its parent's may be in use by a
    thread the child does not have)."""

    def __init__(self) -> None:
        self._queue: list[Pending] = []
        self._cond = threading.Condition(threading.Lock())
        self._running = False

    def write(self, work: Callable[[Any], Any], run: Callable[[list[Pending], float], None],
              timeout: float, describe: Callable[[], str]) -> Any:
        """Queue ``work`` and return what it returned (or raise what it raised), once it ran
        in a transaction: this thread's, ``run(batch, seconds_left)``, or another's.

        ``run`` must set each work's ``result`` or ``error``, and ``committed`` once the
        transaction committed; it may raise for the whole batch. It is given the seconds
        left to the latest deadline of the batch's callers. A caller waits for a running
        transaction up to ``timeout`` seconds while its work is still queued: past it, or if
        the wait is interrupted (a signal), the work is taken back, never run, and
        :class:`StoreUnavailable` raised (``describe()`` says what was locked; an interrupt
        is raised as it is). A work a transaction has taken is waited for: that transaction
        is bounded by its callers' deadlines. If the caller is interrupted then, the work
        may still be written.
        """
        deadline = time.monotonic() + timeout
        pending = Pending(work, deadline)
        cond, runner, batch = self._cond, False, []
        try:
            with cond:
                self._queue.append(pending)
                try:
                    while self._running and not pending.done:
                        left = deadline - time.monotonic()
                        if left > 0 and any(item is pending for item in self._queue):
                            cond.wait(left)
                        elif left > 0 or not self._take_back(pending):
                            cond.wait()  # taken by the running transaction
                        else:
                            raise StoreUnavailable(describe())
                except BaseException:
                    self._take_back(pending)
                    raise
                if not pending.done:
                    runner = self._running = True
                    batch, self._queue = self._queue, []
            if runner:
                run(batch, max(0.0, max(item.deadline for item in batch) - time.monotonic()))
        except BaseException as err:
            for item in batch:
                if item is not pending and not item.committed:
                    item.error = _for_another(err)
            raise
        finally:
            if runner:
                with cond:
                    if not batch:  # interrupted before it took the queue: not run
                        self._take_back(pending)
                    for item in batch:
                        item.done = True
                    self._running = False
                    cond.notify_all()
        if pending.error is not None:
            error, pending.error = pending.error, None  # no cycle through the traceback
            raise error
        return pending.result

    def _take_back(self, pending: Pending) -> bool:
        """Remove ``pending`` from the queue (holding the condition's lock); False if a
        transaction has taken it already."""
        queued = any(item is pending for item in self._queue)
        if queued:
            self._queue = [item for item in self._queue if item is not pending]
        return queued


def _for_another(err: BaseException) -> BaseException:
    """What a caller gets whose work was in a transaction that failed in another thread:
    a :class:`StoreUnavailable` of its own (an exception object is raised in one thread)."""
    new = StoreUnavailable(str(err) if isinstance(err, StoreUnavailable)
                           else f"the write transaction failed: {err!r}")
    new.__cause__ = err
    return new


def run_works(conn: Any, batch: list[Pending], path: str) -> None:
    """Run the works of ``batch`` on ``conn`` (an ``sqlite3`` connection with a ``cur``, in
    an open transaction), setting each one's ``result`` or ``error``.

    A lone work runs as it is, and what it raises is raised (its caller is this thread; the
    transaction is rolled back). Of several, each runs in a ``SAVEPOINT``: one that raises
    an ``Exception`` is undone alone and keeps it as its error (a ``sqlite3.DatabaseError``
    as :class:`StoreUnavailable`, as the store raises it, naming ``path``). If the undo
    itself fails (an error that ended the transaction), that is raised, for the batch.
    """
    if len(batch) == 1:
        item = batch[0]
        item.error = None
        item.result = item.work(conn)
        return
    cur = conn.cur
    for item in batch:
        item.error = None
        cur.execute("SAVEPOINT satchel_write")
        try:
            item.result = item.work(conn)
        except Exception as err:
            if not conn.in_transaction:  # the error ended it (a disk error): the batch fails
                raise
            cur.execute("ROLLBACK TO satchel_write")
            if isinstance(err, sqlite3.DatabaseError):
                unavailable = StoreUnavailable(f"SQLite store {path!r}: {err}")
                unavailable.__cause__ = err
                item.error = unavailable
            else:
                item.error = err
        cur.execute("RELEASE satchel_write")
