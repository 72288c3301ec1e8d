"""``SATCHEL_STORE`` URLs -> store objects.

``sqlite:///relative/path`` is relative to the app's instance folder,
``sqlite:////absolute/path`` is absolute (SQLAlchemy's spelling), and
``sqlite:///`` alone is ``sessions.sqlite3`` in the instance folder.
``cookie://`` selects client-side mode: sessions sealed in the cookie.
Folders under the instance folder are created; an absolute path's folder
is not: while it does not exist the app starts and session requests get 503
(see :class:`~satchel.stores.sqlite.SQLiteStore`).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from satchel.cookie_mode import SealedCookies
from satchel.errors import ConfigError, install_hint
from satchel.lifetime import Clock, system_clock
from satchel.redact import redact_url
from satchel.store import Store

__all__ = ["DEFAULT_SQLITE_NAME", "KNOWN_SCHEMES", "redact_url", "store_from_url"]

DEFAULT_SQLITE_NAME = "sessions.sqlite3"
KNOWN_SCHEMES = ("sqlite", "memory", "redis", "rediss", "unix", "redis+cluster", "postgresql",
                 "postgres", "cookie")
_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster")
DEFAULT_STORE_TIMEOUT = 3.0
"""Seconds a network store's call may take (``SATCHEL_STORE_TIMEOUT``'s default)."""


def store_from_url(url: str, *, base_dir: str, clock: Clock = system_clock,
                   timeout: float = DEFAULT_STORE_TIMEOUT) -> Store | SealedCookies:
    """The store ``url`` names (or, for ``cookie://``, client-side mode).

    ``timeout`` (seconds) bounds each call of a Redis or PostgreSQL store (connecting, a
    command or statement sent, the wait for a pooled connection). Raises ConfigError naming
    the URL and the fix; a server that cannot be reached, or an SQLite folder that does not
    exist yet, is not an error here (the store answers StoreUnavailable until it is back).
    """
    shown = redact_url(url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"SATCHEL_STORE {shown!r}: not a URL; expected e.g. 'sqlite:///sessions.sqlite3'"
                          " or 'memory://'")
    scheme = scheme.lower()
    if scheme == "cookie":
        if rest:
            raise ConfigError(f"SATCHEL_STORE {shown!r}: 'cookie://' takes no host or options;"
                              " pass SealedCookies(compress=False) for other settings")
        return SealedCookies()
    if scheme == "memory":
        from satchel.stores.memory import MemoryStore

        return MemoryStore(clock=clock)
    if scheme == "sqlite":
        from satchel.stores.sqlite import SQLiteStore

        path = _sqlite_path(shown, rest, base_dir)
        try:
            return SQLiteStore(path, clock=clock)
        except ConfigError as err:  # a path that cannot work; a missing folder is not one
            raise ConfigError(f"SATCHEL_STORE {shown!r}: {err}") from err
    if scheme in _REDIS_SCHEMES:
        try:
            from satchel.stores.redis import RedisStore
        except ImportError as err:
            raise ConfigError("SATCHEL_STORE: the Redis store needs redis-py: "
                              + install_hint("redis")) from err
        return RedisStore.from_url(url, clock=clock, timeout=timeout)
    if scheme in ("postgresql", "postgres"):
        try:
            from satchel.stores.postgres import PostgresStore
        except ImportError as err:
            raise ConfigError("SATCHEL_STORE: the PostgreSQL store needs psycopg: "
                              + install_hint("postgres")) from err
        return PostgresStore.from_url(url, clock=clock, timeout=timeout)
    raise ConfigError(f"SATCHEL_STORE {shown!r}: unknown scheme {scheme!r}; expected one of "
                      + ", ".join(KNOWN_SCHEMES))


def _sqlite_path(shown: str, rest: str, base_dir: str) -> str:
    """The file ``sqlite://<rest>`` names (``shown``: the URL as messages show it)."""
    if not rest.startswith("/"):
        raise ConfigError(f"SATCHEL_STORE {shown!r}: an SQLite URL has three slashes and a path,"
                          " e.g. 'sqlite:///sessions.sqlite3' (in the instance folder) or"
                          " 'sqlite:////var/lib/app/sessions.sqlite3'; for a store in memory"
                          " use 'memory://'")
    path = urlsplit("sqlite://" + rest).path[1:] or DEFAULT_SQLITE_NAME
    if not os.path.isabs(path):
        path = os.path.join(base_dir, path)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except OSError as err:
            raise ConfigError(f"SATCHEL_STORE {shown!r}: cannot create the folder of {path!r}"
                              f" ({err.strerror}); check the instance folder's permissions"
                              ) from err
    return path
