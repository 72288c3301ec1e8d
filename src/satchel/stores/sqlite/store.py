"""SQLiteStore: sessions in one SQLite file (see :mod:`satchel.stores.sqlite`)."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from satchel.errors import ConfigError, StoreUnavailable
from satchel.forks import adopt, process_id
from satchel.lifetime import Clock, system_clock
from satchel.store import DEVICE_MAX, Patch, Record, Updated
from satchel.stores.sqlite.checkpoints import CHECKPOINT_CHANGES, Checkpointer
from satchel.stores.sqlite.connections import Connections
from satchel.stores.sqlite.files import (
    Connection,
    FileMoved,
    checkpoint_wal,
    set_busy_timeout,
    still_there,
    try_write,
    unusable,
    why_unavailable,
)
from satchel.stores.sqlite.group_commit import Pending, run_works
from satchel.stores.sqlite.purge import PurgeRows
from satchel.stores.sqlite.schema import (
    ACQUIRE_LOCK,
    DELETE,
    INSERT_META,
    IS_LIVE,
    LOAD,
    RELEASE_LOCK,
    UPSERT_FIELD,
)
from satchel.stores.sqlite.updates import update_work
from satchel.stores.sqlite.users import UserRows
from satchel.stores.sqlite.writers import Locked

_T = TypeVar("_T")
log = logging.getLogger("satchel")
_NOTHING = Patch()


class SQLiteStore(Connections, PurgeRows, UserRows):
    """Sessions in an SQLite file. ``path`` is created with its schema if absent.

    Each thread that uses the store gets its own connection, closed when that
    thread ends, when the store is garbage-collected, or by :meth:`close`.
    Calls raise :class:`StoreUnavailable` when the file cannot be opened or
    written (a missing folder, a read-only disk, a lock held longer than
    ``busy_timeout`` seconds).

    The constructor opens the file (creating or upgrading its schema) and tries
    a write (rolled back). If the folder does not exist (not created, or a
    volume not mounted, yet) or the file cannot be used for a reason that may
    pass (a lock held too long), the store is built all the same: it logs one
    line on ``satchel``, its calls raise :class:`StoreUnavailable` (503) until
    the file can be opened, and the schema is created (or upgraded) then. A
    path that cannot work as configured raises :class:`ConfigError`: a folder,
    a part of the folder that is a file, a file that is not an SQLite database,
    a file or folder this process may not write. The folder is never created.
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock = system_clock,
                 busy_timeout: float = 5.0) -> None:
        Connections.__init__(self, os.fspath(path), busy_timeout)
        self._clock = clock
        self._changes = 0  # rows changed since the last checkpoint
        self._checkpoints = Checkpointer(self, SQLiteStore._checkpoint, self.path)
        try:
            with self._errors():
                conn = self._take()
                try:
                    try_write(conn)
                finally:
                    conn.busy.release()
        except StoreUnavailable as err:
            self.close()
            why = unusable(self.path, err.__cause__)
            if why is not None:
                raise ConfigError(f"SQLiteStore {self.path!r}: cannot open it: {why}"
                                  ) from err.__cause__
            log.warning("%r: cannot open the database at start: %s; session requests get 503"
                        " until it can be opened, and its tables are created then", self,
                        why_unavailable(self.path, err.__cause__))

    def close(self) -> None:
        """Close the connections the store opened, on every thread.

        A thread that uses the store afterwards opens a new one, so calls that other
        threads make meanwhile go on: none fails for it. A connection on which another
        thread is running a statement is closed once the statement is done: close()
        waits for it, and for the store's checkpoint if one is running, each up to the
        busy timeout plus a second (past that, a thread's connection is closed by that
        thread, on its next call or when it ends). Closing twice is not an error. In a
        process forked after the store was used, it also closes the connections the
        child inherited, without waiting for the parent's threads (the child has none).
        """
        thread = self._checkpoints.stop()
        if thread is not None and thread is not threading.current_thread():
            thread.join(self._busy_timeout + 1.0)  # its checkpoint may be running: let it end,
            # or it would open the path again after this returns
        self._close_all()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as err:
            raise StoreUnavailable(f"SQLite store {self.path!r}: {err}") from err

    @contextmanager
    def _writing(self) -> Iterator[float]:
        """Hold the write lock (see :mod:`~satchel.stores.sqlite.writers`); yields the
        seconds left of the busy timeout. :class:`StoreUnavailable` past the timeout."""
        left = self._take_writers()
        try:
            yield left
        finally:
            self._writers.release()

    def _take_writers(self, timeout: float | None = None) -> float:
        """Take the write lock, waiting up to ``timeout`` seconds (default: the busy
        timeout); the seconds left. :class:`StoreUnavailable` past it."""
        try:
            return self._writers.acquire(self._busy_timeout if timeout is None else timeout)
        except Locked as err:
            raise StoreUnavailable(self._locked_message()) from err

    def _locked_message(self) -> str:
        return (f"SQLite store {self.path!r}: database is locked: another writer held it for"
                f" longer than the busy timeout ({self._busy_timeout:g} s)")

    def _write(self, work: Callable[[Connection], _T]) -> _T:
        """``work(conn)`` in a write transaction, with the works other threads ask for
        meanwhile (:mod:`~satchel.stores.sqlite.group_commit`); what it returned. The
        transaction commits only if the connection's files are still the ones at the path;
        else it is rolled back and run once more on a new connection.
        :class:`StoreUnavailable` if the path cannot be opened or keeps changing, or if
        other writers hold the write lock for longer than the busy timeout.
        """
        if self._pid != process_id():
            adopt(self, self._forked)
        result: _T = self._group.write(work, self._commit, self._busy_timeout,
                                       self._locked_message)
        return result

    def _commit(self, batch: list[Pending], timeout: float) -> None:
        """Run the works of ``batch`` in one write transaction, setting each one's result or
        error; raises :class:`StoreUnavailable` if the transaction fails (nothing of it is
        written). A lone work runs without a savepoint; one that raises rolls it back."""
        try:  # not self._errors(): a generator context costs about a microsecond a call
            left = self._take_writers(timeout)
            try:
                for _ in range(2):
                    conn = self._take()
                    try:
                        if left < 0.9 * self._busy_timeout:
                            set_busy_timeout(conn, left)
                        elif conn.busy_ms != self._busy_ms:
                            set_busy_timeout(conn, self._busy_timeout)
                        cur = conn.cur
                        cur.execute("BEGIN IMMEDIATE")
                        try:
                            run_works(conn, batch, self.path)
                            if not still_there(conn, self.path):
                                raise FileMoved
                        except FileMoved:
                            cur.execute("ROLLBACK")
                            self._drop(conn)
                            continue
                        except BaseException:
                            if conn.in_transaction:  # (a disk error may have ended it)
                                cur.execute("ROLLBACK")
                            raise
                        cur.execute("COMMIT")
                        for item in batch:
                            item.committed = True
                        conn.checked_at = time.monotonic()
                        changes = conn.total_changes
                    finally:
                        conn.busy.release()
                    self._changes += changes - conn.changes_seen
                    conn.changes_seen = changes
                    checkpoint = self._changes >= CHECKPOINT_CHANGES
                    if checkpoint:
                        self._changes = 0
                    break
                else:
                    raise StoreUnavailable(
                        f"SQLite store {self.path!r}: the database file kept changing under the"
                        " store (removed, moved or replaced); not written")
            finally:
                self._writers.release()
        except sqlite3.DatabaseError as err:
            raise StoreUnavailable(f"SQLite store {self.path!r}: {err}") from err
        if checkpoint:  # on the checkpoint thread, not this request's
            self._checkpoints.ask()

    def _checkpoint(self) -> None:
        """Checkpoint the WAL on a connection of this thread, :class:`Checkpointer`'s: first
        with no lock, then with the writers held, to copy what they wrote meanwhile, so
        that the next write starts the WAL over (see
        :mod:`~satchel.stores.sqlite.checkpoints`). The connection is closed after: an idle
        one left open at exit would keep the last one to close from folding the WAL into
        the file. Raises ``sqlite3.Error`` or :class:`StoreUnavailable`."""
        conn = self._take()
        with self._opened_lock:  # closed here, not by close()
            self._opened.discard(conn)
        try:
            checkpoint_wal(conn)
            with self._writing():
                checkpoint_wal(conn)
        finally:
            try:
                self._close_mine(conn)
            finally:
                conn.busy.release()

    def load(self, key: str) -> Record | None:
        rows = self._read(LOAD, (key, self._clock()))
        if not rows:
            return None
        created_at, last_seen, expires_at, permanent, user, device, first, _ = rows[0]
        fields: dict[str, bytes] = {}
        if first is not None:  # else the one row of a session without fields (LEFT JOIN)
            for row in rows:  # not a comprehension: its own frame costs more, for a few rows
                fields[row[6]] = row[7]
        return Record(fields, created_at, last_seen, expires_at, bool(permanent), user, device)

    def create(self, key: str, record: Record) -> None:
        device = None if record.device is None else record.device[:DEVICE_MAX]

        def work(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM satchel_sessions WHERE key = ? AND expires_at <= ?",
                         (key, self._clock()))
            try:
                conn.execute(INSERT_META, (key, record.created_at, record.last_seen,
                                            record.expires_at, int(record.permanent), record.user,
                                           device))
            except sqlite3.IntegrityError as err:
                raise KeyError("a session with this key exists") from err
            conn.executemany(UPSERT_FIELD, [(key, n, v) for n, v in record.fields.items()])

        self._write(work)

    def update(self, key: str, patch: Patch) -> Updated:
        now = self._clock()
        if patch == _NOTHING:  # only "is it live?": a read, no write transaction
            return Updated.KEPT if self._read(IS_LIVE, (key, now)) else Updated.GONE
        return self._write(update_work(key, patch, now))

    def delete(self, key: str) -> None:
        self._write(lambda conn: conn.execute(DELETE, (key,)))

    def acquire_lock(self, key: str, token: str, lease: float) -> bool:
        now = self._clock()
        return self._lock_row(ACQUIRE_LOCK, (key, token, now + lease, now))

    def release_lock(self, key: str, token: str) -> bool:
        return self._lock_row(RELEASE_LOCK, (key, token))

    def _lock_row(self, sql: str, params: tuple[object, ...]) -> bool:
        """Whether ``sql``, one statement on the session locks' table, changed a row."""
        with self._errors(), self._writing():
            conn = self._take()
            try:
                return conn.cur.execute(sql, params).rowcount == 1
            finally:
                conn.busy.release()

    def __repr__(self) -> str:
        return f"<SQLiteStore path={self.path!r}>"
