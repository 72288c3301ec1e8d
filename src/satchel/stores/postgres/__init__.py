"""PostgresStore: one row per session, fields in a ``jsonb`` column, on psycopg 3.

Each operation is one statement on a connection from a ``psycopg_pool``
pool. ``update`` merges the patch into the row inside that statement (under
the row lock), so commits that change different fields both survive, and it
never touches a missing or expired row. A session lock (``@session_lock``) is
a lease row in an UNLOGGED table beside it (``<table>_locks``, see
:data:`LOCK_SCHEMA`), created on first use. Expired rows stay until
:meth:`~PostgresStore.purge_expired` deletes them (e.g. from a cron job).
A row holds its session's user (``user_id``, with an index: a user's sessions
are listed and deleted without a scan) and device. A table made by an older
version gets the column it lacks (``device``) when the store checks its schema.

    pool = ConnectionPool("postgresql://app@db.internal/app", open=True,
                          kwargs={"autocommit": True})
    store = PostgresStore(pool)
    store = PostgresStore.from_url("postgresql://app@db.internal/app", table="shop_sessions")

Each operation is one round trip: its statement runs in autocommit, as its own
transaction, with no BEGIN/COMMIT exchanges. A pool without autocommit works
too; its connection is switched to autocommit for the call and back.

The package: :mod:`~satchel.stores.postgres.store` (the store),
:mod:`~satchel.stores.postgres.calls` (running a statement, errors, the breaker's probe),
:mod:`~satchel.stores.postgres.statements` (the schema, its SQL, the ``data``
column's format), :mod:`~satchel.stores.postgres.schema` (creating and
upgrading the table), :mod:`~satchel.stores.postgres.users` (a user's
sessions, every session), :mod:`~satchel.stores.postgres.pools` (pools built
from URLs, and what messages may say of them),
:mod:`~satchel.stores.postgres.sent` (a statement sent now, read later:
prefetch).
"""

from satchel.errors import install_hint

try:
    import psycopg  # noqa: F401
    import psycopg_pool  # noqa: F401
except ImportError as err:
    raise ImportError("PostgresStore needs psycopg 3 and psycopg_pool:"
                      f" {install_hint('postgres')}") from err

from satchel.stores.postgres.statements import LOCK_SCHEMA, SCHEMA
from satchel.stores.postgres.store import PostgresStore

__all__ = ["LOCK_SCHEMA", "SCHEMA", "PostgresStore"]
