"""Every session in Redis: the ``Inventory`` ability of
:class:`~satchel.stores.redis.RedisStore` (``stats``, ``all_sessions``), and the reading
of many sessions' metadata at once, which user-set listings use too
(:mod:`~satchel.stores.redis.users`).

``stats`` and ``all_sessions`` walk the whole store: ``SCAN`` under the store's prefix (on
a cluster, on every primary), reading the metadata of each batch of keys with a pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from satchel.store import BOOKKEEPING, SessionInfo, StoreStats
from satchel.stores.redis.clients import LazyCluster
from satchel.stores.redis.commands import Commands
from satchel.stores.redis.devices import unpack
from satchel.stores.redis.errors import DRIVER_ERRORS
from satchel.stores.redis.loads import is_wrong_type
from satchel.stores.redis.record import info_of
from satchel.stores.redis.scripts import CREATED, DEVICE, EXPIRES, PERM, SEEN, USER

INFO_FIELDS = (CREATED, SEEN, EXPIRES, USER, DEVICE, PERM)  # of a hash (the earlier layout)
BATCH = 1000  # keys per SCAN and per pipeline of all_sessions


class Inventory(Commands):
    """``stats`` and ``all_sessions`` of ``RedisStore``, and the metadata reads of a
    user's set's members."""

    def _read(self, members: Iterable[bytes]) -> list[Any]:
        """The metadata of the members' sessions (see :func:`session_info`; None for one missing or
        unreadable), read at their names and, for those found nowhere there, at their
        earlier names (whatever ``legacy_key_names`` says; see :meth:`_read_names`)."""
        members = list(members)
        found = self._read_names([self._names.member(member) for member in members])
        missed = [i for i, meta in enumerate(found) if meta is None]
        if missed:
            again = self._read_names([self._names.earlier_member(members[i]) for i in missed])
            for i, meta in zip(missed, again, strict=True):
                found[i] = meta
        return found

    def _read_names(self, names: list[bytes]) -> list[Any]:
        """The metadata of the sessions at ``names`` (see :func:`session_info`; None for one missing
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
        except DRIVER_ERRORS as err:
            self._fail(err)
        self._answered()
        return replies

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
                    if (info := session_info(key.encode(), meta, now)) is not None:
                        yield info
        except DRIVER_ERRORS as err:
            self._fail(err)


def session_info(member: bytes, meta: Sequence[Any] | None, now: float) -> SessionInfo | None:
    """A session's metadata: (created, seen, expires, user, device, perm), floats or the
    bytes of a number, bytes or None, b"1" or b"0" (a hash's ``INFO_FIELDS``, or
    :meth:`~satchel.stores.redis.record.Head.info`); None if it is gone, expired or
    malformed."""
    if meta is None:
        return None
    created, seen, expires, user, device, perm = meta
    try:
        if expires is None or float(expires) <= now or created is None or seen is None:
            return None
        if device is not None and (device := unpack(device)) == BOOKKEEPING:
            return None
        return SessionInfo(member.decode(), float(created), float(seen), float(expires),
                           None if user is None else user.decode(), device, perm == b"1")
    except ValueError:  # not a number, not UTF-8, or a device that does not unpack
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
