"""How :class:`~satchel.stores.postgres.PostgresStore` runs a statement: a pooled connection
and the store's cursor on it, the breaker in front (:mod:`satchel.breaker`), and what a driver
error becomes (:class:`~satchel.errors.StoreUnavailable`, the breaker tripped only when the
server could not be reached); and the probe that tells the breaker the server is back.

The methods are ``PostgresStore``'s (a mixin, as :mod:`~satchel.stores.postgres.users` and
:mod:`~satchel.stores.postgres.schema` are); :class:`PendingRead` is a prefetched load.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from satchel.breaker import Breaker
from satchel.errors import StoreUnavailable
from satchel.redact import chainable, scrub
from satchel.store import Record
from satchel.stores.postgres.pools import pool_secrets
from satchel.stores.postgres.sent import Sent, Statement
from satchel.stores.postgres.statements import decode_fields
from satchel.stores.postgres.timed import WaitTimeout

_IDLE = TransactionStatus.IDLE


def _answered(err: psycopg.Error, conn: psycopg.Connection[Any]) -> bool:
    """True if the server itself answered ``err`` on ``conn``, which still works: it can be
    reached (a statement timeout, a lock not available), whereas a connection error (SQLSTATE
    class 08), a shutdown or a client-side timeout (no SQLSTATE) say it cannot."""
    state = err.sqlstate
    return state is not None and not state.startswith(("08", "57P")) and not conn.broken


class PendingRead:
    """A prefetched ``PostgresStore.load``: the SELECT is on its way."""

    __slots__ = ("_key", "_sent", "_store")

    def __init__(self, store: StatementRuns, sent: Sent, key: str) -> None:
        self._store, self._sent, self._key = store, sent, key

    def result(self) -> Record | None:
        try:
            rows = self._sent.result()
        except WaitTimeout as err:  # no answer within the timeout: no second try
            self._store._raise(err)
        if rows is None:  # failed: the usual load raises the driver's error, or succeeds now
            return self._store.load(self._key)
        breaker = self._store._breaker
        if breaker.down:  # tripped by another call meanwhile: the server answers
            breaker.reached()
        if rows.ntuples == 0:
            return None
        value = rows.get_value  # text format: LOAD_COLUMNS; only user and device may be NULL
        user, device = value(0, 5), value(0, 6)
        return Record(decode_fields(value(0, 0)), float(value(0, 1)), float(value(0, 2)),  # type: ignore[arg-type]
                      float(value(0, 3)), value(0, 4) == b"t",  # type: ignore[arg-type]
                      None if user is None else user.decode(),
                      None if device is None else device.decode())

    def cancel(self) -> None:
        self._sent.cancel()


class StatementRuns:
    """``PostgresStore``'s statement runs, error mapping and probe."""

    table: str
    _ident: sql.Identifier
    _where: str
    _timeout: float | None
    _breaker: Breaker
    _schema_owed: bool
    _prefetch: Statement
    # id(connection) -> this store's cursor on it. The cursor keeps its connection
    # alive, so an id is never reused while its entry exists.
    _cursors: dict[int, psycopg.Cursor[tuple[Any, ...]]]

    if TYPE_CHECKING:  # PostgresStore's, from PoolPerProcess, SchemaSetup and its own
        @property
        def pool(self) -> ConnectionPool[Any]: ...

        def _create_schema(self) -> None: ...

        def load(self, key: str) -> Record | None: ...

    def _probe(self) -> None:
        """The breaker's check that the server is back: a connection of its own (a pool whose
        connections all failed would make it wait its whole timeout), then the table if it is
        owed, then the pool's idle connections checked (a restart broke them)."""
        pool = self.pool
        try:
            conninfo = pool.conninfo() if callable(pool.conninfo) else pool.conninfo
            kwargs = pool.kwargs() if callable(pool.kwargs) else pool.kwargs or {}
            conn = pool.connection_class.connect(conninfo, **kwargs)
        except psycopg.Error as err:
            self._raise(err)
        conn.close()
        self._breaker.answered()  # up: what follows is bounded by the timeout
        if self._schema_owed:
            self._create_schema()
            self._schema_owed = False
        pool.check()

    @contextmanager
    def _errors(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; driver failures become StoreUnavailable."""
        try:
            with self.pool.connection(self._timeout) as conn:
                yield conn
        except psycopg.Error as err:
            self._raise(err)

    def _run(self, query: bytes, params: Sequence[Any], fetch: bool) -> Any:
        """Run one statement in one round trip: its first row if ``fetch``, else its row count.

        The statement runs in autocommit, as its own transaction; a connection of a
        pool without autocommit is switched for the call and back. Rows are tuples,
        whatever row factory the pool's connections have.
        """
        if self._breaker.down:  # the store is down: fail fast, or probe
            self._breaker.enter(self._probe)
        pool = self.pool
        try:
            conn = pool.getconn(self._timeout)
        except psycopg.OperationalError as err:  # psycopg_pool's PoolTimeout
            self._raise(err)
        try:
            switch = not conn.autocommit
            if switch:
                conn.autocommit = True
            try:
                cursor = self._cursors.get(id(conn))
                if cursor is None:
                    cursor = self._cursor(conn)
                cursor.execute(query, params)
                if self._breaker.down:  # tripped by another call meanwhile: the server answers
                    self._breaker.reached()
                return cursor.fetchone() if fetch else cursor.rowcount
            finally:
                if switch and conn.pgconn.transaction_status == _IDLE:
                    conn.autocommit = False
        except psycopg.Error as err:
            answered = _answered(err, conn)
            if isinstance(err, psycopg.OperationalError) and not answered and not conn.closed:
                conn.close()  # it may be mid-statement (a timeout): the pool replaces it
            self._raise(err, answered=answered)
        finally:
            pool.putconn(conn)

    def _cursor(self, conn: psycopg.Connection[Any]) -> psycopg.Cursor[tuple[Any, ...]]:
        """A new cursor on ``conn``, kept for the next calls that get ``conn`` from the pool.

        Reusing it saves building a cursor and its adapters on every call; only the thread
        that holds ``conn`` uses it. Cursors on connections the pool has closed are dropped.
        """
        for ident, old in list(self._cursors.items()):
            if old.connection.closed:
                self._cursors.pop(ident, None)
                self._prefetch.forget(ident)
        cursor = self._cursors[id(conn)] = psycopg.Cursor(conn, row_factory=tuple_row)
        return cursor

    def _raise(self, err: psycopg.Error, *, answered: bool = False) -> NoReturn:
        """StoreUnavailable for a missing table or column, or a connection failure; ``err``
        itself else. The breaker trips only if the server could not be reached: not for an
        error the server ``answered`` with (a statement timeout), see :func:`_answered`."""
        if isinstance(err, psycopg.errors.UndefinedTable):
            why = (f"table {self.table!r} does not exist; create it (see"
                   " satchel.stores.postgres.SCHEMA) or pass create_schema=True")
        elif isinstance(err, psycopg.errors.UndefinedColumn):  # a table of an older schema
            why = (f"table {self.table!r} lacks a column ({err.diag.message_primary}); as its"
                   f" owner, run: ALTER TABLE {self._ident.as_string()} ADD COLUMN IF NOT"
                   " EXISTS device text (see satchel.stores.postgres.SCHEMA), or pass"
                   " create_schema=True")
        elif isinstance(err, psycopg.OperationalError):  # includes psycopg_pool's PoolTimeout
            why = f"{type(err).__name__}: {err}"
        else:
            raise err
        secrets = pool_secrets(self.pool)
        why = scrub(why, secrets)
        cause = chainable(err, secrets)
        if isinstance(err, psycopg.OperationalError) and not answered:
            self._breaker.trip(why, cause)
        raise StoreUnavailable(f"PostgresStore {self._where} unavailable: {why}") from cause
