"""Who is logged in where, in an SQLite file: the ``UserIndex`` and ``Inventory`` abilities
of :class:`~satchel.stores.sqlite.SQLiteStore`, and its other read of a session's metadata,
``ExpiredLookup``.

A user's sessions are the rows with that ``user``, found through the
``satchel_sessions_user`` index (see :data:`~satchel.stores.sqlite.SCHEMA`): the
column is the index, so a session is listed under its user from the commit that
creates it (or changes its user) to the one that deletes it, and an expired row
is never listed (each query asks ``expires_at > now``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from satchel.store import BOOKKEEPING, SessionInfo, StoreStats

_T = TypeVar("_T")
_INFO = "SELECT key, created_at, last_seen, expires_at, user, device, permanent"
SESSIONS_OF = (_INFO + " FROM satchel_sessions WHERE user = ? AND expires_at > ?"
               " ORDER BY created_at, key")
USER_KEYS = "SELECT key FROM satchel_sessions WHERE user = ? AND expires_at > ? AND key IS NOT ?"
DELETE = "DELETE FROM satchel_sessions WHERE key = ?"
EXPIRED = _INFO + " FROM satchel_sessions WHERE key = ? AND expires_at <= ?"
# Sessions only: not the engine's bookkeeping records (satchel.store.BOOKKEEPING).
_SESSIONS = " FROM satchel_sessions WHERE expires_at > ? AND device IS NOT ?"
STATS = "SELECT count(*), count(DISTINCT user)" + _SESSIONS
FIRST_PAGE = _INFO + _SESSIONS + " ORDER BY key LIMIT ?"
PAGE = _INFO + _SESSIONS + " AND key > ? ORDER BY key LIMIT ?"
PAGE_SIZE = 500


class UserRows:
    """``sessions_of``, ``delete_user``, ``stats``, ``all_sessions`` and ``expired`` of
    ``SQLiteStore``."""

    _clock: Any

    def _read(self, sql: str, params: Sequence[object]) -> list[Any]:
        raise NotImplementedError

    def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        raise NotImplementedError

    def sessions_of(self, user: str) -> list[SessionInfo]:
        """The user's live sessions, oldest first: one indexed read."""
        rows = self._read(SESSIONS_OF, (user, self._clock()))
        return [_info(row) for row in rows]

    def delete_user(self, user: str, keep: str | None = None) -> list[str]:
        """Delete the user's live sessions but ``keep``, in one write transaction."""
        now = self._clock()

        def work(conn: sqlite3.Connection) -> list[str]:
            keys = [row[0] for row in conn.execute(USER_KEYS, (user, now, keep))]
            conn.executemany(DELETE, [(key,) for key in keys])  # fields go by cascade
            return keys

        return self._write(work)

    def expired(self, key: str) -> SessionInfo | None:
        """The metadata of the session under ``key`` if it is there but expired (a read by
        primary key); None if it is missing or live. Expired rows stay until purged."""
        rows = self._read(EXPIRED, (key, self._clock()))
        return _info(rows[0]) if rows else None

    def stats(self) -> StoreStats:
        """Live sessions and distinct users: one read of the whole table."""
        [(sessions, users)] = self._read(STATS, (self._clock(), BOOKKEEPING))
        return StoreStats(int(sessions), int(users))

    def all_sessions(self) -> Iterator[SessionInfo]:
        """Every live session, read in pages of 500 in key order (no read stays open
        between pages: writes may go on while the caller iterates)."""
        after: str | None = None  # the last key read
        while True:
            now = self._clock()
            query, params = ((FIRST_PAGE, (now, BOOKKEEPING, PAGE_SIZE)) if after is None
                             else (PAGE, (now, BOOKKEEPING, after, PAGE_SIZE)))
            rows = self._read(query, params)
            yield from (_info(row) for row in rows)
            if len(rows) < PAGE_SIZE:
                return
            after = rows[-1][0]


def _info(row: tuple[Any, ...]) -> SessionInfo:
    key, created_at, last_seen, expires_at, user, device, permanent = row
    return SessionInfo(key, created_at, last_seen, expires_at, user, device, bool(permanent))
