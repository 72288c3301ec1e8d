"""An SQLite store's connections: one per thread, to the files at the store's path.

A connection is opened on a thread's first call, and reopened when its files have left the
path (see :mod:`~satchel.stores.sqlite.files`); a forked child opens its own. A file put
in place of the database beside the old file's -wal is not opened: SQLite would apply
that WAL to it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

from satchel.errors import StoreUnavailable
from satchel.forks import adopt, process_id
from satchel.stores.sqlite.checkpoints import WAL_SIZE_LIMIT
from satchel.stores.sqlite.files import (
    Closer,
    Connection,
    WalStamp,
    file_identity,
    folder_of,
    old_wal_left,
    still_there,
    use_wal,
    wal_stamp,
    why_unavailable,
)
from satchel.stores.sqlite.group_commit import GroupCommit
from satchel.stores.sqlite.schema import prepare
from satchel.stores.sqlite.writers import Writers

_READ_CHECK_INTERVAL = 1.0  # seconds between a connection's file checks on reads
_INHERITED: list[object] = []  # connections of a parent process, kept from being closed
log = logging.getLogger("satchel")
_OLD_WAL = (
    "the database file was replaced, but the -wal next to it is still the old file's, which"
    " SQLite would apply to the new file (https://sqlite.org/howtocorrupt.html); sessions get"
    " 503 until the -wal and -shm are removed, which SQLite does not do for a replaced file:"
    " remove them (no connection of the store's uses them any more). To restore a backup"
    " while the app runs, replace the whole folder, or remove the -wal and -shm as you"
    " put the file in place")


class Connections:
    """The per-thread connections of :class:`~satchel.stores.sqlite.SQLiteStore` to the
    file at ``path``, and its write lock (:class:`~satchel.stores.sqlite.writers.Writers`);
    ``busy_timeout`` is in seconds."""

    def __init__(self, path: str, busy_timeout: float) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._busy_ms = int(busy_timeout * 1000)
        self._local = threading.local()
        self._opened: weakref.WeakSet[Connection] = weakref.WeakSet()  # every thread's
        self._pid = process_id()  # whose connections _local holds
        self._opened_lock = threading.Lock()
        self._inherited: list[Connection] = []  # a forked child's, from its parent: see close
        self._writers = Writers(self.path)
        self._group = GroupCommit()  # the writes of this process's threads
        self._old_wal: WalStamp | None = None  # a replaced file's -wal, left at the path

    def _connect(self) -> Connection:
        """This thread's connection, reopened if its files have left the path, or if
        :meth:`_close_all` retired it. Not held: see :meth:`_take`."""
        if self._pid != process_id():
            adopt(self, self._forked)
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            now = time.monotonic()
            if now - conn.checked_at < _READ_CHECK_INTERVAL:  # never for a retired one
                return conn
            if not conn.retired:  # (retired: closed by _close_all, or by its Closer)
                if still_there(conn, self.path):
                    conn.checked_at = now
                    return conn
                self._drop(conn)
        return self._open()

    def _take(self) -> Connection:
        """This thread's connection, held (``conn.busy``) for one operation: release it
        with ``conn.busy.release()``. :meth:`_close_all` on another thread waits for it."""
        while True:
            conn = self._connect()
            conn.busy.acquire()
            if not conn.retired:
                return conn
            conn.busy.release()  # retired (by close() since _connect, or before a write of
            self._local.conn = None  # this thread's set checked_at): the next opens anew

    def _read(self, sql: str, params: Sequence[object]) -> list[Any]:
        """The rows of one read on this thread's connection; :class:`StoreUnavailable` if the
        file cannot be read."""
        try:  # not self._errors(): a generator context costs about a microsecond a call
            conn = self._take()
            try:
                return conn.cur.execute(sql, params).fetchall()
            finally:
                conn.busy.release()
        except sqlite3.DatabaseError as err:
            raise StoreUnavailable(f"SQLite store {self.path!r}: {err}") from err

    def _open(self) -> Connection:
        if self._old_wal is not None:
            if wal_stamp(self.path) == self._old_wal:
                raise StoreUnavailable(f"SQLite store {self.path!r}: {_OLD_WAL}")
            self._old_wal = None
        try:
            new = sqlite3.connect(self.path, timeout=self._busy_timeout, factory=Connection,
                                  isolation_level=None, check_same_thread=False)
            new.busy = threading.RLock()  # re-entrant: an operation's own close (_drop)
            closer = Closer(new)  # closes it if a PRAGMA or the schema's upgrade fails, too
            use_wal(new, self._busy_timeout)
            new.execute("PRAGMA synchronous=NORMAL")
            new.execute("PRAGMA wal_autocheckpoint=0")  # the store's own: see checkpoints.py
            new.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            new.execute("PRAGMA foreign_keys=ON")
            prepare(new)
        except sqlite3.DatabaseError as err:
            why = why_unavailable(self.path, err)
            raise StoreUnavailable(f"SQLite store {self.path!r}: {why}") from err
        new.identity, new.checked_at = file_identity(self.path), time.monotonic()
        new.folder = folder_of(self.path)
        new.busy_ms = self._busy_ms  # what connect(timeout=) set
        new.cur = new.cursor()
        with self._opened_lock:
            self._opened.add(new)
        local = self._local
        local.conn, local.closer = new, closer
        return new

    def _forked(self) -> None:
        """In a forked child (``gunicorn --preload``): never use, nor close, the parent's
        connections, which SQLite forbids (https://sqlite.org/howtocorrupt.html 2.6); they
        are left open, and this process opens its own. Called through
        :func:`~satchel.forks.adopt` (once per child, whatever its threads)."""
        _INHERITED.append((self._local, self._opened))  # their Closers would close them
        self._inherited.extend(self._opened)  # for _close_all
        self._local, self._opened = threading.local(), weakref.WeakSet()
        self._opened_lock = threading.Lock()  # a thread not copied may have held it
        self._group = GroupCommit()  # (so may its turn, and its queue is the parent's)

    def _drop(self, conn: Connection) -> None:
        """Close this thread's connection, whose files are no longer the ones at the path."""
        old_wal = old_wal_left(self.path, conn.identity)
        if old_wal is not None:
            self._old_wal = old_wal
            log.error("SQLite store %r: %s", self.path, _OLD_WAL)
        else:
            log.warning("SQLite store %r: the database file, or its -wal or -shm, is no longer"
                        " the one at the path (folder removed or moved, file replaced);"
                        " reopening", self.path)
        self._writers.close()  # the lock file may have moved with the database
        self._close_mine(conn)  # SQLite neither checkpoints nor deletes a moved file's -wal

    def _close_mine(self, conn: Connection) -> None:
        """Close ``conn``, this thread's connection; the thread's next call opens a new one."""
        self._local.conn = self._local.closer = None
        with self._opened_lock:
            self._opened.discard(conn)
        with conn.busy:
            conn.close()

    def _close_all(self) -> None:
        """Close every thread's connection, and the lock file.

        A connection another thread is running a statement on is closed once the statement
        is done (waiting up to the busy timeout, plus a second; past that, it is left to its
        thread, which closes it on its next call, or when it ends). Each thread opens a new
        connection on its next call.
        """
        if self._pid != process_id():
            adopt(self, self._forked)
        # A forked child closes the connections it inherited (whichever of its threads
        # replaced them), without waiting for their threads, which were not copied: SQLite
        # keeps a process's locks in the process, so one a parent's thread held at the fork
        # would block the child's own writes. (A fork while a thread runs a statement can
        # copy SQLite's own mutexes held, and hang the child here or when it opens a
        # connection: fork before serving.)
        inherited, self._inherited = self._inherited, []
        for conn in inherited:
            conn.close()
        with self._opened_lock:
            opened = list(self._opened)
            self._opened.clear()
        for conn in opened:  # first all retired: none is used for a new statement
            conn.retired, conn.checked_at = True, float("-inf")
        for conn in opened:
            if conn.busy.acquire(timeout=self._busy_timeout + 1.0):
                try:
                    conn.close()
                finally:
                    conn.busy.release()
        self._writers.close()
