"""The client a store built from a URL works through, and what the store reads off a client.

:class:`LazyCluster` stands in for a ``RedisCluster`` none of whose nodes answered when
the store was built; :class:`SharedClient` is a URL's client with the connections kept
from its pool for all the stores built from that URL (see :mod:`satchel.resources`);
:func:`retries_of` is how many times a client tries a command again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.connection import ConnectionPool
from redis.retry import Retry

from satchel.forks import hold_across_forks
from satchel.stores.redis.connections import KeptConnections


class LazyCluster:
    """Stands in for a ``RedisCluster`` that could not be built because no node answered.

    ``RedisCluster`` asks its nodes for the slot map in its constructor, so an app whose
    cluster is down could not start. The store holds this instead and calls :meth:`cluster`
    on its first command, under its breaker: a failure there raises the driver's error
    (the store reports it as StoreUnavailable), and the first call after the cluster is
    back builds the client. ``kwargs`` are what ``get_connection_kwargs`` reports meanwhile.
    """

    __slots__ = ("_build", "_built", "_kwargs", "_lock")

    def __init__(self, build: Callable[[], RedisCluster], kwargs: dict[str, Any]) -> None:
        self._build = build
        self._kwargs = kwargs
        self._built: RedisCluster | None = None
        self._lock = threading.Lock()
        # held while the client is built (bounded by the connect timeouts): a fork waits
        hold_across_forks(self._lock, "a Redis Cluster client being built")

    def get_connection_kwargs(self) -> dict[str, Any]:
        return self._kwargs

    @property
    def built(self) -> RedisCluster | None:
        """The client, once :meth:`cluster` built it."""
        return self._built

    def cluster(self) -> RedisCluster:
        """The client, built now if not yet (bounded by the client's connect timeout per
        startup node). Raises the driver's error if no node answers."""
        with self._lock:
            if self._built is None:
                self._built = self._build()
            return self._built

    def ping_first_node(self) -> None:
        """PING the node the URL names, on a connection of its own, with the client's
        bounds and no retry; raises the driver's error if it does not answer."""
        kwargs = {name: value for name, value in self._kwargs.items()
                  if name in _NODE_ARGUMENTS}
        pool = ConnectionPool(**kwargs, retry=Retry(NoBackoff(), 0))
        node = redis.Redis(connection_pool=pool)
        try:
            node.ping()
        finally:
            node.close()
            pool.disconnect()

    def __repr__(self) -> str:
        return f"<LazyCluster {'built' if self._built is not None else 'not built'}>"


# What of a cluster URL's arguments a plain client to one node takes.
_NODE_ARGUMENTS = frozenset({
    "host", "port", "username", "password", "socket_timeout", "socket_connect_timeout",
    "ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_data",
    "ssl_check_hostname", "client_name", "connection_class"})


class SharedClient:
    """A client built from a URL, and the connections kept from its pool for all its stores.

    The kept connections are shared: if each store kept its own, stores alive at once would
    each hold some, and enough of them would exhaust the pool (100 connections by default).
    """

    __slots__ = ("client", "kept")

    def __init__(self, client: redis.Redis | RedisCluster | LazyCluster) -> None:
        self.client = client
        self.kept = (KeptConnections(client.connection_pool)
                     if isinstance(client, redis.Redis) else None)

    def close(self) -> None:
        """Close the client and its connections (a cluster client's ``close`` leaves its
        nodes' connections open, for the collector)."""
        if self.kept is not None:
            self.kept.close()
        client: redis.Redis | RedisCluster | None = (
            self.client.built if isinstance(self.client, LazyCluster) else self.client)
        if client is None:
            return
        pools = []
        if isinstance(client, RedisCluster):
            nodes = client.get_nodes()  # type: ignore[no-untyped-call]
            pools = [node.redis_connection.connection_pool for node in nodes
                     if node.redis_connection is not None]
        client.close()
        for pool in pools:
            pool.disconnect()

    def usable(self) -> bool:
        """False for a cluster client someone closed (it forgets its nodes); a closed
        ``redis.Redis`` connects again by itself."""
        client: redis.Redis | RedisCluster | None = (
            self.client.built if isinstance(self.client, LazyCluster) else self.client)
        if client is None:
            return True
        return (not isinstance(client, RedisCluster)
                or client.get_default_node() is not None)  # type: ignore[no-untyped-call]


def retries_of(client: redis.Redis | RedisCluster) -> int:
    """How many times ``client`` tries a command (or connecting) again after a timeout or a
    lost connection; each try may wait out the socket timeout again. -1: without limit.

    ``redis.Redis`` retries per its connections' ``retry`` (redis-py 6+ gives a client built
    with ``Redis(...)`` 3 to 10 retries with back-off; ``from_url`` none) or one retry for
    ``retry_on_timeout``/``retry_on_error``. ``RedisCluster`` retries per its ``retry``
    (redis-py 6+) or ``cluster_error_retry_attempts`` (5.x).
    """
    if isinstance(client, RedisCluster):
        retry = getattr(client, "retry", None)
        count = max(int(getattr(retry, "_retries", 0)) if retry is not None else 0,
                    int(getattr(client, "cluster_error_retry_attempts", 0)))
        return -1 if retry is not None and getattr(retry, "_retries", 0) < 0 else count
    kwargs = client.get_connection_kwargs()
    retry = kwargs.get("retry")
    if retry is not None:
        return int(getattr(retry, "_retries", 0))
    return 1 if kwargs.get("retry_on_timeout") or kwargs.get("retry_on_error") else 0
