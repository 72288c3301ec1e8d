"""Who is logged in where, in PostgreSQL: the ``UserIndex`` and ``Inventory`` abilities of
:class:`~satchel.stores.postgres.PostgresStore`, and its other read of a session's metadata,
``ExpiredLookup``.

A user's sessions are the rows with that ``user_id``, found through the partial
index on it (see :data:`~satchel.stores.postgres.SCHEMA`): the column is the
index, so a row is listed under its user from the statement that writes it
(create, or an update that changes the user) to the one that deletes it, and an
expired row never is (each query asks ``expires_at > now``). ``delete_user`` is
one ``DELETE ... RETURNING`` statement.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from satchel.store import BOOKKEEPING, SessionInfo, StoreStats

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from satchel.breaker import Breaker

_INFO = "SELECT key, created_at, last_seen, expires_at, user_id, device, permanent FROM {table}"
SESSIONS_OF = _INFO + " WHERE user_id = %s AND expires_at > %s ORDER BY created_at, key"
EXPIRED = _INFO + " WHERE key = %s AND expires_at <= %s"
DELETE_USER = ("DELETE FROM {table} WHERE user_id = %s AND expires_at > %s"
               " AND key IS DISTINCT FROM %s RETURNING key")
# Sessions only: not the engine's bookkeeping records (satchel.store.BOOKKEEPING).
_SESSIONS = " WHERE expires_at > %s AND device IS DISTINCT FROM %s"
STATS = "SELECT count(*), count(DISTINCT user_id) FROM {table}" + _SESSIONS  # noqa: S608
FIRST_PAGE = _INFO + _SESSIONS + " ORDER BY key LIMIT %s"
PAGE = _INFO + _SESSIONS + " AND key > %s ORDER BY key LIMIT %s"
PAGE_SIZE = 1000


class UserRows:
    """``sessions_of``, ``delete_user``, ``stats``, ``all_sessions`` and ``expired`` of
    ``PostgresStore``."""

    _ident: sql.Identifier
    _breaker: Breaker
    _clock: Any

    def _errors(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        raise NotImplementedError

    def _probe(self) -> None:
        raise NotImplementedError

    def _rows(self, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Every row of ``query`` (one statement, on the store's table) with ``params``."""
        if self._breaker.down:  # the store is down: fail fast, or probe
            self._breaker.enter(self._probe)
        statement = sql.SQL(query).format(table=self._ident)
        with self._errors() as conn:
            rows = psycopg.Cursor(conn, row_factory=tuple_row).execute(
                statement, params).fetchall()
        if self._breaker.down:  # tripped by another call meanwhile: the server answers
            self._breaker.reached()
        return rows

    def sessions_of(self, user: str) -> list[SessionInfo]:
        """The user's live sessions, oldest first: one indexed read."""
        return [_info(row) for row in self._rows(SESSIONS_OF, (user, self._clock()))]

    def delete_user(self, user: str, keep: str | None = None) -> list[str]:
        """Delete the user's live sessions but ``keep`` in one statement; their keys."""
        return [row[0] for row in self._rows(DELETE_USER, (user, self._clock(), keep))]

    def expired(self, key: str) -> SessionInfo | None:
        """The metadata of the session under ``key`` if it is there but expired (a read by
        primary key); None if it is missing or live. Expired rows stay until purged."""
        rows = self._rows(EXPIRED, (key, self._clock()))
        return _info(rows[0]) if rows else None

    def stats(self) -> StoreStats:
        """Live sessions and distinct users: one read of the whole table."""
        [(sessions, users)] = self._rows(STATS, (self._clock(), BOOKKEEPING))
        return StoreStats(int(sessions), int(users))

    def all_sessions(self) -> Iterator[SessionInfo]:
        """Every live session, read in pages of 1,000 in key order (each page its own
        statement: no transaction stays open while the caller iterates)."""
        after: str | None = None  # the last key read
        while True:
            now = self._clock()
            rows = (self._rows(FIRST_PAGE, (now, BOOKKEEPING, PAGE_SIZE)) if after is None
                    else self._rows(PAGE, (now, BOOKKEEPING, after, PAGE_SIZE)))
            yield from (_info(row) for row in rows)
            if len(rows) < PAGE_SIZE:
                return
            after = rows[-1][0]


def _info(row: tuple[Any, ...]) -> SessionInfo:
    key, created_at, last_seen, expires_at, user, device, permanent = row
    return SessionInfo(key, created_at, last_seen, expires_at, user, device, permanent)
