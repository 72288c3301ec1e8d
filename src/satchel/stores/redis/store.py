"""RedisStore: one Redis string per session (see :data:`~satchel.stores.redis.scripts.SCHEMA`).

This module builds the store (from a client, or from a URL) and closes it; its operations
live in the modules of its bases: :mod:`~satchel.stores.redis.sessions` (a session's),
:mod:`~satchel.stores.redis.users` (a user's sessions),
:mod:`~satchel.stores.redis.inventory` (every session) and
:mod:`~satchel.stores.redis.commands` (how they send commands).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

import redis
from redis.cluster import RedisCluster

from satchel.breaker import Breaker
from satchel.errors import ConfigError
from satchel.lifetime import Clock, system_clock
from satchel.resources import Lease, shared
from satchel.stores.redis.clients import LazyCluster, SharedClient, retries_of
from satchel.stores.redis.connections import KeptConnections
from satchel.stores.redis.merge import LastRead
from satchel.stores.redis.names import Names
from satchel.stores.redis.sessions import Sessions
from satchel.stores.redis.urls import client_builder

log = logging.getLogger("satchel")
DEFAULT_TIMEOUT = 3.0
"""Seconds :meth:`RedisStore.from_url` bounds connecting and each command by."""


class RedisStore(Sessions):
    """Sessions in Redis or Redis Cluster, through ``client``.

    ``client`` must return bytes (``decode_responses=False``, the default).
    ``prefix`` namespaces the keys, so several apps can share a database; it
    must not contain ``{`` or ``}``. Connection failures and cluster outages
    raise :class:`StoreUnavailable`; so do replies that say the server cannot
    serve now (READONLY, OOM, BUSY, LOADING, MASTERDOWN, NOREPLICAS,
    TRYAGAIN), and then nothing was written. Other driver errors pass through.
    A stored session that cannot be read is a miss, logged on
    ``satchel.security``.

    A session is named ``prefix`` + the base64url of its 32-byte storage key
    (see :mod:`satchel.stores.redis.names`). Sessions created by earlier
    builds of satchel live under ``prefix + "{" + hex + "}"``; they are never
    renamed, and with ``legacy_key_names`` (the default) every operation that
    finds nothing under a session's name looks there too (one more round
    trip, on a miss only: a load of a logged-out or unknown id, an update of a
    session that is gone). Once every session of the earlier names has expired
    (the longest idle or absolute timeout after upgrading, or none left:
    ``redis-cli --scan --pattern 'satchel:{*'``), pass
    ``legacy_key_names=False``: requests are then served from the current
    names only. Whatever it says, what lists or revokes sessions still sees
    the earlier names, so that no live session escapes a listing or "log out
    everywhere" in a deployment where some processes still look there: deletes
    remove both names (two commands on a cluster), a user's sessions and all
    sessions are listed under both, on a miss only. On a single server
    ``create`` refuses a storage key that lives under its earlier name; a
    cluster cannot check that in the same script, and never needs to for the
    engine's keys (SHA-256 of a new random id).

    With ``keep_connections`` (the default) on a ``redis.Redis`` client, the
    store keeps the connections it takes from the client's pool between
    commands instead of checking one out per command, which costs about as
    much as the round trip itself (see :mod:`satchel.stores.redis.connections`).
    The client's retry policy and hooks around ``execute_command`` (tracing,
    metrics) then do not see the store's commands; a connection the server
    closed is retried once on a fresh one. Pass ``keep_connections=False`` to
    send every command through ``client.execute_command``. A ``RedisCluster``
    and a ``single_connection_client`` always go through the client.
    :meth:`close` returns the kept connections to the pool.

    Time bounds are the client's: build it with ``socket_connect_timeout`` and
    ``socket_timeout`` (seconds; redis-py 5 has no default, so a stalled server
    holds a request for ever, and the store logs a warning for such a client),
    and with no retries (``retry=Retry(NoBackoff(), 0)``: each retry may wait the
    timeout again, and redis-py 6+ retries 3 to 10 times; the store warns too),
    as :meth:`from_url` does. A ``redis+cluster://`` URL's client bounds each
    command as a whole, slot-map refresh included, whatever the number of nodes
    it waits on (:mod:`satchel.stores.redis.deadline`); one whose nodes do not
    answer at start gets its client built on first use (503 until then). Once
    a call fails for want of the server, later calls raise
    :class:`StoreUnavailable` at once while one at a time checks (PING)
    whether it is back (see :mod:`satchel.breaker`).
    """

    def __init__(self, client: redis.Redis | RedisCluster, *, prefix: str = "satchel:",
                 keep_connections: bool = True, legacy_key_names: bool = True,
                 clock: Clock = system_clock) -> None:
        if "{" in prefix or "}" in prefix:
            raise ConfigError(f"RedisStore prefix {prefix!r}: must not contain '{{' or '}}',"
                              " which would change the cluster hash tag; use e.g. 'satchel:'")
        if client.get_connection_kwargs().get("decode_responses"):
            raise ConfigError("RedisStore: the Redis client has decode_responses=True, but session"
                              " values are bytes; pass a client built without it")
        self.client = client
        self.prefix = prefix
        self._names = Names(prefix, legacy_key_names)
        self._clock = clock
        self._kept: KeptConnections | None = None
        self._last_read = LastRead()
        self._lease: Lease[SharedClient] | None = None  # from_url's share of its client
        self._command: Callable[..., Any]
        self._breaker = Breaker(repr(self))
        if client.get_connection_kwargs().get("socket_timeout") is None:
            log.warning("%r: the Redis client has no socket_timeout, so a stalled server holds"
                        " requests with no time limit; build it with socket_timeout= and"
                        " socket_connect_timeout= (seconds), e.g. 3", self)
        if not isinstance(client, LazyCluster) and (retries := retries_of(client)) != 0:
            log.warning("%r: the Redis client tries a timed-out command or connection again %s"
                        " (its retry policy), so a stalled server holds a request for that many"
                        " socket timeouts plus back-off; build it with"
                        " retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0)", self,
                        "without limit" if retries < 0 else f"up to {retries} times")
        if keep_connections and isinstance(client, redis.Redis) and client.connection is None:
            self._kept = KeptConnections(client.connection_pool)
            self._command = self._kept.command
        else:  # a cluster routes by key; a single-connection client has no pool to share
            self._command = self._through_client

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "satchel:", timeout: float = DEFAULT_TIMEOUT,
                 legacy_key_names: bool = True, clock: Clock = system_clock) -> RedisStore:
        """A store on a client for ``url``, shared by the stores built from ``url``.

        Stores built from the same ``url`` share one client (and its connection pool) per
        process, whatever their prefix (see :mod:`satchel.resources`). :meth:`close`
        releases the store's use; the last close closes the client, and an unclosed one
        closes at exit. The client is ``store.client``: do not close it yourself.
        Accepts ``redis://host[:port][/db]``, ``rediss://`` (TLS),
        ``unix:///path/to/socket`` and ``redis+cluster://host:port`` (any node of
        the cluster). A URL without a host (or, for ``unix://``, a path) is a
        :class:`ConfigError`: the store never connects to a default host.
        ``timeout`` (seconds) bounds connecting and each command
        (``socket_connect_timeout``, ``socket_timeout``; the URL's own
        ``?socket_timeout=`` wins); past it, :class:`StoreUnavailable`.
        ``legacy_key_names`` is the constructor's.
        """
        build = client_builder(url, timeout)  # ConfigError for an unusable URL
        # The URL is the key; the prefix is the store's.
        lease = shared.lease(("redis", url, timeout), build, SharedClient.close,
                             usable=SharedClient.usable)
        client = lease.resource.client
        try:
            # A LazyCluster stands in for the client until _build_cluster replaces it.
            store = cls(cast(RedisCluster, client) if isinstance(client, LazyCluster) else client,
                        prefix=prefix, clock=clock, keep_connections=False,
                        legacy_key_names=legacy_key_names)
        except BaseException:
            lease.release()
            raise
        store._lease = lease
        if isinstance(client, LazyCluster):
            store._command = store._build_cluster
            if client.built is None:
                store._breaker.trip("no cluster node answered at start")
        kept = lease.resource.kept
        if kept is not None:  # one set of kept connections for all: each store's would hoard
            store._kept, store._command = kept, kept.command
        return store

    def close(self) -> None:
        """Return the connections the store keeps to the client's pool; release the client,
        if :meth:`from_url` built it.

        A client passed to the constructor is the caller's: it stays open. A client built
        from a URL is shared by the stores built from that URL; the last of them to close
        closes it. Closing twice is not an error; a closed store must not be used again.
        """
        lease, self._lease = self._lease, None
        if lease is not None:  # the kept connections are the client's: its last user's to close
            lease.release()
        elif self._kept is not None:
            self._kept.close()

    def __repr__(self) -> str:
        if isinstance(self.client, RedisCluster | LazyCluster):
            where = "cluster"
        else:
            conn = self.client.get_connection_kwargs()
            if conn.get("path"):
                where = f"unix:{conn['path']}"
            else:
                where = f"{conn.get('host')}:{conn.get('port')}/{conn.get('db', 0)}"
        return f"<RedisStore {where} prefix={self.prefix!r}>"
