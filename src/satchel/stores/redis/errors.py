"""Which redis-py errors mean the store cannot serve now, and messages without passwords."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.cluster import RedisCluster
from redis.exceptions import (
    ClusterError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)

from satchel.errors import ConfigError, StoreUnavailable
from satchel.redact import chainable, scrub

# Driver errors that mean "the store cannot serve right now": the connection, a cluster
# outage (CLUSTERDOWN, MASTERDOWN), LOADING (a ConnectionError in redis-py), a replica
# after failover (READONLY), maxmemory with noeviction (OOM), a resharding slot (TRYAGAIN);
# and, by their reply's first word, the replies redis-py has no class for.
_UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                RedisClusterException, ClusterError, ReadOnlyError, OutOfMemoryError,
                TryAgainError)
_UNAVAILABLE_REPLIES = frozenset({"BUSY", "NOREPLICAS", "LOADING", "MASTERDOWN", "READONLY",
                                  "OOM", "TRYAGAIN", "CLUSTERDOWN"})
# Redis 6 (seen on 6.2) wraps a command that Redis refused inside a script (READONLY on a replica,
# OOM, NOREPLICAS) in a script error, keeping the refusal's reply, dash and all, after the
# position prefix Redis itself adds (redis-py drops the leading "ERR "):
#   ERR Error running script (call to f_<sha1>): @user_script:6: @user_script: 6: -OOM command ...
# An error reply of a command that did run has no dash ("@user_script:1: WRONGTYPE ..."), and
# Lua's error() has no "@user_script: N: " ("@user_script:1: user_script:1: -OOM ..."); neither
# matches. Redis 7 keeps the refusal's own code, which the first-word check sees.
_SCRIPT_REFUSED = re.compile(r"(?:ERR )?Error running script \(call to f_[0-9a-f]{40}\):"
                             r" @user_script:\d+: @user_script: \d+: -([A-Z]+) ")
DRIVER_ERRORS = (RedisError, RedisClusterException)

_UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                RedisClusterException)


def is_unreachable(err: Exception) -> bool:
    """True if ``err`` says the server could not be reached or did not answer in time
    (not a reply such as OOM or READONLY, which a reachable server sends)."""
    return isinstance(err, _UNREACHABLE) and not isinstance(err, ResponseError)


def is_unavailable(err: Exception) -> bool:
    if isinstance(err, _UNAVAILABLE):
        return True
    if not isinstance(err, ResponseError):
        return False
    message = str(err)
    if message.split(" ", 1)[0] in _UNAVAILABLE_REPLIES:
        return True
    refused = _SCRIPT_REFUSED.match(message)
    return refused is not None and refused.group(1) in _UNAVAILABLE_REPLIES


@contextmanager
def unavailable(store: str, secrets: tuple[str, ...]) -> Iterator[None]:
    """Driver errors that mean the store cannot serve -> StoreUnavailable, without ``secrets``."""
    try:
        yield
    except DRIVER_ERRORS as err:
        if is_unavailable(err):
            raise StoreUnavailable(f"{store} unavailable: {type(err).__name__}:"
                                   f" {scrub(str(err), secrets)}") from chainable(err, secrets)
        raise


def url_error(shown: str, err: Exception, secrets: tuple[str, ...], *,
               hint: bool = False) -> ConfigError:
    """ConfigError for the URL shown as ``shown``, quoting ``err`` without ``secrets``;
    with ``hint``, on how a password with a raw '/' (say) broke the URL's parse."""
    tail = ("; a '@', '/', '?' or '#' in the user name or password must be percent-encoded"
            " ('%40', '%2F', '%3F', '%23')" if hint and "@" in shown else "")
    return ConfigError(f"Redis URL {shown!r}: {scrub(str(err), secrets)}{tail}")


def client_secrets(client: redis.Redis | RedisCluster) -> tuple[str, ...]:
    """The passwords ``client`` connects with, to keep them out of messages."""
    kwargs = client.get_connection_kwargs()
    return tuple(str(kwargs[name]) for name in ("password", "ssl_password") if kwargs.get(name))
