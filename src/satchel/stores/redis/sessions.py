"""A session's operations of :class:`~satchel.stores.redis.RedisStore`: ``load`` (and
its prefetch), ``create``, ``update``, ``delete``, and the session's lock.

One Redis string per session (see :data:`~satchel.stores.redis.scripts.SCHEMA`) under
its name (see :mod:`~satchel.stores.redis.names`); ``create`` and ``update`` are Lua
scripts, which keep the user's set too (see :mod:`~satchel.stores.redis.users`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from satchel.ids import fingerprint
from satchel.store import DEVICE_MAX, Patch, PendingLoad, Record, Updated
from satchel.stores.redis.connections import KeptConnections
from satchel.stores.redis.devices import pack
from satchel.stores.redis.errors import DRIVER_ERRORS
from satchel.stores.redis.loads import FailedLoad, PendingGetLoad, is_wrong_type, parse_record
from satchel.stores.redis.merge import LastRead, merged
from satchel.stores.redis.millis import nearest, up
from satchel.stores.redis.record import DOUBLE, decode_with_head, encode, field
from satchel.stores.redis.scripts import (
    CREATE,
    CREATE_SHA,
    FAST_UPDATE,
    FAST_UPDATE_SHA,
    FLAGS,
    RELEASE_LOCK,
    RELEASE_LOCK_SHA,
    UPDATE,
    UPDATE_SHA,
)
from satchel.stores.redis.user_scripts import MAX_TTL_MS
from satchel.stores.redis.users import UserSets, set_until

security_log = logging.getLogger("satchel.security")


class Sessions(UserSets):
    """``load``, ``prefetch``, ``create``, ``update``, ``delete`` and the locks of
    ``RedisStore``."""

    _kept: KeptConnections | None
    _last_read: LastRead  # what update's fast path merges onto (see merge)

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
        current = True
        if data is None and (legacy := self._names.legacy(key)) is not None:
            data, current = self._fetch(legacy), False
        self._answered()
        return self._record(data, key, keep=current)

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

    def _record(self, data: Any, key: str, *, keep: bool) -> Record | None:
        """The record a GET (or, for the earlier layout, HGETALL) reply holds; None for a
        missing, expired or malformed one. ``keep``: note a live one for update's fast path
        (read under the session's current name, where that path writes)."""
        if type(data) is bytes:
            record, head = decode_with_head(data, self._clock())
            if keep and head is not None and type(record) is Record:
                self._last_read.keep(key, data, head)
        else:
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
        device = None if record.device is None else pack(record.device[:DEVICE_MAX])
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
        sets = []
        for name, value in patch.set.items():
            encoded = name.encode()
            sets.append((encoded, field(encoded, value)))
        ttl = b"" if expires is None else self._ttl(expires, now)
        read = self._last_read.take(key)  # the fast path: see merge
        if read is not None and (new := merged(*read, patch, sets, now)) is not None:
            if self._eval(FAST_UPDATE, ["EVALSHA", FAST_UPDATE_SHA, 1, self._names.of(key),
                                        read[0], new, ttl]):
                return Updated.KEPT
        args = [now, FLAGS[patch.clear, patch.delete_if_empty], ttl, moved, key, seen, ends,
                b"" if patch.permanent is None else b"1" if patch.permanent else b"0",
                b"" if user is None else b"-" if user == "" else b"=" + user.encode(),
                len(patch.delete), *[name.encode() for name in patch.delete]]
        for encoded, chunk in sets:
            args += (encoded, chunk)
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
        """DEL of the session's name and of its earlier name (whatever ``legacy_key_names``
        says: a revocation ends a session wherever it lives): one command on a single
        server, two on a cluster (the names' slots differ)."""
        names = [self._names.of(key), self._names.earlier(key)]
        if self._cluster:
            for name in names:
                self._call("DEL", name)
        else:
            self._call("DEL", *names)

    def acquire_lock(self, key: str, token: str, lease: float) -> bool:
        """``SET lock token NX PX lease``: Redis itself ends the lease (its own clock)."""
        name = self.prefix.encode() + b"lock:{" + key.encode() + b"}"
        return bool(self._call("SET", name, token, "NX", "PX",
                               max(1, math.ceil(min(lease * 1000, MAX_TTL_MS)))))

    def release_lock(self, key: str, token: str) -> bool:
        name = self.prefix.encode() + b"lock:{" + key.encode() + b"}"
        return bool(self._eval(RELEASE_LOCK, ["EVALSHA", RELEASE_LOCK_SHA, 1, name, token]))
