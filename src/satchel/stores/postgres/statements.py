"""The PostgreSQL store's schema, its statements, and the format of its ``data`` column."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

import orjson
from psycopg import sql

from satchel.store import Patch

# ``data`` maps field name -> value. A value that is UTF-8 text without NUL (what satchel's
# codec writes) is a JSON string of that text; any other bytes are {"b64": "<base64>"}.
# ``user_id`` is who is logged in (NULL: anonymous), found through {user_index};
# ``device`` describes the browser. A table made before ``device`` existed gets it when the
# store checks its schema (ADD_DEVICE; see satchel.stores.postgres.schema).
SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    key        text PRIMARY KEY,
    data       jsonb NOT NULL DEFAULT '{{}}',
    created_at double precision NOT NULL,
    last_seen  double precision NOT NULL,
    expires_at double precision NOT NULL,
    permanent  boolean NOT NULL DEFAULT false,
    user_id    text,
    device     text
);
CREATE INDEX IF NOT EXISTS {expires_index} ON {table} (expires_at);
CREATE INDEX IF NOT EXISTS {user_index} ON {table} (user_id) WHERE user_id IS NOT NULL;
"""

# Session locks (@session_lock): a lease row per held lock, in a table of its own beside the
# sessions table, named after it. UNLOGGED: no WAL for a row that lives a request, and a server
# crash empties the table, which releases every lock as it should. Created on first use.
LOCK_SCHEMA = """
CREATE UNLOGGED TABLE IF NOT EXISTS {locks} (
    key        text PRIMARY KEY,
    token      text NOT NULL,
    expires_at double precision NOT NULL
);
"""
LOCK_TABLE_SUFFIX = "_locks"
ACQUIRE_LOCK = (
    "INSERT INTO {locks} AS l (key, token, expires_at) VALUES (%s, %s, %s)"
    " ON CONFLICT (key) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at"
    " WHERE l.expires_at <= %s"
)
RELEASE_LOCK = "DELETE FROM {locks} WHERE key = %s AND token = %s"

SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('satchel:' || %s))"
EXISTS = "SELECT to_regclass(%s)"
# (has the device column, has the user index) of an existing table
HAS_UPGRADES = ("SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s)"
                " AND attname = 'device' AND NOT attisdropped), to_regclass(%s) IS NOT NULL")
ADD_DEVICE = "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS device text"
USER_INDEX = ("CREATE INDEX IF NOT EXISTS {user_index} ON {table} (user_id)"
              " WHERE user_id IS NOT NULL")
LOAD_COLUMNS = "SELECT data::text, created_at, last_seen, expires_at, permanent, user_id, device"
LOAD = LOAD_COLUMNS + " FROM {table} WHERE key = %s AND expires_at > %s"
PREFETCH = LOAD_COLUMNS + " FROM {table} WHERE key = $1 AND expires_at > $2"  # text params
TEXT_OID, FLOAT8_OID = 25, 701
# Writes that keep session data (create, update) may commit without waiting for the WAL flush:
# set_config(..., true) is SET LOCAL, for the statement's own transaction only.
ASYNC_COMMIT = " FROM (SELECT set_config('synchronous_commit', 'off', true)) AS commit_mode"
CREATE = (
    "INSERT INTO {table} AS t"
    " (key, data, created_at, last_seen, expires_at, permanent, user_id, device)"
    " SELECT %s, %s::jsonb, %s, %s, %s, %s, %s, %s{commit_mode}"
    " ON CONFLICT (key) DO UPDATE SET data = excluded.data, created_at = excluded.created_at,"
    " last_seen = excluded.last_seen, expires_at = excluded.expires_at,"
    " permanent = excluded.permanent, user_id = excluded.user_id, device = excluded.device"
    " WHERE t.expires_at <= %s"
)
# update: one statement per shape of patch (which parts it has), built on first use.
META_COLUMNS = ("last_seen", "expires_at", "permanent", "user_id")
SET = "UPDATE {table} SET {sets}{commit_mode} WHERE key = %s AND expires_at > %s"
IS_LIVE = "SELECT 1 FROM {table} WHERE key = %s AND expires_at > %s"
SET_UNLESS_EMPTIED = ("UPDATE {table} SET {sets}{commit_mode} WHERE key = %s AND expires_at > %s"
                       " AND NOT EXISTS (SELECT 1 FROM emptied) RETURNING 1")
IS_LIVE_UNLESS_EMPTIED = ("SELECT 1 FROM {table} WHERE key = %s AND expires_at > %s"
                           " AND NOT EXISTS (SELECT 1 FROM emptied)")
EMPTYING = ("WITH emptied AS (DELETE FROM {table} WHERE key = %s AND expires_at > %s"
             " AND ({remaining}) = '{{}}'::jsonb RETURNING 1),"
             " kept AS ({update})"
             " SELECT (SELECT count(*) FROM kept) + 2 * (SELECT count(*) FROM emptied)")
DELETE = "DELETE FROM {table} WHERE key = %s"
# A batch of expired rows, found through the expires_at index, locked (FOR UPDATE re-checks
# expires_at on a row a parallel commit changed: a create over an expired key keeps it;
# SKIP LOCKED: a second purge takes other rows) and deleted by ctid, without a lookup of
# each key in the primary key's index.
PURGE = ("DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table}"
         " WHERE expires_at <= %s LIMIT %s FOR UPDATE SKIP LOCKED))")
# The same, once the lock table exists, with the lease rows past their lease (parameters:
# now, then PURGE's): one statement, one round trip.
PURGE_WITH_LOCKS = ("WITH locks AS (DELETE FROM {locks} WHERE expires_at <= %s)"
                    " DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table}"
                    " WHERE expires_at <= %s LIMIT %s FOR UPDATE SKIP LOCKED))")
COUNT_EXPIRED = "SELECT count(*) FROM {table} WHERE expires_at <= %s"

TABLE_NAME = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]{0,47}\.)?[A-Za-z_][A-Za-z0-9_]{0,47}")


def update_sql(shape: tuple[bool, ...], table: sql.Identifier, commit_mode: sql.SQL) -> bytes:
    """The statement for a patch of ``shape``: it sets only the columns the patch changes.

    ``shape`` is (clear, delete, set, last_seen, expires_at, permanent, user, may_empty),
    each True if the patch has it; parameters follow in that order, then key and now.
    A patch that changes nothing only asks whether the record is live.

    ``may_empty`` (``delete_if_empty`` without fields to set): a DELETE runs first, in the
    same statement, if the patch would leave the row with no field (its own parameters,
    key, now and the deleted names unless clear, come first); the UPDATE then runs only if
    nothing was deleted. Under READ COMMITTED the DELETE re-checks a row a parallel commit
    changed, so a field that commit added keeps the row. The statement answers 0 (gone),
    1 (kept) or 2 (emptied and deleted), and commits as the server's setting says, as
    deletes do.
    """
    clear, delete, set_, *meta, may_empty = shape
    data = ("data = %s::jsonb" if clear
            else "data = (data - %s::text[]) || %s::jsonb" if delete and set_
            else "data = data - %s::text[]" if delete
            else "data = data || %s::jsonb" if set_ else "")
    sets: list[sql.Composable] = [sql.SQL(data)] if data else []
    sets += [sql.SQL("{} = %s").format(sql.Identifier(column))
             for column, present in zip(META_COLUMNS, meta, strict=True) if present]
    if not may_empty:
        query = sql.SQL(SET if sets else IS_LIVE).format(
            table=table, sets=sql.SQL(", ").join(sets), commit_mode=commit_mode)
        return query.as_bytes()
    remaining = ("'{}'::jsonb" if clear else "data - %s::text[]" if delete else "data")
    update = (sql.SQL(SET_UNLESS_EMPTIED).format(table=table, sets=sql.SQL(", ").join(sets),
                                                  commit_mode=sql.SQL("")) if sets
              else sql.SQL(IS_LIVE_UNLESS_EMPTIED).format(table=table))
    query = sql.SQL(EMPTYING).format(table=table, remaining=sql.SQL(remaining), update=update)
    return query.as_bytes()


def encode_fields(fields: Mapping[str, bytes]) -> str:
    """``fields`` as the JSON text of the ``data`` column."""
    data: dict[str, str | dict[str, str]] = {}
    for name, value in fields.items():
        try:
            text: str | None = value.decode()
        except UnicodeDecodeError:
            text = None
        if text is None or "\0" in text:
            data[name] = {"b64": base64.b64encode(value).decode()}
        else:
            data[name] = text
    return orjson.dumps(data).decode()


def decode_fields(data: str | bytes) -> dict[str, bytes]:
    """The fields from the JSON text of the ``data`` column (str or UTF-8 bytes)."""
    return {name: value.encode() if type(value) is str else base64.b64decode(value["b64"])
            for name, value in orjson.loads(data).items()}


def update_params(patch: Patch, key: str, now: float) -> tuple[tuple[bool, ...], list[Any]]:
    """The shape of ``patch`` (see :func:`update_sql`) and its statement's parameters."""
    user = patch.user
    set_ = bool(patch.set)
    may_empty = patch.delete_if_empty and not set_
    shape = (patch.clear, bool(patch.delete), set_, patch.last_seen is not None,
             patch.expires_at is not None, patch.permanent is not None, user is not None,
             may_empty)
    params: list[Any] = []
    if may_empty:  # the DELETE of a record the patch leaves empty comes first
        params += (key, now)
        if patch.delete and not patch.clear:
            params.append(sorted(patch.delete))
    if patch.clear:
        params.append(encode_fields(patch.set))
    else:
        if patch.delete:
            params.append(sorted(patch.delete))
        if set_:
            params.append(encode_fields(patch.set))
    for value in (patch.last_seen, patch.expires_at, patch.permanent):
        if value is not None:
            params.append(value)
    if user is not None:
        params.append(user or None)
    params += (key, now)
    return shape, params
