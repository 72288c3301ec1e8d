"""SQLiteStore: the embedded default, on the standard library's ``sqlite3``.

One file, WAL journal, safe across threads (a connection per thread) and
across processes sharing the file. The schema is created idempotently; a
session is a row in ``satchel_sessions`` plus a row per key in
``satchel_fields``, so an update rewrites only the keys that changed. The
session row holds its user and device; an index on the user lists one user's
sessions (:mod:`~satchel.stores.sqlite.users`). A file made by an older
version gets the columns and indexes it lacks when the store opens it. A
session lock (``@session_lock``) is a lease row in ``satchel_locks``.

A connection keeps writing into its file after the file has left the path (its
folder removed or moved, the file replaced, its ``-wal`` or ``-shm`` removed):
SQLite notices that only in rollback-journal mode (SQLITE_READONLY_DBMOVED), not
in WAL mode. So each connection records the (device, inode) of the three files
when it opens, and a write commits only if they are still the files at the path
(a ``stat`` of each, or of their folder alone while its entries have not
changed: see :mod:`~satchel.stores.sqlite.files`; an inode is not reused while
the connection holds it open). Otherwise the write is rolled back and retried
once on a new connection to the file now at the path, whose schema is created if
it is new; while the path cannot be opened, or while a file put in place of the
old one has the old file's -wal beside it (which SQLite would apply to it),
:class:`StoreUnavailable`. Reads check at most once a second per connection (a
replaced file may be read for up to a second; nothing read there is written
back). A store built while its folder does not exist (a volume not mounted yet)
is in that state from the start: it logs one line and opens the file, with its
schema, once the folder is there. A path that cannot work as configured (a
folder, not a database, read-only) is a :class:`ConfigError` at start.

    store = SQLiteStore("/var/lib/myapp/sessions.sqlite3")

The package: :mod:`~satchel.stores.sqlite.store` (the store),
:mod:`~satchel.stores.sqlite.connections` (a connection per thread, reopened when the
file leaves the path), :mod:`~satchel.stores.sqlite.writers` (the write lock across
threads and processes), :mod:`~satchel.stores.sqlite.group_commit` (the writes threads ask
for at once, in one transaction), :mod:`~satchel.stores.sqlite.checkpoints` (the WAL's checkpoints,
on a thread of the store's), what a forked child
replaces, once, through :func:`satchel.forks.adopt`,
:mod:`~satchel.stores.sqlite.schema` (the schema, its statements, its upgrade),
:mod:`~satchel.stores.sqlite.updates` (the statements that apply a patch),
:mod:`~satchel.stores.sqlite.users` (a user's sessions, every session),
:mod:`~satchel.stores.sqlite.files` (telling whether a connection's files are
still the ones at the path; whether a path that cannot be opened is down or
misconfigured).
"""

from satchel.stores.sqlite.schema import SCHEMA
from satchel.stores.sqlite.store import SQLiteStore

__all__ = ["SCHEMA", "SQLiteStore"]
