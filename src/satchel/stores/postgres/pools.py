"""Pools of the PostgreSQL store: how they close, and what messages may say of them."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from satchel.redact import secrets_of


def close_pool(pool: ConnectionPool[Any]) -> None:
    pool.close()


def pool_open(pool: ConnectionPool[Any]) -> bool:
    return not pool.closed


def pool_params(pool: ConnectionPool[Any]) -> dict[str, Any] | None:
    """The libpq parameters ``pool`` connects with; None if they do not parse."""
    conninfo = pool.conninfo if isinstance(pool.conninfo, str) else ""
    kwargs = pool.kwargs if isinstance(pool.kwargs, dict) else {}
    try:
        return conninfo_to_dict(conninfo, **kwargs)
    except psycopg.Error:
        return None


def pool_secrets(pool: ConnectionPool[Any]) -> tuple[str, ...]:
    """The passwords ``pool`` connects with, to keep them out of messages."""
    params = pool_params(pool) or {}
    conninfo = pool.conninfo if isinstance(pool.conninfo, str) else ""
    found = {str(params[name]) for name in ("password", "sslpassword") if params.get(name)}
    return (*found, *secrets_of(conninfo))


def raw_at(url: str) -> bool:
    """True if a raw '@' or '/' in ``url``'s user info would make libpq misread it.

    libpq ends the user info at the first '@' and the host at the first '/':
    ``postgresql://u:p@ss@h/db`` has password ``p`` and host ``ss@h``.
    """
    rest = url.partition("://")[2]
    authority = rest.split("/", 1)[0]
    head = rest.split("?", 1)[0]
    return authority.count("@") > 1 or ("@" in head and "@" not in authority)


def where(pool: ConnectionPool[Any]) -> str:
    """``host:port/dbname`` of ``pool``, for messages; never the password."""
    params = pool_params(pool)
    if params is None:
        return "?"
    host = params.get("host") or params.get("hostaddr") or "(default host)"
    port = f":{params['port']}" if params.get("port") else ""
    return f"{host}{port}/{params.get('dbname') or params.get('user') or ''}"
