"""Who is logged in where, in Redis: the ``UserIndex`` and ``Inventory`` abilities of
:class:`~satchel.stores.redis.RedisStore`.

Each user has a sorted set of the storage keys of its sessions (``users`` in
:data:`~satchel.stores.redis.SCHEMA`), each scored by when it was added (store
clock). How the sets stay correct:

- **A live session of a user is always in that user's set.** On a single server
  the key is added by the script that creates the session, or that moves it to
  the user (``update(Patch(user=...))``). On a Redis Cluster the set and the
  session live in different slots, and no script may write both: the key is added
  to the set first (``ADD``) and the session written after. A failure in between
  leaves a member without its session, which listings skip and later remove;
  never a session missing from its set.
- **A set lives at least as long as each of its live members.** Each session of a
  user notes in ``m:ulive`` a time its set is known to live until (the set's TTL
  was raised to it first), and its own TTL never runs past ``m:ulive``. An update
  that would extend the session past it (a touch) keeps the TTL at ``m:ulive``
  and says so; the store then raises the set's TTL, to twice the session's
  remaining life (so this happens about once per lifetime, not once per touch),
  and gives the session its whole TTL (``EXTEND``). If that second step fails,
  the session ends at ``m:ulive``, early, but does not outlive its set. A set's
  TTL is only ever raised (Redis 6 has no ``EXPIRE GT``: the scripts compare
  ``PTTL`` first).
- **A listing never returns a member whose session is gone, expired or now
  another user's**: each member is checked by reading its session. On a single
  server that check and the removal of such members are one script (``LIST``),
  so nothing changes between them. On a cluster they cannot be: the members'
  hashes are read with one pipeline (a batch per node), and a member that does
  not match is removed only once it has been in the set for :data:`GRACE`
  seconds (a create or a move to the user in flight adds its key a round trip
  before it writes the session), and only if its score is still the one read
  (``PRUNE``): a member added again since (a session moved back to the user)
  keeps its place.
- ``delete_user`` on a single server is one script (``DELETE_USER``). On a
  cluster each member is deleted by a script of its own, in its slot, which
  checks that the session is live and still the user's (``DELETE_IF_USER``); the
  set is then pruned as by a listing. Sessions created while it runs may stay.
- A session written before the sets existed has ``m:user`` but no ``m:ulive``:
  its next update adds it to its set, as for an extension.

``sessions_of`` and ``delete_user`` cost O(that user's members): a ``ZRANGE``,
then one read per member. ``stats`` and ``all_sessions`` walk the whole store:
``SCAN`` under the store's prefix (on a cluster, on every primary), reading the
metadata of each batch of keys with a pipeline.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NoReturn

import redis
from redis.cluster import RedisCluster
from redis.exceptions import ResponseError

from satchel.breaker import Breaker
from satchel.store import BOOKKEEPING, SessionInfo, StoreStats
from satchel.stores.redis.connections import LazyCluster
from satchel.stores.redis.errors import DRIVER_ERRORS
from satchel.stores.redis.loads import is_wrong_type
from satchel.stores.redis.names import Names
from satchel.stores.redis.record import Head, info_of
from satchel.stores.redis.scripts import CREATED, DEVICE, EXPIRES, PERM, SEEN, USER
from satchel.stores.redis.user_scripts import (
    ADD,
    ADD_SHA,
    DELETE_IF_USER,
    DELETE_IF_USER_SHA,
    DELETE_USER,
    DELETE_USER_SHA,
    EXTEND,
    EXTEND_SHA,
    LIST,
    LIST_SHA,
    PRUNE,
    PRUNE_SHA,
)

GRACE = 300.0
"""Seconds a cluster's set keeps a member whose session is missing or another user's (its
session may still be on its way), before a listing or ``delete_user`` removes it."""
INFO_FIELDS = (CREATED, SEEN, EXPIRES, USER, DEVICE, PERM)  # of a hash (the earlier layout)
BATCH = 1000  # keys per SCAN and per pipeline of all_sessions


def set_until(expires_at: float, now: float) -> float:
    """The time a user's set is made to live until for a session expiring at ``expires_at``:
    twice the session's remaining life, so a touch seldom has to raise it."""
    return expires_at + max(expires_at - now, 0.0)


class UserSets:
    """``sessions_of``, ``delete_user``, ``stats`` and ``all_sessions`` of ``RedisStore``,
    and the steps its ``create`` and ``update`` take for the sets on a cluster."""

    prefix: str
    client: redis.Redis | RedisCluster
    _names: Names
    _clock: Callable[[], float]
    _breaker: Breaker
    _command: Callable[..., Any]

    def _eval(self, script: str, command: list[Any]) -> Any:
        raise NotImplementedError

    def _fail(self, err: Exception) -> NoReturn:
        raise NotImplementedError

    def _probe(self) -> None:
        raise NotImplementedError

    @staticmethod
    def _ttl(expires_at: float, now: float) -> int:
        raise NotImplementedError

    @property
    def _cluster(self) -> bool:
        return isinstance(self.client, RedisCluster | LazyCluster)

    def _users(self, user: str) -> bytes:
        """The Redis key of ``user``'s set."""
        digest = hashlib.sha256(user.encode()).hexdigest().encode()
        return self.prefix.encode() + b"user:{" + digest + b"}"

    def _member_names(self, members: Iterable[bytes]) -> list[bytes]:
        """The Redis keys a script reads for the sessions of a set's members: each one's
        name, and after it its earlier name with ``legacy_key_names``."""
        names = []
        for member in members:
            names.append(self._names.member(member))
            if (legacy := self._names.legacy_member(member)) is not None:
                names.append(legacy)
        return names

    def _call(self, *args: Any) -> Any:
        if self._breaker.down:
            self._breaker.enter(self._probe)
        try:
            return self._command(*args)
        except DRIVER_ERRORS as err:
            self._fail(err)

    def _add(self, user: str, key: str, now: float, until: float) -> None:
        """Add ``key`` to ``user``'s set, made to live until ``until`` at least: on a cluster,
        before the session is written with that user."""
        self._eval(ADD, ["EVALSHA", ADD_SHA, 1, self._users(user), now, self._ttl(until, now),
                         key])

    def _add_moved(self, key: str, user: str, expires_at: float | None,
                   now: float) -> float | None:
        """On a cluster, before an update moves session ``key`` to ``user``: add it to the
        user's set; return the time the set lives until. None if the session is gone."""
        if expires_at is None:
            expires_at = self._expiry(self._names.of(key))
            if expires_at is None and (legacy := self._names.legacy(key)) is not None:
                expires_at = self._expiry(legacy)
            if expires_at is None:
                return None  # missing
            if expires_at != expires_at:
                return None  # malformed (nan): the update finds it gone
        until = set_until(expires_at, now)
        self._add(user, key, now, until)
        return until

    def _expiry(self, name: bytes) -> float | None:
        """When the session at ``name`` expires (store clock); None if there is none there,
        nan if it cannot be read."""
        try:
            current = self._call("GET", name)
            return None if current is None else float(Head(current).expires)
        except ResponseError as err:  # the earlier layout: a hash
            if not is_wrong_type(err):
                raise
            try:
                return float(self._call("HGET", name, EXPIRES))
            except (TypeError, ValueError):
                return math.nan
        except (ValueError, IndexError, struct.error):
            return math.nan

    def _extend(self, key: str, name: bytes, user: str, expires_at: float) -> None:
        """Raise ``user``'s set's TTL for session ``key`` (at ``name``), expiring at
        ``expires_at``, then give the session its whole TTL (an update kept it at
        ``m:ulive``)."""
        now = self._clock()
        until = set_until(expires_at, now)
        if self._cluster:
            self._add(user, key, now, until)
            self._eval(EXTEND, ["EVALSHA", EXTEND_SHA, 1, name, now, user, until])
        else:
            self._eval(EXTEND, ["EVALSHA", EXTEND_SHA, 2, name, self._users(user), now, user,
                                until, self._ttl(until, now), key])

    def sessions_of(self, user: str) -> list[SessionInfo]:
        now = self._clock()
        name = self._users(user)
        if self._cluster:
            scored = self._scored(name)
            found: list[SessionInfo] = []
            stale: list[Any] = []
            for (member, score), meta in zip(scored, self._read(m for m, _ in scored),
                                             strict=True):
                info = _info(member, meta, now)
                if info is not None and info.user == user:
                    found.append(info)
                elif now - score > GRACE:
                    stale += (member, score)
            self._prune(name, stale)
        else:
            members = self._call("ZRANGE", name, 0, -1)
            if not members:
                return []
            names = self._member_names(members)
            rows = self._eval(LIST, ["EVALSHA", LIST_SHA, 1 + len(names), name, *names, now,
                                     user, *members])
            found = [info for row in rows
                     if (info := _info(row[0], [*row[1:4], user.encode(), *row[4:]], now))]
        return sorted(found, key=lambda info: (info.created_at, info.key))

    def delete_user(self, user: str, keep: str | None = None) -> list[str]:
        now = self._clock()
        name = self._users(user)
        if not self._cluster:
            members = self._call("ZRANGE", name, 0, -1)
            if not members:
                return []
            names = self._member_names(members)
            deleted = self._eval(DELETE_USER, [
                "EVALSHA", DELETE_USER_SHA, 1 + len(names), name, *names, now, user,
                keep or "", *members])
            return [member.decode() for member in deleted]
        done: list[str] = []
        stale: list[Any] = []
        for member, score in self._scored(name):
            if member.decode() == keep:
                continue
            outcome = self._eval(DELETE_IF_USER, ["EVALSHA", DELETE_IF_USER_SHA, 1,
                                                  self._names.member(member), now, user])
            if outcome == 0 and (legacy := self._names.legacy_member(member)) is not None:
                outcome = self._eval(DELETE_IF_USER, ["EVALSHA", DELETE_IF_USER_SHA, 1,
                                                      legacy, now, user])
            if outcome == 1:
                done.append(member.decode())
            if outcome == 1 or now - score > GRACE:
                stale += (member, score)
        self._prune(name, stale)
        return done

    def _scored(self, name: bytes) -> list[tuple[bytes, float]]:
        """The members of set ``name`` with their scores (RESP2 or RESP3 replies)."""
        reply = self._call("ZRANGE", name, 0, -1, "WITHSCORES")
        if reply and not isinstance(reply[0], list | tuple):  # RESP2: member, score, ...
            reply = list(zip(reply[::2], reply[1::2], strict=True))
        return [(member, float(score)) for member, score in reply]

    def _prune(self, name: bytes, stale: list[Any]) -> None:
        if stale:
            self._eval(PRUNE, ["EVALSHA", PRUNE_SHA, 1, name, *stale])

    def _read(self, members: Iterable[bytes]) -> list[Any]:
        """The metadata of the members' sessions (see :func:`_info`; None for one missing or
        unreadable), read at their names and, for those found nowhere there, with
        ``legacy_key_names``, at their earlier names (see :meth:`_read_names`)."""
        members = list(members)
        found = self._read_names([self._names.member(member) for member in members])
        if self._names.legacy_on:
            missed = [i for i, meta in enumerate(found) if meta is None]
            if missed:
                again = self._read_names([self._names.legacy_member(members[i]) or b""
                                          for i in missed])
                for i, meta in zip(missed, again, strict=True):
                    found[i] = meta
        return found

    def _read_names(self, names: list[bytes]) -> list[Any]:
        """The metadata of the sessions at ``names`` (see :func:`_info`; None for one missing
        or unreadable), through one pipeline of GETs (a cluster's sends a batch to each
        node), and one of HMGETs for those of the earlier layout (hashes)."""
        if self._breaker.down:
            self._breaker.enter(self._probe)
        try:
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.get(name)
            replies: list[Any] = list(pipe.execute(raise_on_error=False))
            hashes = []
            for i, reply in enumerate(replies):
                if isinstance(reply, Exception):
                    if not is_wrong_type(reply):
                        raise reply
                    hashes.append(i)
                else:
                    replies[i] = info_of(reply)
            if hashes:
                pipe = self.client.pipeline(transaction=False)
                for i in hashes:
                    pipe.hmget(names[i], INFO_FIELDS)
                for i, reply in zip(hashes, pipe.execute(raise_on_error=False), strict=True):
                    replies[i] = None if isinstance(reply, Exception) else reply
            return replies
        except DRIVER_ERRORS as err:
            self._fail(err)

    def stats(self) -> StoreStats:
        """Live sessions and distinct users: walks the store (see :meth:`all_sessions`)."""
        sessions, users = 0, set()
        for info in self.all_sessions():
            sessions += 1
            users.add(info.user)
        users.discard(None)
        return StoreStats(sessions, len(users))

    def all_sessions(self) -> Iterator[SessionInfo]:
        """Every live session: ``SCAN`` for the store's keys (on a cluster, on every
        primary), 1,000 at a time, keeping those whose name has a session's form (and, with
        ``legacy_key_names``, the earlier form), each batch's metadata read through one
        pipeline. Walks the whole database; a session created or deleted meanwhile may or
        may not be seen."""
        if isinstance(self.client, LazyCluster):
            self._call("PING")  # builds the cluster client, or fails as a command would
        if self._breaker.down:
            self._breaker.enter(self._probe)
        try:
            names = self.client.scan_iter(match=_glob_escape(self.prefix) + "*", count=BATCH)
            keyed = ((name, key) for name in names if (key := self._names.key_of(name)))
            for batch in _batches(keyed, BATCH):
                now = self._clock()
                metas = self._read_names([name for name, _ in batch])
                for (_, key), meta in zip(batch, metas, strict=True):
                    if (info := _info(key.encode(), meta, now)) is not None:
                        yield info
        except DRIVER_ERRORS as err:
            self._fail(err)


_BOOKKEEPING = BOOKKEEPING.encode()


def _info(member: bytes, meta: Sequence[Any] | None, now: float) -> SessionInfo | None:
    """A session's metadata: (created, seen, expires, user, device, perm), floats or the
    bytes of a number, bytes or None, b"1" or b"0" (a hash's ``INFO_FIELDS``, or
    :meth:`~satchel.stores.redis.record.Head.info`); None if it is gone, expired or
    malformed."""
    if meta is None:
        return None
    created, seen, expires, user, device, perm = meta
    try:
        if (expires is None or float(expires) <= now or created is None or seen is None
                or device == _BOOKKEEPING):
            return None
        return SessionInfo(member.decode(), float(created), float(seen), float(expires),
                           None if user is None else user.decode(),
                           None if device is None else device.decode(), perm == b"1")
    except ValueError:  # not a number, or not UTF-8
        return None


def _glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis glob pattern (MATCH)."""
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
