"""One writer at a time to an SQLite file: the store's threads, then its processes.

SQLite lets one connection write at a time. A writer that finds the file locked waits in
SQLite's busy handler, which sleeps in growing steps (1, 2, 5, 10 ... 100 ms) and does
not wake when the lock frees: with a few threads and processes writing at once, a write
waits tens of milliseconds, or, losing every race, hundreds. So the store queues its
writers itself: the threads of a store on a :class:`threading.Lock`, and the store's
processes on an advisory lock (``flock``) of a file next to the database, ``<path>-lock``
(created with the database file's permission bits; never deleted: it holds no data). A
waiting writer then wakes within a millisecond or two of the lock freeing, and SQLite's
own lock is free by the time it asks for it (writers not using this lock, an older
version of satchel, say, still wait in SQLite's busy handler).

A writer that finds the file lock taken by another process first tries it again for up to
:data:`SPIN` seconds (a millisecond), letting the other threads run between tries
(``time.sleep(0)``): under load most holds are that short (one transaction), and a writer
that takes the lock in its own thread saves the wake-ups of the waiter below. Under
gunicorn (two processes of four threads writing one file, ``bench/load.py``'s servers),
it cut a write's voluntary context switches from 5.7-6.5 to 4.0-4.4 and its CPU by 7-23 %
in three rounds. Past that it does not poll: a thread
of the store's own (:class:`_Waiter`, one per lock file, started on first need) waits in a
blocking ``flock`` and hands the lock to the writer the moment it is granted; the writer
waits on a condition, up to its timeout, and if it gives up, the waiter lets the lock go
as soon as it gets it. Polling with sleeps of 0.1 to 1 ms for the whole wait cost a
contended write about 120 µs of CPU under gunicorn, and 8 % of its throughput.

Without :mod:`fcntl` (Windows), or if the lock file cannot be opened (a read-only folder)
or locked (a file system without ``flock``), the processes are left to SQLite, as before
(an in-memory database has no lock file: no other process can reach it).
A process that dies holding the lock frees it (the kernel drops a dead process's locks).
A child process (``fork``) makes its own lock file descriptor and thread lock: the ones it
inherits are its parent's.
"""

from __future__ import annotations

import os
import threading
import time

from satchel.forks import adopt, process_id

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_REOPEN_INTERVAL = 1.0  # seconds between tries to open a lock file that could not be opened
SPIN = 0.001  # seconds a writer retries a taken file lock itself before asking the waiter


class Locked(Exception):
    """Another writer held the lock for longer than the store's timeout."""


class Writers:
    """The write lock of the SQLite file at ``path``, for one store in one process."""

    def __init__(self, path: str) -> None:
        # no file for an in-memory or temporary database (their writers are this process's)
        self._in_file = path not in ("", ":memory:")
        self.lock_path = path + "-lock"
        self._db_path = path
        self._pid = process_id()
        self._threads = threading.Lock()
        self._taken = False  # whether the holder (there is one at a time) has the file lock
        self._fd: int | None = None
        self._waiter: _Waiter | None = None  # for self._fd, started on first need
        self._retry_at = 0.0
        self._stale = False

    def acquire(self, timeout: float) -> float:
        """Take the lock: wait for this process's other writers, then for the other
        processes'. Returns the seconds left of ``timeout`` (seconds); raises
        :class:`Locked` after waiting ``timeout``. :meth:`release` gives it back."""
        if self._pid != process_id():
            adopt(self, self._forked)
        threads, left = self._threads, timeout
        if not threads.acquire(False):
            start = time.monotonic()
            if not threads.acquire(True, timeout):
                raise Locked
            left = max(0.0, timeout - (time.monotonic() - start))
        fd = self._fd if self._fd is not None else self._file()
        self._taken = False
        if fd is None:
            return left
        waiter = self._waiter
        if waiter is None or not waiter.busy:  # (busy: it may be granted the lock any time)
            start = time.monotonic()
            try:
                self._taken = _try_lock(fd, min(SPIN, left))
            except OSError:  # ENOLCK (some network file systems): leave it to SQLite
                return left
            except BaseException:  # a signal's handler raised: the next writer's turn
                threads.release()
                raise
            if self._taken:
                return left  # less a spin's millisecond at most
            left = max(0.0, left - (time.monotonic() - start))
        try:
            if waiter is None:
                waiter = self._waiter = _Waiter(fd)
            start = time.monotonic()
            try:
                took = waiter.take(left)
            except OSError:  # as at the first try: leave it to SQLite
                return left
            if not took:
                raise Locked
        except BaseException:
            threads.release()
            raise
        self._taken = True
        return max(0.0, left - (time.monotonic() - start))

    def release(self) -> None:
        """Give back the lock taken by :meth:`acquire` (on the same thread)."""
        try:
            if self._taken:
                self._taken = False
                fcntl.flock(self._fd, fcntl.LOCK_UN)  # type: ignore[arg-type]
            if self._stale:
                self._close()
        finally:
            self._threads.release()

    def close(self) -> None:
        """Close the lock file, now or, if a writer holds it, when that writer is done; the
        next write opens it again at the path (the folder may have been moved or replaced).
        In a forked child, what it closes is the child's own (the parent's is left as it is,
        as :meth:`acquire` leaves it)."""
        if self._pid != process_id():
            adopt(self, self._forked)
        self._stale = True
        threads = self._threads
        if threads.acquire(blocking=False):
            try:
                self._close()
            finally:
                threads.release()

    def _close(self) -> None:
        fd, self._fd, self._stale, self._retry_at = self._fd, None, False, 0.0
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.stop()
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        if self._pid != process_id():
            return
        if self._waiter is not None:
            self._waiter.stop()
        if self._fd is not None:
            os.close(self._fd)

    def _forked(self) -> None:
        # the inherited descriptor is shared with the parent: its lock is the parent's (kept
        # while the parent's descriptor is open), and the thread lock may be held by a thread
        # that was not copied; neither is the parent's waiter thread
        # (see satchel.forks.adopt: one thread of the child does this, once)
        self._threads, self._fd, self._stale = threading.Lock(), None, False
        self._waiter = None

    def _file(self) -> int | None:
        if self._fd is not None or fcntl is None or not self._in_file:
            return self._fd
        now = time.monotonic()
        if now < self._retry_at:
            return None
        try:
            mode = os.stat(self._db_path).st_mode & 0o666
        except OSError:
            mode = 0o644
        try:
            try:
                self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, mode)
            except PermissionError:  # a lock file of another user: flock needs no write access
                self._fd = os.open(self.lock_path, os.O_RDONLY)
        except OSError:  # a missing or read-only folder: SQLite's own locking, as before
            self._retry_at = now + _REOPEN_INTERVAL
        return self._fd


def _try_lock(fd: int, seconds: float) -> bool:
    """Try the file lock on ``fd`` without blocking, and again for up to ``seconds`` if it
    is taken, letting the interpreter lock go between tries (other threads run meanwhile):
    True once taken, False if it was still taken at the end. Raises the ``OSError`` of a
    file system without ``flock``."""
    until = 0.0
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            now = time.monotonic()
            until = until or now + seconds
            if now >= until:
                return False
        time.sleep(0)


class _Waiter:
    """A thread that takes the file lock with a blocking ``flock`` for the writer waiting on
    :meth:`take`: the writer wakes when the lock is granted, with no polling.

    It locks through a duplicate of the descriptor (the same open file, so the same lock,
    which the writer releases on its own descriptor), so closing the store's descriptor
    never leaves this thread working on a number the process has given to another file.
    A lock it is granted after its writer gave up, or after :meth:`stop`, it lets go at
    once. One writer at a time asks (the store's threads queue on their own lock first).
    """

    def __init__(self, fd: int) -> None:
        self._fd = os.dup(fd)
        self._cond = threading.Condition(threading.Lock())
        self._asked = False  # a writer is waiting in take()
        self._granted = False  # the thread holds the lock for that writer
        self._error: OSError | None = None
        self._stopped = False
        self.busy = False
        """True while the thread waits in ``flock`` (or is about to), for a writer that may
        have given up: until then, a writer must ask it (:meth:`take`), not take the lock
        on its own, which the thread would then let go of."""
        threading.Thread(target=self._run, daemon=True, name="satchel sqlite lock").start()

    def take(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the file lock: True once this caller holds it
        (released with ``flock(LOCK_UN)`` on the store's descriptor), False if the time ran
        out. Re-raises the ``OSError`` the blocking ``flock`` failed with."""
        with self._cond:
            self._asked, self._error = True, None
            self._cond.notify_all()
            taken = False
            try:
                self._cond.wait_for(lambda: self._granted or self._error is not None, timeout)
                taken = self._granted
            finally:  # also on an exception while waiting (KeyboardInterrupt)
                self._asked = False
                if self._granted:
                    self._granted = False
                    if not taken:
                        fcntl.flock(self._fd, fcntl.LOCK_UN)
                self._cond.notify_all()
            if taken:
                return True
            if self._error is not None:
                raise self._error
            return False

    def stop(self) -> None:
        """End the thread: now if it is idle, else once its ``flock`` returns."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _run(self) -> None:
        fd, cond = self._fd, self._cond
        try:
            while True:
                with cond:
                    cond.wait_for(lambda: self._asked or self._stopped)
                    if self._stopped:
                        return
                    self.busy = True
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # the interpreter lock is let go meanwhile
                except OSError as err:
                    with cond:
                        self.busy = False
                        self._error = err
                        cond.notify_all()
                        cond.wait_for(lambda: not self._asked or self._stopped)
                    continue
                with cond:
                    if self._asked and not self._stopped:
                        self.busy = False
                        self._granted = True
                        cond.notify_all()
                        cond.wait_for(lambda: not self._granted or self._stopped)
                        continue
                    fcntl.flock(fd, fcntl.LOCK_UN)  # its writer gave up meanwhile
                    self.busy = False
        finally:
            os.close(fd)
