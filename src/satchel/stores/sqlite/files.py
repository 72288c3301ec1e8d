"""Whether an SQLite connection's files are still the ones at the store's path.

A connection keeps writing into its file after the file has left the path; see
:mod:`satchel.stores.sqlite` for how the store uses these.
"""

from __future__ import annotations

import os
import sqlite3

FileIdentity = tuple[tuple[int, int] | None, ...]


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


class Connection(sqlite3.Connection):
    """A connection a store can track weakly (the base class takes no weak references),
    with the identity of the files it opened and when reads last checked it."""

    identity: FileIdentity = ()
    checked_at = 0.0


class FileMoved(Exception):
    """The connection's files are no longer the ones at the store's path."""


class Closer:
    """Closes a connection when dropped: kept in the connection's thread-local slot, it goes
    when the thread ends or the store does. A connection is in a reference cycle (its
    statement cache holds it, Python 3.11+), so without this it would stay open until a
    garbage collection, and Python 3.13 then warns (ResourceWarning: unclosed database)."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __del__(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error:  # pragma: no cover - nothing to report to at that moment
            pass
