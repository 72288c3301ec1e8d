"""RedisStore: one Redis hash per session, on a client the user configured.

Works with ``redis.Redis`` and ``redis.cluster.RedisCluster``. Each operation
is one round trip; ``create`` and ``update`` are server-side Lua scripts, so
they are atomic and an update never resurrects a deleted or expired session.
Redis expires keys itself (a ``PEXPIRE`` derived from the store's clock), so
there is nothing to purge.

    store = RedisStore(redis.Redis(host="cache.internal", port=6379))
    store = RedisStore.from_url("redis+cluster://10.0.0.5:7000", prefix="shop:")
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

from satchel.errors import ConfigError, StoreUnavailable
from satchel.ids import fingerprint
from satchel.lifetime import Clock, system_clock
from satchel.redact import chainable, redact_url, scrub, secrets_of
from satchel.resources import Lease, shared
from satchel.store import Patch, PendingLoad, Record, Updated

try:
    import redis
    from redis.cluster import RedisCluster
    from redis.exceptions import (
        ClusterError,
        NoScriptError,
        OutOfMemoryError,
        ReadOnlyError,
        RedisClusterException,
        RedisError,
        ResponseError,
        TryAgainError,
    )
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("RedisStore needs redis-py: pip install 'satchel[redis]'") from err

from satchel.stores.redis_connections import KeptConnections, PendingReply

SCHEMA = """
key   = prefix + "{" + storage_key + "}"   (the hash tag keeps a session in one cluster slot)
type  = hash, with PEXPIRE at expires_at (relative to the store's clock)
f:<name>   -> the session field's bytes, one per session key
m:created, m:seen, m:expires -> repr() of the float timestamps
m:perm     -> "1" or "0"
m:user     -> the user, absent when there is none
"""

_FIELD = b"f:"
_CREATED, _SEEN, _EXPIRES = b"m:created", b"m:seen", b"m:expires"
_PERM, _USER = b"m:perm", b"m:user"
_FLAGS = {(False, False): b"0", (True, False): b"1", (False, True): b"2", (True, True): b"3"}
_MAX_TTL_MS = 2**47  # about 4,000 years: far beyond any session, well within PEXPIRE's range
security_log = logging.getLogger("satchel.security")

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
_DRIVER_ERRORS = (RedisError, RedisClusterException)

# KEYS[1] = session key; ARGV = now, ttl_ms, field/value pairs. Returns 0 if a live record exists
# (an m:expires that is missing or not a number is dead, in both scripts).
# The first write of a new key is the HSET, so Redis refuses the whole script when it is out of
# memory (it lets a script that has written go on, and DEL is allowed under OOM).
_CREATE = """
local expires = redis.call('HGET', KEYS[1], 'm:expires')
if (tonumber(expires) or 0) > tonumber(ARGV[1]) then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('DEL', KEYS[1]) end
for i = 3, #ARGV, 1000 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS[1] = session key; ARGV = now, flags (1 = clear, 2 = delete if empty; their sum), ttl_ms
# ("" keeps it), number of deletes, the hash fields to delete, then field/value pairs to set.
# Returns 0, changing nothing, if the record is missing or expired; 2 if it was left without a
# field and deleted (flag 2); else 1.
_UPDATE = """
local key = KEYS[1]
local expires = redis.call('HGET', key, 'm:expires')
if (tonumber(expires) or 0) <= tonumber(ARGV[1]) then return 0 end
local function hdel(names, first, last)
  for i = first, last, 1000 do
    redis.call('HDEL', key, unpack(names, i, math.min(i + 999, last)))
  end
end
local flags = tonumber(ARGV[2])
if flags % 2 == 1 then
  local names = {}
  for _, name in ipairs(redis.call('HKEYS', key)) do
    if string.sub(name, 1, 2) == 'f:' then names[#names + 1] = name end
  end
  hdel(names, 1, #names)
end
local ndel = tonumber(ARGV[4])
hdel(ARGV, 5, 4 + ndel)
for i = 5 + ndel, #ARGV, 1000 do
  redis.call('HSET', key, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
if flags >= 2 then
  for _, name in ipairs(redis.call('HKEYS', key)) do
    if string.sub(name, 1, 2) == 'f:' then flags = 0 break end
  end
  if flags ~= 0 then
    redis.call('DEL', key)
    return 2
  end
end
if ARGV[3] ~= '' then redis.call('PEXPIRE', key, ARGV[3]) end
return 1
"""
_CREATE_SHA = hashlib.sha1(_CREATE.encode(), usedforsecurity=False).hexdigest()
_UPDATE_SHA = hashlib.sha1(_UPDATE.encode(), usedforsecurity=False).hexdigest()


class RedisStore:
    """Sessions in Redis or Redis Cluster, through ``client``.

    ``client`` must return bytes (``decode_responses=False``, the default).
    ``prefix`` namespaces the keys, so several apps can share a database; it
    must not contain ``{`` or ``}``. Connection failures and cluster outages
    raise :class:`StoreUnavailable`; so do replies that say the server cannot
    serve now (READONLY, OOM, BUSY, LOADING, MASTERDOWN, NOREPLICAS,
    TRYAGAIN), and then nothing was written. Other driver errors pass through.
    A session hash with missing or unreadable metadata is a miss, logged on
    ``satchel.security``.

    With ``keep_connections`` (the default) on a ``redis.Redis`` client, the
    store keeps the connections it takes from the client's pool between
    commands instead of checking one out per command, which costs about as
    much as the round trip itself (see :mod:`satchel.stores.redis_connections`).
    The client's retry policy and hooks around ``execute_command`` (tracing,
    metrics) then do not see the store's commands; a connection the server
    closed is retried once on a fresh one. Pass ``keep_connections=False`` to
    send every command through ``client.execute_command``. A ``RedisCluster``
    and a ``single_connection_client`` always go through the client.
    :meth:`close` returns the kept connections to the pool.
    """

    def __init__(self, client: redis.Redis | RedisCluster, *, prefix: str = "satchel:",
                 keep_connections: bool = True, clock: Clock = system_clock) -> None:
        if "{" in prefix or "}" in prefix:
            raise ConfigError(f"RedisStore prefix {prefix!r}: must not contain '{{' or '}}',"
                              " which would change the cluster hash tag; use e.g. 'satchel:'")
        if client.get_connection_kwargs().get("decode_responses"):
            raise ConfigError("RedisStore: the Redis client has decode_responses=True, but session"
                              " values are bytes; pass a client built without it")
        self.client = client
        self.prefix = prefix
        self._open = prefix.encode() + b"{"  # see _name()
        self._clock = clock
        self._kept: KeptConnections | None = None
        self._lease: Lease[_SharedClient] | None = None  # from_url's share of its client
        self._command: Callable[..., Any]
        if keep_connections and isinstance(client, redis.Redis) and client.connection is None:
            self._kept = KeptConnections(client.connection_pool)
            self._command = self._kept.command
        else:  # a cluster routes by key; a single-connection client has no pool to share
            self._command = self._through_client

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "satchel:",
                 clock: Clock = system_clock) -> RedisStore:
        """A store on a client for ``url``, shared by the stores built from ``url``.

        Stores built from the same ``url`` share one client (and its connection pool) per
        process, whatever their prefix (see :mod:`satchel.resources`). :meth:`close`
        releases the store's use; the last close closes the client, and an unclosed one
        closes at exit. The client is ``store.client``: do not close it yourself.
        Accepts ``redis://host[:port][/db]``, ``rediss://`` (TLS),
        ``unix:///path/to/socket`` and ``redis+cluster://host:port`` (any node of
        the cluster). A URL without a host (or, for ``unix://``, a path) is a
        :class:`ConfigError`: the store never connects to a default host.
        """
        shown = redact_url(url)
        secrets = secrets_of(url)
        try:
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            host = parts.path if scheme == "unix" else parts.hostname
            parts.port  # noqa: B018 - raises ValueError for a malformed port
        except ValueError as err:
            raise _url_error(shown, err, secrets, hint=True) from chainable(err, secrets)
        if scheme not in ("redis", "rediss", "unix", "redis+cluster"):
            raise ConfigError(f"Redis URL {shown!r}: unknown scheme {parts.scheme!r}; expected"
                              " redis://, rediss://, unix:// or redis+cluster://")
        if not host:
            where = "a socket path, e.g. 'unix:///run/redis.sock'" if scheme == "unix" else (
                "a host, e.g. 'redis://127.0.0.1:6379/0'")
            raise ConfigError(f"Redis URL {shown!r} has no host; give {where}")

        def build() -> _SharedClient:
            try:
                if scheme == "redis+cluster":
                    direct = urlunsplit(parts._replace(scheme="redis"))
                    with _unavailable(f"RedisStore for {shown!r}", secrets):
                        return _SharedClient(RedisCluster.from_url(direct))
                return _SharedClient(redis.Redis.from_url(url))
            except ValueError as err:
                raise _url_error(shown, err, secrets) from chainable(err, secrets)

        # The URL is the key; the prefix is the store's.
        lease = shared.lease(("redis", url), build, _SharedClient.close,
                             usable=_SharedClient.usable)
        try:
            store = cls(lease.resource.client, prefix=prefix, clock=clock, keep_connections=False)
        except BaseException:
            lease.release()
            raise
        store._lease = lease
        kept = lease.resource.kept
        if kept is not None:  # one set of kept connections for all: each store's would hoard
            store._kept, store._command = kept, kept.command
        return store

    def _name(self, key: str) -> bytes:
        """The Redis key of storage key ``key`` (see :data:`SCHEMA`)."""
        return self._open + key.encode() + b"}"

    def load(self, key: str) -> Record | None:
        try:
            data = self._command("HGETALL", self._name(key))
        except _DRIVER_ERRORS as err:
            self._fail(err)
        return self._record(data, key)

    @property
    def keeps_connections(self) -> bool:
        """True if the store keeps connections from the client's pool (see the class doc)."""
        return self._kept is not None

    def prefetch(self, key: str) -> PendingLoad | None:
        """Send ``load(key)``'s HGETALL now; read it later (kept connections only)."""
        if self._kept is None:
            return None
        try:
            reply = self._kept.start("HGETALL", self._name(key))
        except _DRIVER_ERRORS:
            return None  # load() will meet the failure again and report it
        return None if reply is None else _PendingLoad(self, reply, key)

    def _record(self, data: Any, key: str) -> Record | None:
        """The record an HGETALL reply holds; None for a missing, expired or malformed one."""
        if not data:
            return None
        if isinstance(data, list):  # RESP2 without redis-py's callback: name, value, ...
            data = dict(zip(data[::2], data[1::2], strict=True))
        try:
            expires = float(data[_EXPIRES])
            if expires <= self._clock():
                return None
            fields = {}
            for name, value in data.items():  # f:<name>; m:* and anything else is not a field
                if (field := name.removeprefix(_FIELD)) != name:
                    fields[field.decode()] = value
            user = data.get(_USER)
            return Record(fields, float(data[_CREATED]), float(data[_SEEN]), expires,
                          data.get(_PERM) == b"1", None if user is None else user.decode())
        except KeyError as err:
            problem = f"it has no {err.args[0].decode()}"
        except ValueError:
            problem = "a timestamp is not a number, or a field name or the user is not UTF-8"
        security_log.warning("%r: the session hash with storage key fingerprint %s is malformed"
                             " (%s); treated as missing", self, fingerprint(key), problem)
        return None

    def create(self, key: str, record: Record) -> None:
        now = self._clock()
        args = ["EVALSHA", _CREATE_SHA, 1, self._name(key),
                now, self._ttl(record.expires_at, now),
                _CREATED, record.created_at, _SEEN, record.last_seen,
                _EXPIRES, record.expires_at, _PERM, b"1" if record.permanent else b"0"]
        if record.user is not None:
            args += (_USER, record.user.encode())
        for name, value in record.fields.items():
            args += (_FIELD + name.encode(), value)
        if not self._eval(_CREATE, args):
            raise KeyError("a session with this key exists")

    def update(self, key: str, patch: Patch) -> Updated:
        now = self._clock()
        deletes = [_FIELD + name.encode() for name in patch.delete] if patch.delete else []
        user = patch.user
        if user == "":
            deletes.append(_USER)
        expires = patch.expires_at
        args = ["EVALSHA", _UPDATE_SHA, 1, self._name(key),
                now, _FLAGS[patch.clear, patch.delete_if_empty],
                b"" if expires is None else self._ttl(
                    expires, now), len(deletes), *deletes]
        for name, value in patch.set.items():
            args += (_FIELD + name.encode(), value)
        if patch.last_seen is not None:
            args += (_SEEN, patch.last_seen)
        if expires is not None:
            args += (_EXPIRES, expires)
        if patch.permanent is not None:
            args += (_PERM, b"1" if patch.permanent else b"0")
        if user:
            args += (_USER, user.encode())
        return Updated(self._eval(_UPDATE, args))

    def delete(self, key: str) -> None:
        try:
            self._command("DEL", self._name(key))
        except _DRIVER_ERRORS as err:
            self._fail(err)

    def _eval(self, script: str, command: list[Any]) -> Any:
        """Run ``EVALSHA`` ``command``; on NOSCRIPT (a new or flushed server), load ``script``
        and run it again. Floats and ints are sent as their ``repr``, as redis-py does."""
        try:
            try:
                return self._command(*command)
            except NoScriptError:
                self.client.script_load(script)
                return self._command(*command)
        except _DRIVER_ERRORS as err:
            self._fail(err)

    def _through_client(self, *args: Any) -> Any:
        """``client.execute_command``, looked up per call: hooks added later still see it."""
        return self.client.execute_command(*args)  # type: ignore[no-untyped-call]

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

    def _fail(self, err: Exception) -> NoReturn:
        """Raise :class:`StoreUnavailable` from ``err`` if it means the store cannot serve now
        (the repr is built only then); re-raise any other driver error as it is."""
        if _is_unavailable(err):
            secrets = _client_secrets(self.client)
            raise StoreUnavailable(f"{self!r} unavailable: {type(err).__name__}:"
                                   f" {scrub(str(err), secrets)}") from chainable(err, secrets)
        raise err

    @staticmethod
    def _ttl(expires_at: float, now: float) -> int:
        """Milliseconds until ``expires_at`` by the store's clock (which may not be real time)."""
        return max(1, math.ceil(min((expires_at - now) * 1000, _MAX_TTL_MS)))

    def __repr__(self) -> str:
        if isinstance(self.client, RedisCluster):
            where = "cluster"
        else:
            conn = self.client.get_connection_kwargs()
            if conn.get("path"):
                where = f"unix:{conn['path']}"
            else:
                where = f"{conn.get('host')}:{conn.get('port')}/{conn.get('db', 0)}"
        return f"<RedisStore {where} prefix={self.prefix!r}>"


class _PendingLoad:
    """A prefetched ``RedisStore.load``: the HGETALL is on its way."""

    __slots__ = ("_key", "_reply", "_store")

    def __init__(self, store: RedisStore, reply: PendingReply, key: str) -> None:
        self._store, self._reply, self._key = store, reply, key

    def result(self) -> Record | None:
        try:
            data = self._reply.wait()
        except _DRIVER_ERRORS as err:
            self._store._fail(err)
        return self._store._record(data, self._key)

    def cancel(self) -> None:
        self._reply.cancel()


class _SharedClient:
    """A client built from a URL, and the connections kept from its pool for all its stores.

    The kept connections are shared: if each store kept its own, stores alive at once would
    each hold some, and enough of them would exhaust the pool (100 connections by default).
    """

    __slots__ = ("client", "kept")

    def __init__(self, client: redis.Redis | RedisCluster) -> None:
        self.client = client
        self.kept = (KeptConnections(client.connection_pool)
                     if isinstance(client, redis.Redis) else None)

    def close(self) -> None:
        """Close the client and its connections (a cluster client's ``close`` leaves its
        nodes' connections open, for the collector)."""
        if self.kept is not None:
            self.kept.close()
        client = self.client
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
        client = self.client
        return (not isinstance(client, RedisCluster)
                or client.get_default_node() is not None)  # type: ignore[no-untyped-call]


def _is_unavailable(err: Exception) -> bool:
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
def _unavailable(store: str, secrets: tuple[str, ...]) -> Iterator[None]:
    """Driver errors that mean the store cannot serve -> StoreUnavailable, without ``secrets``."""
    try:
        yield
    except _DRIVER_ERRORS as err:
        if _is_unavailable(err):
            raise StoreUnavailable(f"{store} unavailable: {type(err).__name__}:"
                                   f" {scrub(str(err), secrets)}") from chainable(err, secrets)
        raise


def _url_error(shown: str, err: Exception, secrets: tuple[str, ...], *,
               hint: bool = False) -> ConfigError:
    """ConfigError for the URL shown as ``shown``, quoting ``err`` without ``secrets``;
    with ``hint``, on how a password with a raw '/' (say) broke the URL's parse."""
    tail = ("; a '@', '/', '?' or '#' in the user name or password must be percent-encoded"
            " ('%40', '%2F', '%3F', '%23')" if hint and "@" in shown else "")
    return ConfigError(f"Redis URL {shown!r}: {scrub(str(err), secrets)}{tail}")


def _client_secrets(client: redis.Redis | RedisCluster) -> tuple[str, ...]:
    """The passwords ``client`` connects with, to keep them out of messages."""
    kwargs = client.get_connection_kwargs()
    return tuple(str(kwargs[name]) for name in ("password", "ssl_password") if kwargs.get(name))
