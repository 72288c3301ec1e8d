"""A statement sent now and answered later, on a connection held from a psycopg pool.

``cursor.execute`` sends a statement and waits for its answer in one call. To
overlap a load's round trip with the rest of a request's work, the store sends
a prepared SELECT with libpq's send call on a connection it takes from the
pool, and reads the answer when the session is first used. Both waits go
through ``Connection.wait`` with psycopg's own generators, as ``execute``'s
do, so the process's waiting policy (threads, gevent's patched ``select``) is
psycopg's. Parameters and results are in text format.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import generators
from psycopg.pq import DiagnosticField, ExecStatus, TransactionStatus
from psycopg.pq.abc import PGresult
from psycopg_pool import ConnectionPool

from satchel.stores.postgres.timed import WaitTimeout

_IDLE = TransactionStatus.IDLE
_TUPLES_OK = ExecStatus.TUPLES_OK
_COMMAND_OK = ExecStatus.COMMAND_OK
_POOL_WAIT = 0.001  # seconds a send waits for a free connection (0 would never get one)
_MAX_TRACKED = 1024  # connection ids remembered as prepared; past it, prepare again
_ALREADY_PREPARED = b"42P05"  # duplicate_prepared_statement: another store object prepared it


class Statement:
    """A query prepared on each connection it is sent on, under a name derived from its text.

    ``query`` uses ``$1``-style placeholders; ``types`` are the parameters' type OIDs.
    Which connections have it is tracked by ``id``; :meth:`forget` drops an entry
    (the caller keeps each tracked connection alive, so an id is never reused).
    """

    def __init__(self, query: bytes, types: Sequence[int]) -> None:
        self.query = query
        self.types = list(types)
        self.name = b"satchel_" + hashlib.sha256(query).hexdigest()[:24].encode()
        self._prepared: set[int] = set()

    def send(self, pool: ConnectionPool[Any], params: Sequence[bytes]) -> Sent | None:
        """Send the statement on a connection from ``pool``; None if it cannot be sent now.

        Only on a connection in autocommit and idle, as the pool hands them out,
        and only one free within a millisecond: a request never waits here for
        a busy pool (its load waits its turn as usual when the session is used).
        """
        try:
            conn = pool.getconn(timeout=_POOL_WAIT)
        except psycopg.OperationalError:  # PoolTimeout: none free, or none to be had
            return None
        pgconn = conn.pgconn
        try:
            if not conn.autocommit or pgconn.transaction_status != _IDLE:
                pool.putconn(conn)
                return None
            if id(conn) not in self._prepared and not self._prepare(conn):
                pool.putconn(conn)
                return None
            pgconn.send_query_prepared(self.name, params)
            conn.wait(generators.send(pgconn))
        except psycopg.Error:
            _close_and_return(pool, conn)
            return None
        except BaseException:
            _close_and_return(pool, conn)
            raise
        return Sent(self, pool, conn)

    def _prepare(self, conn: psycopg.Connection[Any]) -> bool:
        pgconn = conn.pgconn
        pgconn.send_prepare(self.name, self.query, param_types=self.types)
        results = conn.wait(generators.execute(pgconn))
        if len(self._prepared) >= _MAX_TRACKED:  # ids of connections long closed pile up
            self._prepared.clear()
        if all(r.status == _COMMAND_OK or r.error_field(DiagnosticField.SQLSTATE)
               == _ALREADY_PREPARED for r in results):
            self._prepared.add(id(conn))
            return True
        return False

    def forget(self, conn_id: int) -> None:
        """The connection with this id is gone or lost the statement: prepare it again."""
        self._prepared.discard(conn_id)

    def forget_all(self) -> None:
        """No connection has it (a forked child's new pool): prepare it on each again."""
        self._prepared.clear()


class Sent:
    """The answer to a :class:`Statement` sent on ``conn``; it holds the connection.

    :meth:`result` reads it and gives the connection back; :meth:`cancel` does
    the same and drops the answer. A handle dropped with neither closes the
    connection (its answer would otherwise reach the pool's next user).

    In a process forked while the answer was on its way, the connection is the parent's:
    the child never reads from it, closes it or gives it back (a close would tell the
    server the parent's session ended). :meth:`result` answers None there, so the caller
    runs its query the usual way, on a connection of the child's own.
    """

    __slots__ = ("_conn", "_pid", "_pool", "_statement")

    def __init__(self, statement: Statement, pool: ConnectionPool[Any],
                 conn: psycopg.Connection[Any]) -> None:
        self._statement, self._pool = statement, pool
        self._conn: psycopg.Connection[Any] | None = conn
        self._pid = os.getpid()

    def _parents(self) -> bool:
        """True (and the connection left alone, for good) in a process forked from the one
        that sent the statement."""
        if self._pid == os.getpid():
            return False
        conn, self._conn = self._conn, None
        if conn is not None:
            _LEFT_TO_PARENT.append(conn)  # never collected, so never closed here
        return True

    def result(self) -> PGresult | None:
        """The rows (one PGresult, text format), or None if the statement failed.

        A failure is not explained here: the caller runs its query again the
        usual way, which raises the driver's error; but a connection of
        :func:`~satchel.stores.postgres.timed.timed_connection` that got no
        answer in time raises its :class:`WaitTimeout`. Call at most once.
        """
        if self._parents():
            return None
        conn, self._conn = self._conn, None
        if conn is None:
            raise RuntimeError("this answer was already read or cancelled")
        try:
            results = conn.wait(generators.fetch_many(conn.pgconn))
        except WaitTimeout:  # no answer within the store's timeout: asking again would wait again
            self._statement.forget(id(conn))
            _close_and_return(self._pool, conn)
            raise
        except psycopg.Error:
            self._statement.forget(id(conn))
            _close_and_return(self._pool, conn)
            return None
        except BaseException:
            _close_and_return(self._pool, conn)
            raise
        self._pool.putconn(conn)
        if len(results) == 1 and results[0].status == _TUPLES_OK:
            rows: PGresult = results[0]
            return rows
        self._statement.forget(id(conn))  # e.g. a reset (DISCARD ALL) dropped the statement
        return None

    def cancel(self) -> None:
        """Read the answer and drop it; errors are dropped too."""
        if self._conn is None:
            return
        try:
            self.result()
        except Exception:  # noqa: S110 - nobody wants this answer, nor its failure
            pass

    def __del__(self) -> None:
        if self._parents():
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                _close_and_return(self._pool, conn)
            except Exception:  # noqa: S110 - nothing to report to at collection time
                pass


_LEFT_TO_PARENT: list[psycopg.Connection[Any]] = []  # a forked child's copies of in-flight ones


def _close_and_return(pool: ConnectionPool[Any], conn: psycopg.Connection[Any]) -> None:
    """Close ``conn`` (it may hold an unread answer) and give it back: the pool replaces it."""
    conn.close()
    pool.putconn(conn)
