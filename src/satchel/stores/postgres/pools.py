"""Pools of the PostgreSQL store: how they close, and what messages may say of them."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from satchel.errors import ConfigError
from satchel.redact import chainable, redact_url, scrub, secrets_of


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


def parse_url(url: str) -> dict[str, Any]:
    """The libpq parameters of a ``postgresql://`` (or ``postgres://``) URL.

    Raises :class:`ConfigError`, never quoting a password, for another scheme,
    a raw '@' or '/' in the user info (libpq would misread it), a URL libpq
    cannot parse, and a URL without a host (the store never connects to a
    default host).
    """
    shown = redact_url(url)
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme.lower() not in ("postgresql", "postgres"):
        raise ConfigError(f"PostgreSQL URL {shown!r}: unknown scheme {scheme!r};"
                          " expected postgresql:// or postgres://")
    if raw_at(url):
        raise ConfigError(f"PostgreSQL URL {shown!r}: a '@' or '/' in the user name or"
                          " password must be percent-encoded ('%40', '%2F'); libpq would"
                          " read the rest of the password as the host or database")
    secrets = secrets_of(url)
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as err:
        why = scrub(str(err), secrets)
        raise ConfigError(f"PostgreSQL URL {shown!r}: {why}") from chainable(err, secrets)
    if not params.get("host") and not params.get("hostaddr"):
        raise ConfigError(f"PostgreSQL URL {shown!r} has no host; give one, e.g."
                          " 'postgresql://app@db.internal:5432/app', or a socket folder,"
                          " e.g. 'postgresql:///app?host=/var/run/postgresql'")
    return params
