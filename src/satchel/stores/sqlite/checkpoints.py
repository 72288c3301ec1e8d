"""Checkpointing an SQLite store's WAL on a thread of its own, off the requests' path.

In WAL mode every commit appends to the ``-wal`` file; a checkpoint copies the WAL's pages
back into the database, and once all of it is copied, the next write starts the WAL over
from its beginning (https://sqlite.org/wal.html). The store turns SQLite's automatic
checkpoint off and counts the rows its writes change instead; past
:data:`CHECKPOINT_CHANGES`, the writer that crossed it asks a :class:`Checkpointer` and
returns at once. The thread then checkpoints on a connection of its own, so no request
waits for the checkpoint's ``fsync`` calls (milliseconds; tens on a busy disk), as SQLite's
documentation suggests ("run checkpoints ... in a separate thread",
https://sqlite.org/wal.html#automatic_checkpoint). The store's ``_checkpoint`` runs it:

- first a PASSIVE checkpoint, which waits for no one and holds up no writer: it copies
  what the WAL holds when it starts;
- then a second one with the store's writers held (its write lock: this process's threads
  and the other processes queued on the lock file), which copies the frames written
  meanwhile, if any, and so completes. Without it, writers that keep appending while each
  checkpoint runs leave the WAL never wholly copied, and it grows without end: 80 MB after
  20,000 writes from four threads, every frame kept. The writers wait for that second
  checkpoint once per :data:`CHECKPOINT_CHANGES` rows: an ``fsync`` or two if frames were
  written meanwhile, nothing to speak of if not.

A reader on an older snapshot can still keep the WAL from starting over; the next
checkpoint tries again. ``PRAGMA journal_size_limit`` (set by the store) then truncates
a WAL that a burst grew back to :data:`WAL_SIZE_LIMIT` bytes when it starts over.

The thread is started at the first checkpoint asked for (most stores in tests never ask),
ends when the store is closed or garbage-collected, and is started again in a forked
child (``fork`` copies no thread). It closes its connection after each checkpoint, and
the interpreter's exit, :meth:`SQLiteStore.close`, and a ``fork`` (which would copy into
the child SQLite's locks held by a thread the child does not have) wait for a checkpoint
that is running: when the app stops, the last connection to close folds the WAL into the
database file, as without the thread.
Asks that come while a checkpoint runs are merged into the next one. A checkpoint that
fails (the file removed meanwhile, a disk error, the writers' lock held past the busy
timeout) is logged at DEBUG on ``satchel``; the next one catches up: nothing written is
lost, the WAL only grows until then.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from satchel.forks import adopt, process_id

# Rows a store's writes change between its checkpoints: about SQLite's default of 1000
# pages (https://sqlite.org/pragma.html#pragma_wal_autocheckpoint): the commonest write, one
# key of a session, changes one row on one page; a new session a few rows on a few pages.
# A checkpoint holds up the request thread for a few milliseconds in all (in
# bench/sqlite_floor.py, a one-key write request took 5-8 µs more at 500 rows than at 1000,
# and 1-3 µs less with no checkpoint at all); the WAL grows to about 5-10 MB between them.
CHECKPOINT_CHANGES = 1000
WAL_SIZE_LIMIT = 16 * 1024 * 1024  # bytes: a -wal larger than this is cut back when it starts over
_EXIT_WAIT = 5.0  # seconds the interpreter's exit waits for a checkpoint that is running
log = logging.getLogger("satchel")


class Checkpointer:
    """The thread that checkpoints one store's WAL when asked (:meth:`ask`).

    ``run(owner)`` checkpoints ``owner``'s (the store's) WAL on the calling thread and
    raises if it fails (logged). The thread keeps only a weak reference to ``owner``: its
    garbage collection ends the thread. ``name`` goes into the thread's name and the log.
    """

    def __init__(self, owner: object, run: Callable[[Any], object], name: str) -> None:
        self._owner = weakref.ref(owner)
        self._run_on = run
        self._name = name
        # re-entrant: a garbage collection on the thread, while it holds the lock, may
        # collect the store, whose finalizer calls stop() on that same thread
        self._cond = threading.Condition(threading.RLock())
        self._asked = False
        self._thread: threading.Thread | None = None  # the one running; others end
        self._pid = process_id()
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self.done = 0
        """How many checkpoints the thread has finished, failed ones included."""

    def ask(self) -> None:
        """Ask for a checkpoint soon; returns at once (starting the thread if needed).
        Never raises: a thread that cannot be started (a process or memory limit) is
        logged, and the next ask tries again; the write that asked is committed."""
        with self._lock():
            self._asked = True
            if self._thread is None:
                thread = threading.Thread(target=self._loop, daemon=True,
                                          name=f"satchel checkpoint {self._name}")
                self._thread = thread  # before start(): the thread checks it is the one
                try:
                    thread.start()
                except RuntimeError as err:  # "can't start new thread"
                    self._thread = None
                    log.warning("SQLite store %s: cannot start the checkpoint thread (%s);"
                                " the WAL grows until a later write starts it", self._name,
                                err)
                    return
                _RUNNING.add(self)
                owner = self._owner()
                if self._finalizer is None and owner is not None:
                    # not at exit: _stop_all waits for the thread then
                    self._finalizer = weakref.finalize(owner, self.stop)
                    self._finalizer.atexit = False
            self._cond.notify_all()

    def stop(self) -> threading.Thread | None:
        """Let the thread end, after the checkpoint it may be running (not waited for);
        returns it (None if none runs). A later :meth:`ask` starts a new one."""
        with self._lock():
            thread, self._thread = self._thread, None
            self._cond.notify_all()
        return thread

    def _lock(self) -> threading.Condition:
        if self._pid != process_id():
            adopt(self, self._reset_in_child)
        return self._cond

    def _reset_in_child(self) -> None:
        """In a forked child: the parent's thread was not copied, and the condition's lock
        may have been copied held (called once per child: see
        :func:`~satchel.forks.adopt`)."""
        self._cond, self._thread, self._asked = threading.Condition(threading.RLock()), None, False

    def _loop(self) -> None:
        cond, me = self._cond, threading.current_thread()
        while True:
            with cond:
                cond.wait_for(lambda: self._asked or self._thread is not me)
                if self._thread is not me:
                    return
                self._asked = False
            owner = self._owner()
            if owner is None:
                return
            try:
                with _NO_FORK:  # a fork waits for it: see _NO_FORK below
                    self._run_on(owner)
            except Exception as err:  # logged: the next checkpoint catches up
                log.debug("SQLite store %s: checkpoint failed: %s", self._name, err)
            finally:
                del owner
                self.done += 1


_RUNNING: weakref.WeakSet[Checkpointer] = weakref.WeakSet()  # those that started a thread


@atexit.register
def _stop_all() -> None:
    """At the interpreter's exit, end the checkpoint threads, letting a running checkpoint
    finish (up to :data:`_EXIT_WAIT` seconds in all): a daemon thread stopped in the middle
    would leave its connection open, and the WAL is folded into the database file, and
    deleted, only when the last connection to it closes."""
    threads = [checkpointer.stop() for checkpointer in list(_RUNNING)]
    deadline = time.monotonic() + _EXIT_WAIT
    for thread in threads:
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))


# Held while a checkpoint runs, and by a thread that forks (os.register_at_fork): a fork
# waits for a running checkpoint to end. A child forked in the middle of one would inherit
# SQLite's locks and mutexes held by a thread it does not have, and hang on them (closing
# the connection the thread left behind, or opening its own to the same file).
_NO_FORK = threading.Lock()
if hasattr(os, "register_at_fork"):  # pragma: no branch - every POSIX system
    os.register_at_fork(before=_NO_FORK.acquire, after_in_parent=_NO_FORK.release,
                        after_in_child=_NO_FORK.release)
