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
# The user index keeps a per-user set in another slot than the sessions on a Redis Cluster:
# the tests of who is logged in where run there too, on one cluster per test process.
USER_MODES = (*SERVER_MODES, "redis-cluster")

_cluster: list[Any] = []  # [the ExitStack that stops it, its ports]


def shared_cluster_ports() -> list[int]:
    """The ports of a three-primary Redis Cluster on 127.0.0.1, started on first use and
    stopped when the test process exits."""
    if not _cluster:
        import atexit

        from tests.services import cannot_test
        from tests.stores.redis_cluster import missing_binaries, redis_cluster

        missing = missing_binaries()
        if missing:
            cannot_test(f"the Redis Cluster mode needs {' and '.join(missing)} on PATH")
        stack = ExitStack()
        ports = stack.enter_context(redis_cluster())
        atexit.register(stack.close)
        _cluster.extend([stack, ports])
    ports: list[int] = _cluster[1]
    return ports


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
    if mode == "redis-cluster":
        from satchel.stores.redis import RedisStore

        prefix = random_prefix()
        store = RedisStore.from_url(f"redis+cluster://127.0.0.1:{shared_cluster_ports()[0]}",
                                    prefix=prefix, clock=clock)
        cleanup.callback(store.close)
        cleanup.callback(drop_keys, store.client, prefix)
        return store
    raise ValueError(f"unknown mode {mode!r}")


def mode_app(mode: str, clock: FakeClock, folder: Path, cleanup: ExitStack,
             **config: Any) -> Flask:
    """A Flask app with satchel in ``mode``: TESTING, a 32-byte SECRET_KEY, ``config``."""
    app = Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY="k" * 32, **config)
    Satchel(app, store=make_store(mode, clock, folder, cleanup), clock=clock)
    return app
