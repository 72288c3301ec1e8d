"""``@session_lock`` on PostgreSQL: lease rows in ``<table>_locks`` (see ``LOCK_SCHEMA``).

A lease row holds no connection (an advisory lock would keep a pool
connection out for the whole request, and has no lease), and the table is
UNLOGGED, so a server crash frees every lock. The methods are
:class:`~satchel.stores.postgres.PostgresStore`'s; they use its connection
handling.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from satchel.errors import StoreUnavailable
from satchel.stores.postgres.statements import (
    EXISTS,
    LOCK_SCHEMA,
    LOCK_TABLE_SUFFIX,
    SCHEMA_LOCK,
)

if TYPE_CHECKING:
    from contextlib import AbstractContextManager


_ASK_AGAIN = 60.0  # seconds between asks whether a missing lock table exists now


class LeaseRows:
    """The ``Lockable`` ability of ``PostgresStore``."""

    table: str
    _where: str
    _locks: sql.Identifier
    _locks_ready: bool
    _locks_known = False  # the lock table exists (see _lock_table_exists)
    _locks_asked = -_ASK_AGAIN
    _acquire_lock: bytes
    _release_lock: bytes
    _clock: Any

    def _run(self, query: bytes, params: Any, fetch: bool) -> Any:
        raise NotImplementedError

    def _errors(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        raise NotImplementedError

    def acquire_lock(self, key: str, token: str, lease: float) -> bool:
        """Insert the lease row, or take over one past its lease (one statement)."""
        if not self._locks_ready:
            self._create_lock_table()
        now = self._clock()
        with self._lock_table_named():
            taken = bool(self._run(self._acquire_lock, (key, token, now + lease, now), False) == 1)
        self._locks_known = True
        return taken

    def release_lock(self, key: str, token: str) -> bool:
        with self._lock_table_named():
            return bool(self._run(self._release_lock, (key, token), False) == 1)

    def _lock_table_exists(self) -> bool:
        """Whether the lock table exists (for a purge of the lease rows past their lease):
        known once this store made or used it; else asked at most once a minute."""
        if self._locks_known:
            return True
        now = time.monotonic()
        if now - self._locks_asked < _ASK_AGAIN:
            return False
        self._locks_asked = now
        row = self._run(EXISTS.encode(), (self._locks.as_string(),), True)
        self._locks_known = row is not None and row[0] is not None
        return self._locks_known

    @contextmanager
    def _lock_table_named(self) -> Iterator[None]:
        """A missing lock table is named as such (created on first use, unless
        ``create_schema=False``)."""
        try:
            yield
        except StoreUnavailable as err:
            if not isinstance(err.__cause__, psycopg.errors.UndefinedTable):
                raise
            locks = self.table + LOCK_TABLE_SUFFIX
            raise StoreUnavailable(f"PostgresStore {self._where} unavailable: the lock table"
                                   f" {locks!r} of @session_lock does not exist; create it (see"
                                   " satchel.stores.postgres.LOCK_SCHEMA) or pass"
                                   " create_schema=True") from err.__cause__

    def _create_lock_table(self) -> None:
        """Create the lock table (see :data:`LOCK_SCHEMA`) if it is missing."""
        with self._errors() as conn, conn.transaction():
            cursor = psycopg.Cursor(conn, row_factory=tuple_row)
            cursor.execute(SCHEMA_LOCK, (self.table,))
            if cursor.execute(EXISTS, (self._locks.as_string(),)).fetchone() == (None,):
                cursor.execute(sql.SQL(LOCK_SCHEMA).format(locks=self._locks))
        self._locks_ready = True
