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

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_REOPEN_INTERVAL = 1.0  # seconds between tries to open a lock file that could not be opened
_FIRST_PAUSE, _LONGEST_PAUSE = 0.0001, 0.001  # seconds between tries to take the file lock
_PID = [os.getpid()]  # this process's id, kept up to date in a forked child
if hasattr(os, "register_at_fork"):  # pragma: no branch - every POSIX system
    os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


def process_id() -> int:
    """This process's id (``os.getpid()``, kept up to date across ``fork`` without a
    system call per use)."""
    return _PID[0]


class Locked(Exception):
    """Another writer held the lock for longer than the store's timeout."""


class Writers:
    """The write lock of the SQLite file at ``path``, for one store in one process."""

    def __init__(self, path: str) -> None:
        # no file for an in-memory or temporary database (their writers are this process's)
        self._in_file = path not in ("", ":memory:")
        self.lock_path = path + "-lock"
        self._db_path = path
        self._pid = _PID[0]
        self._threads = threading.Lock()
        self._taken = False  # whether the holder (there is one at a time) has the file lock
        self._fd: int | None = None
        self._retry_at = 0.0
        self._stale = False

    def acquire(self, timeout: float) -> float:
        """Take the lock: wait for this process's other writers, then for the other
        processes'. Returns the seconds left of ``timeout`` (seconds); raises
        :class:`Locked` after waiting ``timeout``. :meth:`release` gives it back."""
        if self._pid != _PID[0]:
            self._forked()
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
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._taken = True
            return left
        except BlockingIOError:
            pass
        except OSError:  # ENOLCK (some network file systems): leave it to SQLite
            return left
        try:
            left = _wait(fd, left)
        except BaseException:
            threads.release()
            raise
        self._taken = True
        return left

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
        next write opens it again at the path (the folder may have been moved or replaced)."""
        self._stale = True
        if self._threads.acquire(blocking=False):
            try:
                self._close()
            finally:
                self._threads.release()

    def _close(self) -> None:
        fd, self._fd, self._stale, self._retry_at = self._fd, None, False, 0.0
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        if self._fd is not None and self._pid == _PID[0]:
            os.close(self._fd)

    def _forked(self) -> None:
        # the inherited descriptor is shared with the parent: its lock is the parent's (kept
        # while the parent's descriptor is open), and the thread lock may be held by a thread
        # that was not copied
        self._pid, self._threads, self._fd, self._stale = _PID[0], threading.Lock(), None, False

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


def _wait(fd: int, timeout: float) -> float:
    """Take the file lock on ``fd``, trying for ``timeout`` seconds: the seconds left once
    taken; raises :class:`Locked` past it."""
    deadline = time.monotonic() + timeout
    pause = _FIRST_PAUSE
    while True:
        now = time.monotonic()
        if now >= deadline:
            raise Locked
        time.sleep(min(pause, deadline - now))
        pause = min(pause * 2, _LONGEST_PAUSE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return max(0.0, deadline - time.monotonic())
        except BlockingIOError:
            pass
