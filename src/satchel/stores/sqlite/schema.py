"""The SQLite store's schema and its statements."""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS satchel_sessions (
    key        TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    last_seen  REAL NOT NULL,
    expires_at REAL NOT NULL,
    permanent  INTEGER NOT NULL DEFAULT 0,
    user       TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS satchel_sessions_expires_at ON satchel_sessions (expires_at);
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
    "SELECT s.created_at, s.last_seen, s.expires_at, s.permanent, s.user, f.name, f.value"
    " FROM satchel_sessions AS s LEFT JOIN satchel_fields AS f ON f.key = s.key"
    " WHERE s.key = ? AND s.expires_at > ?"
)
DELETE = "DELETE FROM satchel_sessions WHERE key = ?"
INSERT_META = (
    "INSERT INTO satchel_sessions (key, created_at, last_seen, expires_at, permanent, user)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
UPDATE_META = (
    "UPDATE satchel_sessions SET last_seen = coalesce(?, last_seen),"
    " expires_at = coalesce(?, expires_at), permanent = coalesce(?, permanent),"
    " user = CASE WHEN ? THEN nullif(?, '') ELSE user END"
    " WHERE key = ? AND expires_at > ?"
)
UPSERT_FIELD = "INSERT OR REPLACE INTO satchel_fields (key, name, value) VALUES (?, ?, ?)"
DELETE_FIELD = "DELETE FROM satchel_fields WHERE key = ? AND name = ?"
CLEAR_FIELDS = "DELETE FROM satchel_fields WHERE key = ?"
HAS_SCHEMA = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'satchel_fields'"
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
PURGE = (
    "DELETE FROM satchel_sessions WHERE key IN"
    " (SELECT key FROM satchel_sessions WHERE expires_at <= ? LIMIT ?)"
)
