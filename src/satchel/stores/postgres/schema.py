"""Creating the PostgreSQL store's table, and bringing a table of an older schema up to date.

Processes that start at once take turns: each checks and changes the schema in
one transaction under an advisory lock on the table's name (``SCHEMA_LOCK``),
so a table is created once and an old one upgraded once. The methods are
:class:`~satchel.stores.postgres.PostgresStore`'s; they use its connection
handling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from satchel.errors import ConfigError
from satchel.stores.postgres.statements import (
    ADD_DEVICE,
    EXISTS,
    HAS_UPGRADES,
    SCHEMA,
    SCHEMA_LOCK,
    USER_INDEX,
)

if TYPE_CHECKING:
    from contextlib import AbstractContextManager


class SchemaSetup:
    """``PostgresStore``'s schema creation and upgrade."""

    table: str
    _ident: sql.Identifier

    def _errors(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        raise NotImplementedError

    def _create_schema(self) -> None:
        """Create the table and its indexes if absent; add to an existing table what an
        older schema lacked (the ``device`` column; the user index if it is missing).

        An existing table that is up to date is only read: a user without CREATE rights
        can use it. Raises :class:`ConfigError` naming the SQL to run if the table must
        be created or changed and the user may not.
        """
        *schema, name = self.table.split(".")
        # An index lives in its table's schema: named plainly there, qualified to look it up.
        expires_index = sql.Identifier(f"{name}_expires_at")
        user_index = sql.Identifier(f"{name}_user_id")
        user_index_name = sql.Identifier(*schema, f"{name}_user_id").as_string()
        missing: list[sql.Composed] = []
        creating = False
        try:
            with self._errors() as conn, conn.transaction():
                cursor = psycopg.Cursor(conn, row_factory=tuple_row)
                cursor.execute(SCHEMA_LOCK, (self.table,))
                if cursor.execute(EXISTS, (self._ident.as_string(),)).fetchone() == (None,):
                    creating = True
                    missing.append(sql.SQL(SCHEMA).format(
                        table=self._ident, expires_index=expires_index, user_index=user_index))
                else:
                    row = cursor.execute(HAS_UPGRADES, (self._ident.as_string(),
                                                        user_index_name)).fetchone()
                    has_device, has_index = row or (False, False)
                    if not has_device:
                        missing.append(sql.SQL(ADD_DEVICE).format(table=self._ident))
                    if not has_index:
                        missing.append(sql.SQL(USER_INDEX).format(table=self._ident,
                                                                  user_index=user_index))
                for ddl in missing:
                    cursor.execute(ddl)
        except psycopg.errors.InsufficientPrivilege as err:
            why = err.diag.message_primary
            if creating:
                raise ConfigError(f"PostgresStore table {self.table!r}: cannot create it ({why});"
                                  " create it as its owner (see satchel.stores.postgres.SCHEMA)"
                                  " and pass create_schema=False") from err
            todo = "; ".join(ddl.as_string() for ddl in missing)
            raise ConfigError(f"PostgresStore table {self.table!r}: cannot upgrade it ({why});"
                              f" as its owner, run: {todo}") from err
