"""PostgresStore: one row per session (see :data:`~satchel.stores.postgres.statements.SCHEMA`)."""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from satchel.breaker import Breaker
from satchel.errors import ConfigError, StoreUnavailable
from satchel.lifetime import Clock, system_clock
from satchel.resources import Lease, shared
from satchel.store import DEVICE_MAX, Patch, PendingLoad, Record, Updated
from satchel.stores.postgres.calls import PendingRead, StatementRuns
from satchel.stores.postgres.forked import PoolPerProcess
from satchel.stores.postgres.locks import LeaseRows
from satchel.stores.postgres.pools import (
    close_pool,
    parse_url,
    pool_open,
    where,
)
from satchel.stores.postgres.schema import SchemaSetup
from satchel.stores.postgres.sent import Statement
from satchel.stores.postgres.statements import (
    ACQUIRE_LOCK,
    ASYNC_COMMIT,
    COUNT_EXPIRED,
    CREATE,
    DELETE,
    FLOAT8_OID,
    LOAD,
    LOCK_TABLE_SUFFIX,
    PREFETCH,
    PURGE,
    PURGE_WITH_LOCKS,
    RELEASE_LOCK,
    TABLE_NAME,
    TEXT_OID,
    decode_fields,
    encode_fields,
    update_params,
    update_sql,
)
from satchel.stores.postgres.timed import pool_kwargs, timed_connection
from satchel.stores.postgres.users import UserRows

DEFAULT_TIMEOUT = 3.0
"""Seconds :meth:`PostgresStore.from_url` bounds connecting, a statement and the pool wait by."""
PURGE_YIELD = 1.0
"""A purge's pause after each batch, in multiples of the batch's time (see purge_expired)."""
log = logging.getLogger("satchel")


class PostgresStore(PoolPerProcess, StatementRuns, SchemaSetup, UserRows, LeaseRows):
    """Sessions in the PostgreSQL table ``table``, through ``pool``.

    ``table`` is a plain identifier, optionally schema-qualified
    (``"app.sessions"``). With ``create_schema`` (the default) the table and
    its indexes are created if absent; pass False if you manage DDL (see
    :data:`SCHEMA`). If the server cannot be reached then, the store is built
    all the same (an app starts while its database is down): it logs one line
    on ``satchel``, and creates the table on its first call that reaches the
    server. Connection failures, pool timeouts, a missing table and a server
    that does not answer raise :class:`StoreUnavailable`.

    ``timeout`` (seconds) bounds the wait for a pool connection; None keeps
    the pool's own. Connecting and each statement are bounded by the pool's
    connections: :meth:`from_url` bounds them all by one timeout; for a pool
    you build, pass ``connection_class=timed_connection(t)`` and
    ``kwargs=pool_kwargs({}, t) | {"autocommit": True}`` (both from
    :mod:`satchel.stores.postgres.timed`), or a wait for a stalled server
    has no limit. Once a call fails for want of the server, later calls raise
    :class:`StoreUnavailable` at once while one at a time checks whether it is
    back (see :mod:`satchel.breaker`).

    Writes that keep session data (``create``, ``update``) commit with
    ``synchronous_commit`` off for their own transaction: they return before
    the WAL reaches disk, as Redis's default persistence does. A crash of the
    PostgreSQL server (not of the app) may lose the last moments of such
    writes (at most ``3 * wal_writer_delay``, 0.6 s by default), never
    corrupting or reordering anything; a lost write is a lost cart change or
    a login to repeat. Deletes (logout, id rotation, expiry) commit as the
    server's ``synchronous_commit`` says (on by default), so a crash never
    brings back a session that was ended. ``durable_writes=True`` commits
    every write that way (e.g. to keep synchronous replication for them).
    """

    def __init__(self, pool: ConnectionPool[Any], *, table: str = "satchel_sessions",
                 create_schema: bool = True, durable_writes: bool = False,
                 timeout: float | None = None, clock: Clock = system_clock) -> None:
        if not isinstance(table, str) or not TABLE_NAME.fullmatch(table):
            raise ConfigError(f"PostgresStore table {table!r}: not a plain identifier; use"
                              " letters, digits and '_' (at most 48), optionally after a"
                              " schema and a dot, e.g. 'satchel_sessions' or 'app.sessions'")
        self._set_pool(pool)  # store.pool: in a forked child, the child's own (see forked)
        self.table = table
        self._clock = clock
        self._where = where(pool)
        self._timeout = timeout
        self._breaker = Breaker(f"PostgresStore {self._where}")
        self._schema_owed = False
        *schema, name = table.split(".")
        ident = sql.Identifier(*schema, name)

        def build(query: str) -> bytes:
            return sql.SQL(query).format(table=ident).as_bytes()

        self._ident = ident
        locks = sql.Identifier(*schema, name + LOCK_TABLE_SUFFIX)
        self._locks = locks
        self._acquire_lock = sql.SQL(ACQUIRE_LOCK).format(locks=locks).as_bytes()
        self._release_lock = sql.SQL(RELEASE_LOCK).format(locks=locks).as_bytes()
        self._locks_ready = not create_schema  # the lock table: created on first use
        self._load = build(LOAD)
        self._prefetch = Statement(build(PREFETCH), (TEXT_OID, FLOAT8_OID))
        self._commit_mode = sql.SQL("" if durable_writes else ASYNC_COMMIT)
        self._create = sql.SQL(CREATE).format(table=ident,
                                               commit_mode=self._commit_mode).as_bytes()
        self._updates: dict[tuple[bool, ...], bytes] = {}  # patch shape -> its UPDATE
        self._delete = build(DELETE)
        self._purge = build(PURGE)
        self._purge_with_locks = sql.SQL(PURGE_WITH_LOCKS).format(table=ident,
                                                                  locks=locks).as_bytes()
        self._count_expired = build(COUNT_EXPIRED)
        self._cursors: dict[int, psycopg.Cursor[tuple[Any, ...]]] = {}
        if create_schema:
            try:
                self._create_schema()
            except StoreUnavailable as err:
                if not self._breaker.down:
                    raise  # reached, but refused (no such schema, say)
                self._schema_owed = True
                log.warning("%r: cannot reach the server at start; session requests get 503"
                            " until it is back, and the table is created then (%s)", self, err)

    @classmethod
    def from_url(cls, url: str, *, table: str = "satchel_sessions", create_schema: bool = True,
                 min_size: int = 1, max_size: int = 10, timeout: float = DEFAULT_TIMEOUT,
                 durable_writes: bool = False, clock: Clock = system_clock) -> PostgresStore:
        """A store on an autocommit pool for ``url`` (``postgresql://`` or ``postgres://``).

        Stores built from the same ``url``, ``min_size``, ``max_size`` and ``timeout`` share
        one pool per process, whatever their table (see :mod:`satchel.resources`), so
        building an app per test opens one pool, not one per app. :meth:`close` releases the
        store's use; the last close closes the pool, and an unclosed one closes at exit.
        The pool is ``store.pool``: do not close it yourself, other stores may be using it.
        ``timeout`` (seconds) bounds each call: the wait for a pool connection, a
        statement already sent (``statement_timeout`` on the server, 80 % of
        ``timeout`` and at most 1 s less, so a statement held by a lock gets the server's
        cancel before the client's own wait for an answer runs out, and fails alone
        without tripping the breaker), and connecting (libpq's
        ``connect_timeout``, whole seconds, at least 2; the pool connects in the
        background, so a request waits at most ``timeout``). Past it:
        :class:`StoreUnavailable`. A ``connect_timeout`` or ``statement_timeout``
        in the URL is kept (a ``statement_timeout`` not below ``timeout`` logs a warning
        on ``satchel``: a statement it lets run is cut by the client, tripping the
        breaker). A URL without a host is a :class:`ConfigError`: the store never
        connects to a default host.
        """
        params = parse_url(url)  # ConfigError for an unusable URL
        if not timeout > 0:
            raise ConfigError(f"PostgresStore timeout {timeout!r}: must be a number of seconds"
                              " above 0, e.g. 3")
        kwargs: dict[str, Any] = {"autocommit": True, **pool_kwargs(params, timeout)}

        def build() -> ConnectionPool[Any]:
            # reconnect_timeout=0: a connection that cannot be made is given up at once, not
            # retried in the background with a backoff that grows to minutes; the next call
            # that needs one connects again, so the first request after the server is back
            # gets one.
            return ConnectionPool(url, min_size=min_size, max_size=max_size, timeout=timeout,
                                  open=True, name="satchel", kwargs=kwargs,
                                  connection_class=timed_connection(timeout),
                                  reconnect_timeout=0)

        # The pool's shape is the key; the table, schema and commit mode are the store's.
        def relet() -> Lease[ConnectionPool[Any]]:
            return shared.lease(("postgresql", url, min_size, max_size, timeout), build,
                                close_pool, usable=pool_open)

        lease = relet()
        try:
            store = cls(lease.resource, table=table, create_schema=create_schema,
                        durable_writes=durable_writes, timeout=timeout, clock=clock)
        except BaseException:
            lease.release()
            raise
        store._lent(lease, relet)  # a forked child takes a pool of its own with relet()
        return store

    def close(self) -> None:
        """Release what the store holds: the pool, if :meth:`from_url` built it.

        A pool built from a URL is shared by the stores built from that URL with the same
        pool options; the last of them to close closes it (if none does, it closes at exit).
        A pool passed to the constructor is the caller's: it stays open. Closing twice is
        not an error; a closed store must not be used again.
        """
        self._cursors.clear()
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()

    def load(self, key: str) -> Record | None:
        row = self._run(self._load, (key, self._clock()), True)
        if row is None:
            return None
        data, created_at, last_seen, expires_at, permanent, user, device = row
        return Record(decode_fields(data), created_at, last_seen, expires_at, permanent, user,
                      device)

    def prefetch(self, key: str) -> PendingLoad | None:
        """Send ``load(key)``'s SELECT now, on a connection held until it is read."""
        if self._breaker.down:
            return None  # load() fails fast, or probes
        sent = self._prefetch.send(self.pool, (key.encode(), repr(self._clock()).encode()))
        if sent is None:
            return None  # load() will run it the usual way and report any failure
        return PendingRead(self, sent, key)

    def create(self, key: str, record: Record) -> None:
        device = None if record.device is None else record.device[:DEVICE_MAX]
        params = (key, encode_fields(record.fields), record.created_at, record.last_seen,
                  record.expires_at, record.permanent, record.user, device, self._clock())
        if self._run(self._create, params, False) != 1:
            raise KeyError("a session with this key exists")

    def update(self, key: str, patch: Patch) -> Updated:
        shape, params = update_params(patch, key, self._clock())
        query = self._updates.get(shape)
        if query is None:
            query = self._updates[shape] = update_sql(shape, self._ident, self._commit_mode)
        if shape[-1]:  # may empty: the statement answers 0, 1 or 2 (see update_sql)
            row = self._run(query, params, True)
            return Updated(row[0])
        updated: int = self._run(query, params, False)
        return Updated.KEPT if updated == 1 else Updated.GONE

    def delete(self, key: str) -> None:
        self._run(self._delete, (key,), False)

    def purge_expired(self, batch: int = 1000) -> int:
        """Delete up to ``batch`` expired rows in one statement, skipping rows another
        transaction holds; return how many went (0: none is expired, or all are held).
        Lease rows of session locks past their lease go too, in the same statement.

        Then pause ``PURGE_YIELD`` times as long as the statement took, before returning:
        a loop of calls leaves the server (its CPU, its WAL) to the requests running
        alongside for that share of the time. Raises :class:`StoreUnavailable` as other
        calls do; what earlier calls deleted stays deleted.
        """
        began = time.perf_counter()
        now = self._clock()
        if self._lock_table_exists():
            deleted = int(self._run(self._purge_with_locks, (now, now, batch), False))
        else:
            deleted = int(self._run(self._purge, (now, batch), False))
        if deleted:
            time.sleep((time.perf_counter() - began) * PURGE_YIELD)
        return deleted

    def count_expired(self) -> int:
        row = self._run(self._count_expired, (self._clock(),), True)
        return int(row[0]) if row else 0

    def __repr__(self) -> str:
        return f"<PostgresStore {self._where} table={self.table!r}>"
