"""Every mode a satchel app can run in, on the real servers, with an injected clock.

``MODES`` are the five: the four server-side stores and client-side sealed
cookies. ``mode_app`` builds a Flask app in one of them; what it opened is
released, and what it wrote to Redis or PostgreSQL removed, when the
``ExitStack`` closes.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

from flask import Flask

from satchel import MemoryStore, Satchel, SealedCookies, SQLiteStore
from tests.clock import FakeClock
from tests.services import drop_keys, postgres_store, random_prefix, redis_client

SERVER_MODES = ("memory", "sqlite", "redis", "postgres")
MODES = (*SERVER_MODES, "cookie")


def make_store(mode: str, clock: FakeClock, folder: Path, cleanup: ExitStack) -> Any:
    """A store (or ``SealedCookies``) for ``mode``, on ``clock``."""
    if mode == "memory":
        return MemoryStore(clock=clock)
    if mode == "sqlite":
        return SQLiteStore(folder / "sessions.sqlite3", clock=clock)
    if mode == "cookie":
        return SealedCookies()
    if mode == "redis":
        from satchel.stores.redis import RedisStore

        client = cleanup.enter_context(redis_client())
        prefix = random_prefix()
        cleanup.callback(drop_keys, client, prefix)
        store = RedisStore(client, prefix=prefix, clock=clock)
        cleanup.callback(store.close)
        return store
    if mode == "postgres":
        return cleanup.enter_context(postgres_store(clock=clock))
    raise ValueError(f"unknown mode {mode!r}")


def mode_app(mode: str, clock: FakeClock, folder: Path, cleanup: ExitStack,
             **config: Any) -> Flask:
    """A Flask app with satchel in ``mode``: TESTING, a 32-byte SECRET_KEY, ``config``."""
    app = Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY="k" * 32, **config)
    Satchel(app, store=make_store(mode, clock, folder, cleanup), clock=clock)
    return app
