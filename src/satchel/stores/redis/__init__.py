"""RedisStore: one Redis string per session, on a client the user configured.

Works with ``redis.Redis`` and ``redis.cluster.RedisCluster``. Each operation
is one round trip; ``create`` and ``update`` are server-side Lua scripts, so
they are atomic and an update never resurrects a deleted or expired session.
Redis expires keys itself (a ``PEXPIRE`` derived from the store's clock), so
there is nothing to purge. Each user has a set of its sessions' keys, kept by
the same scripts (on a cluster, by a script on the set's slot first: one more
round trip for a login), which lists and ends a user's sessions without a scan;
a touch of a logged-in session takes two more round trips about once per
session lifetime, to keep the set alive (see
:mod:`~satchel.stores.redis.users`).

    store = RedisStore(redis.Redis(host="cache.internal", port=6379))
    store = RedisStore.from_url("redis+cluster://10.0.0.5:7000", prefix="shop:")

The package: :mod:`~satchel.stores.redis.store` (the store: building and closing it),
:mod:`~satchel.stores.redis.sessions` (a session's operations and its lock),
:mod:`~satchel.stores.redis.commands` (how the store sends commands: breaker, scripts,
failures), :mod:`~satchel.stores.redis.inventory` (every session: ``stats``,
``all_sessions``),
:mod:`~satchel.stores.redis.scripts` (the key layout and the Lua scripts),
:mod:`~satchel.stores.redis.names` (the sessions' key names, current and earlier),
:mod:`~satchel.stores.redis.record`, :mod:`~satchel.stores.redis.millis` and
:mod:`~satchel.stores.redis.record_lua` (a session's bytes, its times, the same in Lua),
:mod:`~satchel.stores.redis.users` and :mod:`~satchel.stores.redis.user_scripts`
(the per-user sets and their Lua scripts),
:mod:`~satchel.stores.redis.errors` (which driver errors mean "unavailable"),
:mod:`~satchel.stores.redis.connections` (connections kept between commands),
:mod:`~satchel.stores.redis.clients` (a URL's shared client, a cluster built on first use).
"""

from satchel.errors import install_hint

try:
    import redis  # noqa: F401
except ImportError as err:
    raise ImportError(f"RedisStore needs redis-py: {install_hint('redis')}") from err

from satchel.stores.redis.scripts import SCHEMA
from satchel.stores.redis.store import RedisStore

__all__ = ["SCHEMA", "RedisStore"]
