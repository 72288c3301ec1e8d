"""The files at an SQLite store's path: whether a connection's files are still the ones
there, and, when the path cannot be opened, which of two cases it is.

A connection keeps writing into its file after the file has left the path; see
:mod:`satchel.stores.sqlite` for how the store uses these.

Telling whether a connection's files are still the ones at the path takes a ``stat`` of
each of the three (the database, its -wal and -shm: (device, inode) each), or one of their
folder while the folder's entries have not changed: creating, removing or renaming a file
in a folder sets the folder's modification time to the current time (POSIX), so a folder
found with the same (device, inode, mtime, ctime) as at a check of the three files has the
same entries, provided its mtime was already older than any timestamp granularity at that
check (:data:`SETTLED`; a change within the same tick of a coarse clock would leave it as
it was). The clock that sets it is this machine's: a WAL database is on a local file
system (SQLite's WAL does not work over a network file system). A folder that changed in
the last few seconds is checked the slow way, and so is a database path that is a
symbolic link (its -wal and -shm are next to the file it points to, not in the link's
folder). A file mounted over the database file itself would go unnoticed while the folder
is settled.

A path that cannot be opened
is either "down" (its folder is missing: not created, or a volume not mounted, yet; the
store waits for it) or cannot work as configured (a folder, a file that is not a
database, a file or folder this process may not write: an error to fix, which waiting
does not).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
import threading
import time

FileIdentity = tuple[tuple[int, int] | None, ...]
FolderStamp = tuple[int, int, int, int]  # st_dev, st_ino, st_mtime_ns, st_ctime_ns
SETTLED = 5.0  # seconds: a folder's mtime older than this is past any timestamp granularity


def file_identity(path: str) -> FileIdentity:
    """(st_dev, st_ino) of the database file at ``path`` and of its -wal and -shm, None
    for one that does not exist (or cannot be stat'ed: a folder without search permission)."""
    return (_dev_ino(path), _dev_ino(path + "-wal"), _dev_ino(path + "-shm"))


def _dev_ino(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


WalStamp = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns of a -wal


def wal_stamp(path: str) -> WalStamp | None:
    """The stamp of the -wal of the database at ``path``; None if there is none."""
    try:
        st = os.stat(path + "-wal")
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def old_wal_left(path: str, identity: FileIdentity) -> WalStamp | None:
    """If the database file at ``path`` has been replaced (it is no longer the one of
    ``identity``, a connection's) while the -wal there is still the old file's: that
    -wal's stamp; else None.

    SQLite would apply the old file's WAL to the new file (a restored backup would come
    back with the old file's latest pages, or corrupt:
    https://sqlite.org/howtocorrupt.html), so the store opens nothing at the path while
    that -wal is there unchanged. SQLite does not delete the -wal of a file that has left
    its path, even when the last connection to it closes: someone must.
    """
    now = file_identity(path)
    if identity[1] is None or now[0] == identity[0] or now[1] != identity[1]:
        return None
    return wal_stamp(path)


class Connection(sqlite3.Connection):
    """A connection a store can track weakly (the base class takes no weak references),
    with the identity of the files it opened, when reads last checked it, its busy
    timeout, and a cursor its store's frequent statements reuse (``conn.execute`` makes a
    cursor per call: about 0.5 µs). A statement on ``cur`` is read to its end (``fetchall``),
    never left open: an open read would hold its snapshot.

    ``busy`` is held while a statement runs on it, and while it is closed: Python's
    ``sqlite3`` module does not guard a connection closed under another thread's
    statement (the process can crash), so the store closes one only holding ``busy``.
    ``retired``: the store closed it, or is about to (see ``SQLiteStore.close``); its
    thread opens a new one."""

    cur: sqlite3.Cursor
    busy: threading.RLock
    retired = False
    identity: FileIdentity = ()
    folder: str | None = None  # whose stamp stands for the files' (None: a symlink's path)
    stamp: FolderStamp | None = None  # the folder's, when it was last found settled
    checked_at = 0.0
    busy_ms = 0  # the busy timeout last set, ms
    changes_seen = 0  # total_changes when its store last counted them


def folder_of(path: str) -> str | None:
    """The folder that holds the database at ``path`` and its -wal and -shm, as a path that
    resolves as ``path`` does (relative to the working folder if ``path`` is); None if
    ``path`` is a symbolic link (its files are in the folder of the file it points to)."""
    if os.path.islink(path):
        return None
    return os.path.dirname(path) or "."


def still_there(conn: Connection, path: str) -> bool:
    """Whether the database file at ``path`` and its -wal and -shm are still the files
    ``conn`` opened (``conn.identity``): one ``stat`` of their folder while its entries
    have not changed since it was found settled, else a ``stat`` of each (see the module).
    A missing folder counts as changed, and so does a file gone since ``conn`` opened
    it."""
    stamp = None
    if conn.folder is not None:
        try:
            st = os.stat(conn.folder)
        except OSError:
            pass
        else:
            stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
            if stamp == conn.stamp:
                return True
    if file_identity(path) != conn.identity:
        return False
    # the stamp was taken before the files' stats: a change after it moves the folder's mtime
    settled = stamp is not None and time.time_ns() - stamp[2] > SETTLED * 1e9
    conn.stamp = stamp if settled else None
    return True


class FileMoved(Exception):
    """The connection's files are no longer the ones at the store's path."""


class Closer:
    """Closes a connection when dropped: kept in the connection's thread-local slot, it goes
    when the thread ends, when the thread opens a new connection, or when the store goes. A
    connection is in a reference cycle (its statement cache holds it, Python 3.11+), so
    without this it would stay open until a garbage collection, and Python 3.13 then warns
    (ResourceWarning: unclosed database). It closes it holding the connection's ``busy``
    (waiting up to :data:`CLOSE_WAIT` seconds for a statement of another thread's, not at
    all once the interpreter is exiting; past that, it leaves the connection open).

    In a forked child it never closes the parent's connection, nor waits for it: it keeps
    it, unclosed, for good. CPython drops the thread-local values of the parent's other
    threads inside ``fork`` itself, before any at-fork hook runs, so a child meets the
    Closers of those threads' connections at once; closing one would use an SQLite
    connection across a fork (https://sqlite.org/howtocorrupt.html 2.6), and waiting for a
    statement a parent thread was running would hold up the fork by :data:`CLOSE_WAIT`."""

    __slots__ = ("conn", "pid")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pid = os.getpid()

    def __del__(self) -> None:
        conn = self.conn
        if self.pid != os.getpid():
            _LEFT_TO_PARENT.append(conn)  # never collected, so never closed here
            return
        busy = getattr(conn, "busy", None)  # None: the connection failed to open
        # At the interpreter's exit a daemon thread stopped in a statement holds it for good
        if busy is not None and not busy.acquire(
                timeout=0 if sys.is_finalizing() else CLOSE_WAIT):
            return  # pragma: no cover - a statement held it that long
        try:
            conn.close()
        except sqlite3.Error:  # pragma: no cover - nothing to report to at that moment
            pass
        finally:
            if busy is not None:
                busy.release()


_LEFT_TO_PARENT: list[Connection] = []  # a forked child's copies of its parent's connections

CLOSE_WAIT = 10.0
"""Seconds a :class:`Closer` waits for a running statement before leaving the connection."""


def missing_folder(path: str) -> str | None:
    """The folder of ``path`` (absolute) if it does not exist, else None.

    None too when it cannot be checked for another reason (a part of it is a file, or a
    folder this process may not search): :func:`unusable` names those.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.stat(folder)
    except FileNotFoundError:
        return folder
    except OSError:
        return None
    return None


def why_unavailable(path: str, err: BaseException | None) -> str:
    """What ``err``, raised opening ``path``, means, for a message: the missing folder if
    that is the cause (the message names the folder, not the file)."""
    folder = missing_folder(path)
    if folder is not None:
        return f"its folder {folder!r} does not exist (not created, or not mounted, yet)"
    return str(err)


def try_write(conn: sqlite3.Connection) -> None:
    """Rewrite the schema version unchanged on ``conn``, rolled back: a read-only file,
    folder or disk raises here (:class:`sqlite3.OperationalError`), at start, rather than
    on the first session saved. Waits for the write lock as ``conn``'s timeout says."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        conn.execute(f"PRAGMA user_version = {version}")
    finally:
        conn.execute("ROLLBACK")


def use_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """``PRAGMA journal_mode=WAL`` on ``conn``, tried again for up to ``timeout`` seconds
    while the file is locked. Turning a file that is not in WAL mode yet into it needs the
    file to itself, and SQLite answers "database is locked" at once, without its busy
    handler, while another process holds it (several workers opening a new or old file at
    the same moment). Raises ``sqlite3.Error``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def set_busy_timeout(conn: Connection, seconds: float) -> None:
    """How long SQLite waits for its lock on ``conn`` (a writer outside the store's write
    lock holds it): what is left of the store's timeout after waiting for that lock."""
    busy_ms = int(seconds * 1000)
    if conn.busy_ms != busy_ms:
        conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
        conn.busy_ms = busy_ms


def checkpoint_wal(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database: SQLite's PASSIVE checkpoint, which waits for no one
    and copies what the WAL held when it started (nothing, and no ``fsync``, if that is
    all copied already). Raises ``sqlite3.Error``."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # to its end: no open read


def _may(path: str, mode: int) -> bool:
    if os.access in os.supports_effective_ids:
        return os.access(path, mode, effective_ids=True)
    return os.access(path, mode)  # pragma: no cover - every POSIX system has effective ids


def unusable(path: str, err: BaseException | None) -> str | None:
    """Why ``path`` cannot hold a store as configured, with the fix; None if it may work later.

    ``err`` is what opening it (or a trial write) raised. None, the store is "down", when
    the folder of ``path`` does not exist (it may be created or mounted later), or when
    nothing wrong with the path is seen (a lock held too long, an I/O error: retried on
    the next call). Otherwise one of: a part of the folder is a file or cannot be
    searched, ``path`` is a folder, a file that is not an SQLite database, or a file,
    its -wal or -shm or its folder that this process may not read and write.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        return None
    except OSError as error:  # ENOTDIR (a part of it is a file), EACCES, ELOOP
        return (f"its folder {folder!r} cannot be reached ({error.strerror}); check each"
                " part of the path")
    if not stat.S_ISDIR(st.st_mode):
        return f"{folder!r} is not a folder; give a path in a folder"
    if os.path.isdir(path):
        return ("it is a folder; give the path of a file in it, e.g."
                f" {os.path.join(path, 'sessions.sqlite3')!r}")
    for name in (path, path + "-wal", path + "-shm"):
        if os.path.exists(name) and not _may(name, os.R_OK | os.W_OK):
            return (f"{name!r} cannot be written by this process; give"
                    " this process read and write access to it, or use another path")
    if not os.path.exists(path) and not _may(folder, os.W_OK | os.X_OK):
        return (f"its folder {folder!r} is not writable by this process; the file,"
                " its -wal and -shm are created there")
    if type(err) is sqlite3.DatabaseError:  # SQLITE_NOTADB, SQLITE_CORRUPT
        return (f"it is not an SQLite database ({err}); give the path of a new file or of a"
                " satchel store")
    if isinstance(err, sqlite3.OperationalError) and "readonly" in str(err):
        return ("it cannot be written (a read-only file, folder or disk); give this process"
                " write access to the file and its folder")
    return None
