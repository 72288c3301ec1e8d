"""Who is logged in where, in Redis: the ``UserIndex`` ability of
:class:`~satchel.stores.redis.RedisStore` (its ``Inventory`` is in
:mod:`~satchel.stores.redis.inventory`).

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
then one read per member (as :mod:`~satchel.stores.redis.inventory` reads them).
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterable
from typing import Any

from redis.exceptions import ResponseError

from satchel.store import SessionInfo
from satchel.stores.redis.inventory import Inventory, session_info
from satchel.stores.redis.loads import is_wrong_type
from satchel.stores.redis.record import Head
from satchel.stores.redis.scripts import EXPIRES
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


def set_until(expires_at: float, now: float) -> float:
    """The time a user's set is made to live until for a session expiring at ``expires_at``:
    twice the session's remaining life, so a touch seldom has to raise it."""
    return expires_at + max(expires_at - now, 0.0)


class UserSets(Inventory):
    """``sessions_of`` and ``delete_user`` of ``RedisStore``, and the steps its ``create``
    and ``update`` take for the sets on a cluster."""

    def _users(self, user: str) -> bytes:
        """The Redis key of ``user``'s set."""
        digest = hashlib.sha256(user.encode()).hexdigest().encode()
        return self.prefix.encode() + b"user:{" + digest + b"}"

    def _member_names(self, members: Iterable[bytes]) -> list[bytes]:
        """The Redis keys a script reads for the sessions of a set's members: each one's
        name, and after it its earlier name (whatever ``legacy_key_names`` says: see
        :mod:`~satchel.stores.redis.names`)."""
        names: list[bytes] = []
        for member in members:
            names += (self._names.member(member), self._names.earlier_member(member))
        return names

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
                info = session_info(member, meta, now)
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
                     if (info := session_info(row[0], [*row[1:4], user.encode(), *row[4:]], now))]
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
            if outcome == 0:  # under its earlier name?
                outcome = self._eval(DELETE_IF_USER, ["EVALSHA", DELETE_IF_USER_SHA, 1,
                                                      self._names.earlier_member(member), now,
                                                      user])
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
