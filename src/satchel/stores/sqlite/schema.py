"""The SQLite store's schema, its statements, and bringing an older file's schema up to date."""

from __future__ import annotations

import sqlite3

# ``user`` is who is logged in (None: anonymous), found through satchel_sessions_user (in a
# WITHOUT ROWID table an index ends with the primary key: it lists a user's sessions in
# (created_at, key) order without a sort). ``device`` describes the browser (added in 0.x: a
# file made before it gets the column and the index from upgrade()).
SCHEMA = """
CREATE TABLE IF NOT EXISTS satchel_sessions (
    key        TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    last_seen  REAL NOT NULL,
    expires_at REAL NOT NULL,
    permanent  INTEGER NOT NULL DEFAULT 0,
    user       TEXT,
    device     TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS satchel_sessions_expires_at ON satchel_sessions (expires_at);
CREATE INDEX IF NOT EXISTS satchel_sessions_user ON satchel_sessions (user, created_at)
    WHERE user IS NOT NULL;
CREATE TABLE IF NOT EXISTS satchel_fields (
    key   TEXT NOT NULL REFERENCES satchel_sessions (key) ON DELETE CASCADE,
    name  TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (key, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS satchel_locks (
    key        TEXT PRIMARY KEY,
    token      TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
"""

LOAD = (
    "SELECT s.created_at, s.last_seen, s.expires_at, s.permanent, s.user, s.device,"
    " f.name, f.value"
    " FROM satchel_sessions AS s LEFT JOIN satchel_fields AS f ON f.key = s.key"
    " WHERE s.key = ? AND s.expires_at > ?"
)
DELETE = "DELETE FROM satchel_sessions WHERE key = ?"
INSERT_META = (
    "INSERT INTO satchel_sessions"
    " (key, created_at, last_seen, expires_at, permanent, user, device)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
UPSERT_FIELD = "INSERT OR REPLACE INTO satchel_fields (key, name, value) VALUES (?, ?, ?)"
# A field written only if its session is live (parameters: name, value, key, now): no row
# inserted, the session is missing or expired. (The UPDATE of a patch's metadata is built per
# patch shape: satchel.stores.sqlite.updates.)
UPSERT_LIVE_FIELD = (
    "INSERT OR REPLACE INTO satchel_fields (key, name, value)"
    " SELECT key, ?, ? FROM satchel_sessions WHERE key = ? AND expires_at > ?"
)
DELETE_FIELD = "DELETE FROM satchel_fields WHERE key = ? AND name = ?"
CLEAR_FIELDS = "DELETE FROM satchel_fields WHERE key = ?"
# (has the tables, has the device column, has the user index): (1, 1, 1) when up to date.
SCHEMA_STATE = (
    "SELECT (SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'satchel_fields'),"
    " (SELECT count(*) FROM pragma_table_info('satchel_sessions') WHERE name = 'device'),"
    " (SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'satchel_sessions_user')"
)
ADD_DEVICE = "ALTER TABLE satchel_sessions ADD COLUMN device TEXT"
IS_LIVE = "SELECT 1 FROM satchel_sessions WHERE key = ? AND expires_at > ?"
HAS_FIELDS = "SELECT 1 FROM satchel_fields WHERE key = ? LIMIT 1"
# A lease row per held lock: taken if absent or past its lease, in one statement.
ACQUIRE_LOCK = (
    "INSERT INTO satchel_locks (key, token, expires_at) VALUES (?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at"
    " WHERE satchel_locks.expires_at <= ?"
)
RELEASE_LOCK = "DELETE FROM satchel_locks WHERE key = ? AND token = ?"
PURGE_LOCKS = "DELETE FROM satchel_locks WHERE expires_at <= ?"
# The purge reads a batch of expired keys (the expires_at index covers the read; no write
# lock), then deletes them by key in short write transactions, each key only if it is still
# expired (a create over an expired key in between made it live again).
EXPIRED_KEYS = "SELECT key FROM satchel_sessions WHERE expires_at <= ? LIMIT ?"
PURGE_KEY = "DELETE FROM satchel_sessions WHERE key = ? AND expires_at <= ?"


def prepare(conn: sqlite3.Connection) -> None:
    """Create the schema in a new file, or add what an older one lacks (the ``device``
    column, the user index, any table); nothing if it is up to date (one read).

    The upgrade runs in one write transaction (``BEGIN IMMEDIATE``), which checks again
    what is missing: processes that open an old file at once upgrade it once, the others
    wait for it (up to the busy timeout) and find it done. ``conn`` is in autocommit
    (``isolation_level=None``). Raises ``sqlite3.Error`` (a read-only file, say).
    """
    state = conn.execute(SCHEMA_STATE).fetchone()
    if state == (1, 1, 1):
        return
    if state[0] == 0:  # a new file (inodes are reused: the file's own content tells)
        conn.executescript(SCHEMA)
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute(SCHEMA_STATE).fetchone()[1] == 0:
            conn.execute(ADD_DEVICE)
        for statement in SCHEMA.split(";"):  # each IF NOT EXISTS: only what is missing
            if statement.strip():
                conn.execute(statement)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
