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
from collections.abc import Iterator
from contextlib import contextmanager

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_REOPEN_INTERVAL = 1.0  # seconds between tries to open a lock file that could not be opened
_FIRST_PAUSE, _LONGEST_PAUSE = 0.0001, 0.001  # seconds between tries to take the file lock


class Locked(Exception):
    """Another writer held the lock for longer than the store's timeout."""


class Writers:
    """The write lock of the SQLite file at ``path``, for one store in one process."""

    def __init__(self, path: str) -> None:
        # no file for an in-memory or temporary database (their writers are this process's)
        self._in_file = path not in ("", ":memory:")
        self.lock_path = path + "-lock"
        self._db_path = path
        self._pid = os.getpid()
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._retry_at = 0.0
        self._stale = False

    @contextmanager
    def held(self, timeout: float) -> Iterator[float]:
        """Hold the lock for the body: wait for this process's other writers, then for the
        other processes'. Yields the seconds left of ``timeout``; raises :class:`Locked`
        after ``timeout`` seconds of waiting."""
        deadline = time.monotonic() + timeout
        if self._pid != os.getpid():
            self._forked()
        threads = self._threads
        if not threads.acquire(timeout=timeout):
            raise Locked
        try:
            fd = self._file()
            taken = fd is not None and _take(fd, deadline)
            try:
                yield max(0.0, deadline - time.monotonic())
            finally:
                if taken:
                    fcntl.flock(fd, fcntl.LOCK_UN)  # type: ignore[arg-type]
                if self._stale:
                    self._close()
        finally:
            threads.release()

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
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)

    def _forked(self) -> None:
        # the inherited descriptor is shared with the parent: its lock is the parent's (kept
        # while the parent's descriptor is open), and the thread lock may be held by a thread
        # that was not copied
        self._pid, self._threads, self._fd, self._stale = os.getpid(), threading.Lock(), None, False

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


def _take(fd: int, deadline: float) -> bool:
    """Take the file lock on ``fd``, trying until ``deadline`` (monotonic seconds): True once
    taken, False if the file system cannot lock (SQLite's lock alone then); raises
    :class:`Locked` past the deadline."""
    pause = _FIRST_PAUSE
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        except OSError:  # ENOLCK (some network file systems): leave it to SQLite
            return False
        now = time.monotonic()
        if now >= deadline:
            raise Locked
        time.sleep(min(pause, deadline - now))
        pause = min(pause * 2, _LONGEST_PAUSE)
