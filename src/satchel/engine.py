"""The framework-free request flow: ``open(cookie)`` -> Session, ``commit(Session)`` -> cookie.

The cookie carries a signed session id (:mod:`satchel.signed_id`), checked
before any store call; a cookie signed with a fallback key is accepted and
re-signed with the current key. Ids that ended early leave tombstones
(:mod:`satchel.tombstone`) for requests still in flight. The commit lives in
:mod:`satchel.commit`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from satchel import ids, signed_id, tombstone
from satchel.codec import TaggedCodec, default_codec
from satchel.commit import Committer, storage_key_of
from satchel.errors import StoreUnavailable
from satchel.events import Events
from satchel.foreign import (
    MAX_FOREIGN_COOKIE_LENGTH,
    ForeignReader,
    is_foreign_cookie,
    load_foreign,
)
from satchel.keys import KeyRing, Secret
from satchel.lifetime import Clock, Lifetime, system_clock
from satchel.session import Session
from satchel.signed_id import Token
from satchel.store import ExpiredLookup, Prefetching, Store
from satchel.users import UserRules

log = logging.getLogger("satchel")

_storage_key = storage_key_of


VERIFIED_CACHE_SIZE = 4096
"""Cookies a :class:`Policy` remembers the verified token of (cleared when full)."""


def _load_nothing(session: Session) -> None:
    """The loader of a session whose cookie was rejected as it opened."""


@dataclass(frozen=True)
class Policy:
    """What one request's config says: the key ring and the timeouts.

    ``verified`` remembers, for the last :data:`VERIFIED_CACHE_SIZE` cookies
    that verified under ``keys``, their token and ``(id, storage key)``: a
    browser sends the same cookie on every request, and its MAC checks out the
    same way each time (the key ring never changes), so a repeat costs a dict
    lookup instead of an HMAC and a SHA-256. A cookie that fails is never
    remembered. Whether the id is still live is the store's answer, asked on
    every load.
    """

    keys: KeyRing
    lifetime: Lifetime
    verified: dict[str, tuple[Token, tuple[str, str]]] = field(
        default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, secret: Secret, fallbacks: Sequence[Secret], lifetime: Lifetime) -> Policy:
        return cls(KeyRing(secret, fallbacks, purpose=signed_id.COOKIE_PURPOSE), lifetime)


class Engine(Committer):
    """Opens and commits sessions against one store (the commit: :class:`Committer`)."""

    def __init__(self, store: Store, *, codec: TaggedCodec = default_codec,
                 clock: Clock = system_clock, grace: float = tombstone.DEFAULT_GRACE,
                 users: UserRules | None = None, events: Events | None = None) -> None:
        """``grace``: seconds a rotated or emptied id is remembered (:mod:`satchel.tombstone`).
        ``users``: the user key and the cap on a user's sessions (default: Flask-Login's
        ``_user_id``, no cap; see :mod:`satchel.users`). ``events``: what the lifecycle
        events are sent and logged through (sender None if not given)."""
        self.users = UserRules() if users is None else users
        self.store = store
        self.events = events if events is not None else Events()
        self.codec = codec
        self.clock = clock
        self.grace = grace
        self.graveyard = tombstone.Graveyard(store, grace)
        self._prefetch = store.prefetch if isinstance(store, Prefetching) else None
        self._expired = store.expired if isinstance(store, ExpiredLookup) else None
        self._lazy_load = self._load_opened  # one bound method, given to every session

    @property
    def can_prefetch(self) -> bool:
        """True if the store can start a load before the session is used."""
        return self._prefetch is not None

    # -- cookies -------------------------------------------------------------

    def verify(self, cookie: str | None, policy: Policy) -> Token | None:
        """The token a cookie carries, or None if it is not one we signed (then a
        ``session_rejected`` event, unless the cookie is empty or missing)."""
        if not cookie:
            return None
        entry = self._verified(cookie, policy)
        return None if entry is None else entry[0]

    def _verified(self, cookie: str, policy: Policy) -> tuple[Token, tuple[str, str]] | None:
        """``cookie``'s entry in ``policy.verified`` (its token, and its id's storage key),
        made by :meth:`_verify_new` if it is not there yet; None if it does not verify."""
        entry = policy.verified.get(cookie)
        return entry if entry is not None else self._verify_new(cookie, policy)

    def _verify_new(self, cookie: str, policy: Policy) -> tuple[Token, tuple[str, str]] | None:
        """Check the MAC of a cookie not in ``policy.verified``; remember it if it verifies
        (with its id's storage key), else send ``session_rejected``."""
        token = signed_id.verify(cookie, policy.keys)
        if token is None:
            self.events.rejected(cookie[:signed_id.MAX_COOKIE_LENGTH], "bad-signature")
            return None
        verified = policy.verified
        if len(verified) >= VERIFIED_CACHE_SIZE:
            verified.clear()
        entry = verified[cookie] = (token, (token.sid, ids.storage_key(token.sid)))
        return entry

    # -- open ------------------------------------------------------------------

    def build_policy(self, secret: Secret, fallbacks: Sequence[Secret],
                     lifetime: Lifetime) -> Policy:
        return Policy.build(secret, fallbacks, lifetime)

    def open(self, cookie: str | None, policy: Policy, session: Session | None = None, *,
             cookie_name: str = "session", foreign: ForeignReader | None = None,
             prefetch: bool = False) -> Session:
        """A lazy session for this cookie: nothing is verified or loaded until used,
        unless ``prefetch`` asks for the load to start now.

        ``foreign`` reads a cookie Flask's own session interface wrote; such a
        session is adopted once and stored in satchel's form at commit.

        With ``prefetch`` (for a request expected to use its session), a store
        that can prefetch is sent the load now, once the cookie verifies, and
        the answer is read when the session is first used; the request's work
        until then overlaps the round trip. A session never used cancels it at
        commit. Stores that cannot prefetch load when the session is used.
        """
        if session is None:
            session = Session()
        session.policy = policy
        if (prefetch and cookie and self._prefetch is not None
                and not (foreign is not None and is_foreign_cookie(cookie))):
            entry = self._verified(cookie, policy)
            if entry is None:  # rejected now: nothing to load later
                session.defer_load(cookie, _load_nothing)
                return session
            session.storage_key_memo = entry[1]
            session.pending_load = self._prefetch(entry[1][1])  # read by the loader
        elif foreign is not None:
            session.foreign_reader = foreign
        session.defer_load(cookie, self._lazy_load)
        return session

    def _load_opened(self, session: Session) -> None:
        """The loader :meth:`open` gives: the cookie, policy and foreign reader are the
        session's own (``request_cookie``, ``policy``, ``foreign_reader``), and so is the
        load it sent ahead (``pending_load``), if any."""
        cookie = session.request_cookie
        if not cookie:
            return
        foreign = session.foreign_reader
        if foreign is not None and is_foreign_cookie(cookie):
            if not load_foreign(session, cookie, foreign):
                self.events.rejected(cookie[:MAX_FOREIGN_COOKIE_LENGTH], "bad-flask-cookie")
            return
        policy: Policy = session.policy
        entry = self._verified(cookie, policy)
        if entry is None:
            return
        token, memo = entry
        sid, key = session.storage_key_memo = memo
        try:
            session.cookie_key_index = token.key_index
            session.cookie_permanent = token.permanent
            gate = session.lock_gate
            if gate is not None and session.held_lock is None:
                held = gate(self.store, key, sid)
                if held is not None:  # a load sent before the lock was taken would be stale
                    session.held_lock, session.was_locked = held, True
                    self._cancel_prefetch(session)
            pending = session.pending_load
            if pending is not None:
                session.pending_load = None
                record = pending.result()
            else:
                record = self.store.load(key)
            if record is None:
                self._load_missing(session, sid, policy)
                return
            expired = policy.lifetime.expired_by(record.created_at, record.last_seen,
                                                 self.clock())
            if expired is not None:
                self.store.delete(key)
                self.events.expired(sid, expired)
                return
        except StoreUnavailable as err:
            self.events.store_error(err, "load", sid, anonymous=session.empty_on_store_error)
            raise
        raw = record.fields
        session.adopt(sid, raw, self._decode(raw, sid), created_at=record.created_at,
                      last_seen=record.last_seen, permanent=record.permanent)
        session.user = record.user

    def _load_missing(self, session: Session, sid: str, policy: Policy) -> None:
        """An id we signed that the store does not hold: rotated by a parallel request, or dead.

        A rotated id whose new id is live opens read-only, with what the rotation
        left unchanged (see :mod:`satchel.tombstone`); any other opens a new,
        empty session. A dead one is ``session_expired`` if the store still holds it
        expired (:class:`~satchel.store.ExpiredLookup`; it is deleted), else unknown.
        """
        key = _storage_key(session, sid)
        view = self.graveyard.rotated_view(key)
        if view is not None:
            tomb, _ = view
            fields = tombstone.fields_of(tomb)
            log.info("session %s was rotated by a parallel request (a login?); this request"
                     " sees what the rotation left unchanged, and nothing it changes is kept",
                     ids.fingerprint(sid))
            session.adopt(sid, fields, self._decode(fields, sid), created_at=tomb.created_at,
                          last_seen=tomb.last_seen, permanent=tomb.permanent)
            session.read_only = True
            return
        found = None if self._expired is None else self._expired(key)
        if found is None:
            self.events.rejected(sid, "unknown")
            return
        self.store.delete(key)
        lifetime, created, seen = policy.lifetime, found.created_at, found.last_seen
        self.events.expired(sid, lifetime.expired_by(created, seen, self.clock())
                            or lifetime.set_by(created, seen, found.expires_at))

    def _decode(self, raw: dict[str, bytes], sid: str) -> dict[str, Any]:
        data, dropped = self.codec.decode_fields(raw)
        for name in dropped:
            log.warning("session %s: dropped key %r, its stored value does not decode",
                        ids.fingerprint(sid), name)
        return data

    def reopen(self, session: Session, policy: Policy) -> None:
        """Make a session loaded before its lock was wanted load again, from its cookie.

        Raises RuntimeError if the request changed it already: those changes were
        made to data read without the lock.
        """
        if session.modified or session.regenerated or (
                session.may_have_changed and session.changes(self.codec.encode_field).any):
            raise RuntimeError(
                "@session_lock: the session was loaded and changed before the lock was taken"
                " (by a before_request handler, or a decorator that runs before the locked"
                " view); put @session_lock right under the route decorator")
        session.unload()
        session.policy = policy
        session.defer_load(session.request_cookie, self._lazy_load)
