"""RedisStore: one Redis string per session (see :data:`~satchel.stores.redis.scripts.SCHEMA`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, NoReturn, cast

import redis
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

from satchel.breaker import Breaker
from satchel.errors import ConfigError, StoreUnavailable
from satchel.ids import fingerprint
from satchel.lifetime import Clock, system_clock
from satchel.redact import chainable, scrub
from satchel.resources import Lease, shared
from satchel.store import DEVICE_MAX, Patch, PendingLoad, Record, Updated
from satchel.stores.redis.connections import (
    KeptConnections,
    LazyCluster,
    SharedClient,
    retries_of,
)
from satchel.stores.redis.errors import (
    DRIVER_ERRORS,
    client_secrets,
    is_unavailable,
    is_unreachable,
)
from satchel.stores.redis.loads import FailedLoad, PendingGetLoad, is_wrong_type, parse_record
from satchel.stores.redis.millis import nearest, up
from satchel.stores.redis.names import Names
from satchel.stores.redis.record import DOUBLE, encode, field
from satchel.stores.redis.scripts import (
    CREATE,
    CREATE_SHA,
    FLAGS,
    RELEASE_LOCK,
    RELEASE_LOCK_SHA,
    UPDATE,
    UPDATE_SHA,
)
from satchel.stores.redis.urls import client_builder
from satchel.stores.redis.user_scripts import MAX_TTL_MS
from satchel.stores.redis.users import UserSets, set_until

security_log = logging.getLogger("satchel.security")
log = logging.getLogger("satchel")
DEFAULT_TIMEOUT = 3.0
"""Seconds :meth:`RedisStore.from_url` bounds connecting and each command by."""


class RedisStore(UserSets):
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
    session that is gone), deletes remove both names (two commands on a
    cluster), and listings return both. Once every session of the earlier
    names has expired (the longest idle or absolute timeout after upgrading,
    or none left: ``redis-cli --scan --pattern 'satchel:{*'``), pass
    ``legacy_key_names=False``: the earlier names are then neither read nor
    listed. On a single server ``create`` refuses a storage key that lives
    under its earlier name; a cluster cannot check that in the same script,
    and never needs to for the engine's keys (SHA-256 of a new random id).

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

    def load(self, key: str) -> Record | None:
        """The GET of the session's name; on a miss, with ``legacy_key_names``, of its
        earlier name (a second round trip)."""
        if self._breaker.down:  # the store is down: fail fast, or probe
            self._breaker.enter(self._probe)
        return self.loaded(self._fetch(self._names.of(key)), key)

    def _fetch(self, name: bytes) -> Any:
        """The GET reply for ``name``; an HGETALL reply for a hash (the earlier layout)."""
        try:
            return self._command("GET", name)
        except DRIVER_ERRORS as err:
            if not is_wrong_type(err):
                self._fail(err)
        return self.fetch_hash(name)

    def fetch_hash(self, name: bytes) -> Any:
        """The HGETALL reply for ``name``: a GET there met a hash (the earlier layout)."""
        try:
            return self._command("HGETALL", name)
        except DRIVER_ERRORS as err:
            self._fail(err)

    def loaded(self, data: Any, key: str) -> Record | None:
        """The record of ``key`` from ``data``, the reply read at its name; if that holds
        nothing, what its earlier name holds (with ``legacy_key_names``)."""
        if data is None and (legacy := self._names.legacy(key)) is not None:
            data = self._fetch(legacy)
        if self._breaker.down:  # tripped by another call meanwhile: the server answers
            self._breaker.reached()
        return self._record(data, key)

    @property
    def keeps_connections(self) -> bool:
        """True if the store keeps connections from the client's pool (see the class doc)."""
        return self._kept is not None

    def prefetch(self, key: str) -> PendingLoad | None:
        """Send ``load(key)``'s GET now; read it later (kept connections only)."""
        if self._kept is None or self._breaker.down:
            return None
        try:
            reply = self._kept.start("GET", self._names.of(key))
        except DRIVER_ERRORS as err:
            # Report this failure from result(): letting load() meet it again would make the
            # request wait out the timeout twice (a stalled server: connecting timed out here).
            try:
                self._fail(err)  # trips the breaker now if the server is unreachable
            except Exception as failed:  # kept, to raise from result()
                return FailedLoad(failed)
        return None if reply is None else PendingGetLoad(self, reply, key)

    def _record(self, data: Any, key: str) -> Record | None:
        """The record a GET (or, for the earlier layout, HGETALL) reply holds; None for a
        missing, expired or malformed one."""
        record = parse_record(data, self._clock())
        if isinstance(record, str):
            security_log.warning("%r: the session with storage key fingerprint %s is"
                                 " malformed (%s); treated as missing", self, fingerprint(key),
                                 record)
            return None
        return record

    def create(self, key: str, record: Record) -> None:
        """One script; with a user, it adds the session to the user's set too (on a cluster,
        a script on the set's slot does, first: see :mod:`~satchel.stores.redis.users`).
        Always under the session's name; on a single server with ``legacy_key_names``, the
        script refuses a key that lives under its earlier name too (a cluster cannot look
        there in the same script: see the class doc)."""
        now = self._clock()
        names: list[bytes] = [self._names.of(key)]
        set_ttl: bytes | int = b""
        until = None if record.user is None else set_until(record.expires_at, now)
        device = None if record.device is None else record.device[:DEVICE_MAX].encode()
        data = encode(record, until, device)  # first: a time out of range writes nothing
        if record.user is not None and until is not None:
            if self._cluster:
                self._add(record.user, key, now, until)
            else:
                names.append(self._users(record.user))
                set_ttl = self._ttl(until, now)
        legacy = None if self._cluster else self._names.legacy(key)
        if legacy is not None:
            names.append(legacy)
        if not self._eval(CREATE, ["EVALSHA", CREATE_SHA, len(names), *names, now,
                                   self._ttl(record.expires_at, now), set_ttl, key,
                                   data, b"" if legacy is None else b"1"]):
            raise KeyError("a session with this key exists")

    def update(self, key: str, patch: Patch) -> Updated:
        """One script at the session's name; if it finds nothing there, with
        ``legacy_key_names``, one more at its earlier name."""
        now = self._clock()
        user = patch.user
        expires = patch.expires_at
        # As the record keeps them (first: a time out of range writes nothing).
        seen = b"" if patch.last_seen is None else DOUBLE.pack(nearest(patch.last_seen) / 1000)
        ends = b"" if expires is None else DOUBLE.pack(up(expires) / 1000)
        moved, users = b"", []
        if user:  # the session goes to (or stays in) the user's set
            if not self._cluster:
                users.append(self._users(user))
                moved = b"*"
            elif (until := self._add_moved(key, user, expires, now)) is None:
                return Updated.GONE
            else:
                moved = repr(until).encode()
        args = [now, FLAGS[patch.clear, patch.delete_if_empty],
                b"" if expires is None else self._ttl(expires, now), moved, key,
                seen, ends,
                b"" if patch.permanent is None else b"1" if patch.permanent else b"0",
                b"" if user is None else b"-" if user == "" else b"=" + user.encode(),
                len(patch.delete), *[name.encode() for name in patch.delete]]
        for name, value in patch.set.items():
            encoded = name.encode()
            args += (encoded, field(encoded, value))
        at = self._names.of(key)
        reply = self._eval(UPDATE, ["EVALSHA", UPDATE_SHA, 1 + len(users), at, *users, *args])
        if reply == 0 and (legacy := self._names.legacy(key)) is not None:
            at = legacy  # a session from before the current names (never moved)
            reply = self._eval(UPDATE, ["EVALSHA", UPDATE_SHA, 1 + len(users), at, *users,
                                        *args])
        if isinstance(reply, list):  # the user's set must live longer first
            self._extend(key, at, reply[1].decode(), float(reply[2]))
            return Updated.KEPT
        return Updated(reply)

    def delete(self, key: str) -> None:
        """DEL of the session's name and, with ``legacy_key_names``, of its earlier name:
        one command on a single server, two on a cluster (the names' slots differ)."""
        if self._breaker.down:
            self._breaker.enter(self._probe)
        names = [self._names.of(key)]
        if (legacy := self._names.legacy(key)) is not None:
            names.append(legacy)
        try:
            if self._cluster:
                for name in names:
                    self._command("DEL", name)
            else:
                self._command("DEL", *names)
        except DRIVER_ERRORS as err:
            self._fail(err)

    def acquire_lock(self, key: str, token: str, lease: float) -> bool:
        """``SET lock token NX PX lease``: Redis itself ends the lease (its own clock)."""
        if self._breaker.down:
            self._breaker.enter(self._probe)
        name = self.prefix.encode() + b"lock:{" + key.encode() + b"}"
        try:
            reply = self._command("SET", name, token, "NX", "PX",
                                  max(1, math.ceil(min(lease * 1000, MAX_TTL_MS))))
        except DRIVER_ERRORS as err:
            self._fail(err)
        return bool(reply)

    def release_lock(self, key: str, token: str) -> bool:
        name = self.prefix.encode() + b"lock:{" + key.encode() + b"}"
        return bool(self._eval(RELEASE_LOCK, ["EVALSHA", RELEASE_LOCK_SHA, 1, name, token]))

    def _eval(self, script: str, command: list[Any]) -> Any:
        """Run ``EVALSHA`` ``command``; on NOSCRIPT (a new or flushed server), load ``script``
        and run it again. Floats and ints are sent as their ``repr``, as redis-py does."""
        if self._breaker.down:
            self._breaker.enter(self._probe)
        try:
            try:
                reply = self._command(*command)
            except NoScriptError:
                self.client.script_load(script)
                reply = self._command(*command)
        except DRIVER_ERRORS as err:
            self._fail(err)
        if self._breaker.down:  # tripped by another call meanwhile: the server answers
            self._breaker.reached()
        return reply

    def _build_cluster(self, *args: Any) -> Any:
        """The first command of a store whose cluster was down at start: build the client
        (the driver's error if no node answers yet), then send ``args`` through it."""
        client: Any = self.client
        if isinstance(client, LazyCluster):
            self.client = client.cluster()
        self._command = self._through_client
        return self._through_client(*args)

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

    def _probe(self) -> None:
        """The breaker's check that the server is back: a PING (to the first node named in
        the URL, for a cluster client not built yet: building it takes longer than a probe
        may hold a request; the request that follows builds it)."""
        client: Any = self.client
        try:
            if isinstance(client, LazyCluster) and client.built is None:
                client.ping_first_node()
            else:
                self._command("PING")
        except DRIVER_ERRORS as err:
            self._fail(err)

    def _fail(self, err: Exception) -> NoReturn:
        """Raise :class:`StoreUnavailable` from ``err`` if it means the store cannot serve now
        (the repr is built only then), tripping the breaker if the server could not be
        reached; re-raise any other driver error as it is."""
        if is_unavailable(err):
            secrets = client_secrets(self.client)
            why = f"{type(err).__name__}: {scrub(str(err), secrets)}"
            cause = chainable(err, secrets)
            if is_unreachable(err):
                self._breaker.trip(why, cause)
            raise StoreUnavailable(f"{self!r} unavailable: {why}") from cause
        raise err

    @staticmethod
    def _ttl(expires_at: float, now: float) -> int:
        """Milliseconds until ``expires_at`` by the store's clock (which may not be real time)."""
        return max(1, math.ceil(min((expires_at - now) * 1000, MAX_TTL_MS)))

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
