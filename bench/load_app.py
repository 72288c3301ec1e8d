"""The app bench/load.py serves under gunicorn: one contender of bench/overhead.py.

gunicorn calls ``load_app:make_app()`` in its worker. The environment names the contender
(``SATCHEL_BENCH_CONTENDER``), the folder of the SQLite file that both servers share
(``SATCHEL_BENCH_DIR``), and the run's own Redis prefix and PostgreSQL database
(``SATCHEL_BENCH_PREFIX``, ``SATCHEL_TEST_POSTGRES_URL``: read by overhead.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import contender_apps
from flask import Flask


def _sqlite() -> Flask:
    return contender_apps.satchel_sqlite(Path(os.environ["SATCHEL_BENCH_DIR"]))


def _sqlite_calls() -> Flask:
    return contender_apps.sqlite_calls_threaded(Path(os.environ["SATCHEL_BENCH_DIR"])
                                                / "sqlite_calls")


# The cells of each contender: scenario -> (path, the body every response must have).
SCENARIOS = {"read": ("/read", "alice"), "write": ("/write", "ok")}

CONTENDERS: dict[str, Callable[[], Flask | None]] = {
    "flask-cookie": contender_apps.flask_cookie,
    "flask-session-redis": contender_apps.flask_session_redis,
    "flask-session-postgres": contender_apps.flask_session_postgres,
    "satchel-cookie": contender_apps.satchel_cookie,
    "satchel-sqlite": _sqlite,
    "satchel-redis": contender_apps.satchel_redis,
    "satchel-postgres": contender_apps.satchel_postgres,
    # No session layer: the bare app making only the calls a layer on that store needs
    # (load_report.CALLS_ONLY): what a layer that did nothing else would reach.
    "sqlite-calls": _sqlite_calls,
    "redis-calls": contender_apps.redis_calls,
    "postgres-calls": contender_apps.postgres_calls,
}


# Floors, run only when named (``bench/load.py --only``): satchel's layer with less under it,
# to tell where satchel's SQLite write goes under load. Its sessions live in each server's
# memory: each wrk client keeps its connections to one server.
FLOORS: dict[str, Callable[[], Flask | None]] = {
    "satchel-memory": contender_apps.satchel_memory,
    "satchel-memory+schema": lambda: contender_apps.satchel_on(
        contender_apps.SchemaFloor(Path(os.environ["SATCHEL_BENCH_DIR"]) / "schema_floor"),
        "satchel_memory_schema"),
}


def make_app() -> Flask:
    """The contender ``SATCHEL_BENCH_CONTENDER`` names; SystemExit if it cannot run here."""
    name = os.environ["SATCHEL_BENCH_CONTENDER"]
    app = {**CONTENDERS, **FLOORS}[name]()
    if app is None:
        raise SystemExit(f"{name}: its package or server is missing")
    return app
