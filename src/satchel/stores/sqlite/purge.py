"""Purging an SQLite file's expired sessions without stalling the requests writing to it.

SQLite has one writer at a time, and a writer that finds the lock taken sleeps in
SQLite's busy handler (1, 2, 5, 10, 15, 20, 25, ... 100 ms between tries): a purge that
deletes thousands of rows per transaction, and starts the next transaction at once,
makes those writers miss every gap and wait hundreds of milliseconds. So
:meth:`~PurgeRows.purge_expired` reads the expired keys first (a read: no lock), then
deletes them by key in short write transactions (about ``HOLD`` seconds each, the number
of rows adapted to the time they take), and after each pauses ``YIELD`` times as long as
the transaction held the lock: a writer that found it taken gets it on its next try.
The WAL the deletes fill is checkpointed as every write's is, on the store's checkpoint
thread (see :mod:`~satchel.stores.sqlite.checkpoints`).
Each key is deleted only if it is still expired, so a session created over an expired
key after the read stays. The methods are
:class:`~satchel.stores.sqlite.SQLiteStore`'s; they use its connection handling.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from satchel.stores.sqlite.schema import EXPIRED_KEYS, PURGE_KEY, PURGE_LOCKS

_T = TypeVar("_T")
HOLD = 0.0005  # seconds a purge's write transaction aims to hold the lock
YIELD = 3.0  # the pause after a transaction, in multiples of its time: the lock is free 3/4
_FIRST_CHUNK = 32  # rows in the first transaction of a call
_MIN_CHUNK, _MAX_CHUNK = 4, 1000
_MIN_PAUSE = 0.001  # seconds: a busy writer's first retry comes 1 ms after it found the lock
COUNT_EXPIRED = "SELECT count(*) FROM satchel_sessions WHERE expires_at <= ?"


class PurgeRows:
    """``purge_expired`` and ``count_expired`` of ``SQLiteStore``."""

    _clock: Any

    def _read(self, sql: str, params: Sequence[object]) -> list[Any]:
        raise NotImplementedError

    def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        raise NotImplementedError

    def purge_expired(self, batch: int = 1000) -> int:
        """Delete up to ``batch`` expired sessions (and every lock past its lease); return
        how many sessions went (0: none was expired).

        The sessions are deleted in short transactions with pauses between them (see the
        module), so a call takes about ``1 + YIELD`` times the time its deletes take: on the
        order of 100 microseconds per session. A session whose key is created again, live,
        while the call runs is kept. Raises :class:`StoreUnavailable` if the file cannot be
        read or written; what earlier transactions deleted stays deleted.
        """
        now = self._clock()
        self._write(lambda conn: conn.execute(PURGE_LOCKS, (now,)))
        keys = [row[0] for row in self._read(EXPIRED_KEYS, (now, batch))]
        return self._delete_keys(keys, now)

    def _delete_keys(self, keys: list[str], now: float) -> int:
        """Delete the sessions under ``keys`` that are still expired at ``now``, in short
        transactions, each followed by a pause (see the module)."""
        deleted, chunk, start = 0, _FIRST_CHUNK, 0
        while start < len(keys):
            rows = [(key, now) for key in keys[start:start + chunk]]
            start += len(rows)
            deleted += self._write(lambda conn, rows=rows: self._timed_delete(  # type: ignore[misc]
                conn, rows))
            held = self._purge_held  # the deletes' time, without _write's own
            chunk = max(_MIN_CHUNK, min(_MAX_CHUNK, int(len(rows) * HOLD / max(held, 1e-6))))
            time.sleep(max(_MIN_PAUSE, held * YIELD))
        return deleted

    _purge_held = 0.0

    def _timed_delete(self, conn: sqlite3.Connection, rows: list[tuple[str, float]]) -> int:
        began = time.perf_counter()
        deleted = int(conn.executemany(PURGE_KEY, rows).rowcount)
        self._purge_held = time.perf_counter() - began
        return deleted

    def count_expired(self) -> int:
        """How many expired sessions wait to be purged (a count over the expiry index)."""
        [(count,)] = self._read(COUNT_EXPIRED, (self._clock(),))
        return int(count)
