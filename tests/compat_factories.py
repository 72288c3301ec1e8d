"""Factories for running Flask's own session tests against satchel.

``FLASK_SESSION_INTERFACE_FACTORY=compat_factories:memory`` (or ``:sqlite``, ``:cookie``,
``:redis``, ``:postgres``) with this folder and the project root on ``PYTHONPATH``; see
``../shared/flask-compat``.
Redis and PostgreSQL are the test servers (``SATCHEL_TEST_REDIS_URL``,
``SATCHEL_TEST_POSTGRES_URL``); what the run wrote there is removed when it ends.
"""

from __future__ import annotations

import atexit
import tempfile
from contextlib import ExitStack

from flask import Flask
from flask.sessions import SessionInterface

from satchel import MemoryStore, Satchel, SealedCookies, SQLiteStore


def memory(app: Flask) -> SessionInterface:
    Satchel(app, store=MemoryStore())
    return app.session_interface


def sqlite(app: Flask) -> SessionInterface:
    folder = tempfile.mkdtemp(prefix="satchel-compat-")
    Satchel(app, store=SQLiteStore(f"{folder}/sessions.sqlite3"))
    return app.session_interface


def cookie(app: Flask) -> SessionInterface:
    Satchel(app, store=SealedCookies())
    return app.session_interface


_servers = ExitStack()  # the Redis client, keys, tables and pools of this run; undone at exit
atexit.register(_servers.close)


def redis(app: Flask) -> SessionInterface:
    from satchel.stores.redis import RedisStore
    from tests.services import drop_keys, random_prefix, redis_client

    client = _servers.enter_context(redis_client())
    prefix = random_prefix()
    _servers.callback(drop_keys, client, prefix)
    Satchel(app, store=RedisStore(client, prefix=prefix))
    return app.session_interface


_postgres_url: list[str] = []  # this run's URL, once its schema is made


def postgres(app: Flask) -> SessionInterface:
    """As a user's app would: ``SATCHEL_STORE`` is a URL, and every app of the run shares its
    pool (the tables land in a schema of this run's own, dropped at exit)."""
    from tests.services import postgres_schema

    if not _postgres_url:
        _postgres_url.append(_servers.enter_context(postgres_schema()))
    app.config["SATCHEL_STORE"] = _postgres_url[0]
    Satchel(app)
    return app.session_interface
