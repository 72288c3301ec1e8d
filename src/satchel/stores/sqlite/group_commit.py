"""Group commit: the writes that a store's threads ask for while another is writing, run
together in one transaction.

A thread that asks to write while another has the turn (one thread at a time has it)
queues its work and waits for the turn. The thread that gets it next takes every work
queued by then, its own and the others', and runs them in one transaction (the store's:
one write lock taken, one ``BEGIN IMMEDIATE``, one check of the files, one ``COMMIT``); a
thread whose work another ran finds it done when its turn comes, and returns. Alone, a
write runs as it would without this; under load, writes share the lock and the commit.

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

    def __init__(self, work: Callable[[Any], Any]) -> None:
        self.work = work
        self.deadline = 0.0  # set when it is queued, or runs with others
        self.done = False
        self.committed = False
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommit:
    """The queue of a store's writes, and the turn to run them (one per store and process; a
    forked child must make its own: its parent's turn may be held by a thread the child
    does not have)."""

    def __init__(self) -> None:
        self._queue: list[Pending] = []
        self._queue_lock = threading.Lock()
        self._turn = threading.Lock()

    @property
    def running(self) -> bool:
        """Whether a thread has the turn (is running a transaction, or about to)."""
        return self._turn.locked()

    def write(self, work: Callable[[Any], Any], run: Callable[[list[Pending], float], None],
              timeout: float, describe: Callable[[], str]) -> Any:
        """Run ``work`` in a transaction, this thread's, ``run(batch, seconds_left)``, or
        another's; return what it returned, or raise what it raised.

        ``run`` must set each work's ``result`` or ``error``, and ``committed`` once the
        transaction committed; it may raise for the whole batch. It is given the seconds
        left to the latest deadline of the batch's callers. A caller that finds another
        thread with the turn queues its work and waits for the turn up to ``timeout``
        seconds: past it, or if a signal interrupts the wait, the work is taken back, never
        run, and :class:`StoreUnavailable` raised (``describe()`` says what was locked; an
        interrupt is raised as it is). A work a transaction has taken is waited for, however
        long: that transaction's waits are bounded by its callers' deadlines.
        """
        pending = Pending(work)
        turn = self._turn
        queued = not turn.acquire(False)
        if queued:  # another thread has the turn: wait for it, queued
            pending.deadline = time.monotonic() + timeout
            with self._queue_lock:
                self._queue.append(pending)
            try:
                got = turn.acquire(True, timeout)
            except BaseException:  # a signal's handler raised
                with self._queue_lock:
                    self._take_back(pending)
                raise
            if not got:
                with self._queue_lock:
                    taken = not self._take_back(pending)
                if not taken:
                    raise StoreUnavailable(describe())
                turn.acquire()  # a transaction is running it: its outcome comes soon
            if pending.done:  # another thread's transaction ran it
                turn.release()
                return _outcome(pending)
        batch: list[Pending] = []
        try:  # holding the turn
            left = timeout
            if queued or self._queue:  # others queued while the last transaction ran
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                if not queued:
                    pending.deadline = time.monotonic() + timeout
                    batch.append(pending)
                left = max(0.0, max(item.deadline for item in batch) - time.monotonic())
            else:
                batch = [pending]
            run(batch, left)
        except BaseException as err:
            for item in batch:
                if item is not pending and not item.committed:
                    item.error = _for_another(err)
            raise
        finally:
            for item in batch:
                item.done = True
            turn.release()
        return _outcome(pending)

    def _take_back(self, pending: Pending) -> bool:
        """Remove ``pending`` from the queue (holding the queue's lock); False if a
        transaction has taken it already."""
        queued = any(item is pending for item in self._queue)
        if queued:
            self._queue = [item for item in self._queue if item is not pending]
        return queued


def _outcome(pending: Pending) -> Any:
    """What the work of ``pending`` returned; raises what it raised."""
    if pending.error is not None:
        error, pending.error = pending.error, None  # no cycle through the traceback
        raise error
    return pending.result


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
