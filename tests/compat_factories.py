"""Factories for running Flask's own session tests against satchel.

``FLASK_SESSION_INTERFACE_FACTORY=compat_factories:memory`` (or ``:sqlite``, ``:cookie``)
with this folder on ``PYTHONPATH``; see ``../shared/flask-compat``.
"""

from __future__ import annotations

import tempfile

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
