"""Redis clients built from ``SATCHEL_STORE`` URLs: checked, bounded in time, never retried."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.connection import parse_url
from redis.retry import Retry

from satchel.errors import ConfigError, StoreUnavailable
from satchel.redact import chainable, redact_url, secrets_of
from satchel.stores.redis.clients import LazyCluster, SharedClient
from satchel.stores.redis.deadline import BoundedCluster
from satchel.stores.redis.errors import unavailable, url_error

log = logging.getLogger("satchel")


def client_builder(url: str, timeout: float) -> Callable[[], SharedClient]:
    """What builds the shared client for ``url`` (``RedisStore.from_url``'s URL forms).

    Raises :class:`ConfigError` now, naming the URL without its password, for a
    timeout that is not above 0, a malformed URL, an unknown scheme, or no host.
    The client it builds bounds connecting and each command by ``timeout``
    seconds and never retries (each retry could wait the timeout again); a
    cluster with no node answering yields a stand-in built on first use.
    """
    if not timeout > 0:
        raise ConfigError(f"RedisStore timeout {timeout!r}: must be a number of seconds"
                          " above 0, e.g. 3")
    bounds = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    shown = redact_url(url)
    secrets = secrets_of(url)
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.path if scheme == "unix" else parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError as err:
        raise url_error(shown, err, secrets, hint=True) from chainable(err, secrets)
    if scheme not in ("redis", "rediss", "unix", "redis+cluster"):
        raise ConfigError(f"Redis URL {shown!r}: unknown scheme {parts.scheme!r}; expected"
                          " redis://, rediss://, unix:// or redis+cluster://")
    if not host:
        where = "a socket path, e.g. 'unix:///run/redis.sock'" if scheme == "unix" else (
            "a host, e.g. 'redis://127.0.0.1:6379/0'")
        raise ConfigError(f"Redis URL {shown!r} has no host; give {where}")

    def build() -> SharedClient:
        try:
            if scheme == "redis+cluster":
                direct = urlunsplit(parts._replace(scheme="redis"))
                # One deadline per command over all its socket waits: a refresh of the
                # slot map would otherwise wait the timeout again on each stalled node.
                # The URL's own socket timeouts win, as for the sockets themselves.
                given = {**bounds, **parse_url(direct)}  # type: ignore[no-untyped-call]
                bound = max(float(given["socket_timeout"]),
                            float(given["socket_connect_timeout"]))

                def cluster() -> RedisCluster:
                    return BoundedCluster.from_url(direct, **bounds, **_cluster_no_retry(),
                                                   bound=bound)

                try:
                    with unavailable(f"RedisStore for {shown!r}", secrets):
                        return SharedClient(cluster())
                except StoreUnavailable as err:  # the app starts: 503 until a node answers
                    log.warning("RedisStore for %r: no cluster node answers at start; session"
                                " requests get 503 until one does (%s)", shown, err)
                    return SharedClient(LazyCluster(cluster, given))
            return SharedClient(redis.Redis.from_url(url, **bounds,
                                                     retry=Retry(NoBackoff(), 0)))
        except ValueError as err:
            raise url_error(shown, err, secrets) from chainable(err, secrets)

    return build


def _cluster_no_retry() -> dict[str, Any]:
    """RedisCluster arguments for no retry: each retry may wait out the timeout again (and
    redis-py 6+ retries 3 to 10 times, with back-off). 5.x counts its retries apart."""
    if int(redis.__version__.split(".", 1)[0]) < 6:
        return {"retry": Retry(NoBackoff(), 0), "cluster_error_retry_attempts": 0}
    return {"retry": Retry(NoBackoff(), 0)}
