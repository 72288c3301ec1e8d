"""The framework-free request flow: ``open(cookie)`` -> Session, ``commit(Session)`` -> cookie.

The cookie carries a signed session id (:mod:`satchel.signed_id`), checked
before any store call; a cookie signed with a fallback key is accepted and
re-signed with the current key. Ids that ended early leave tombstones
(:mod:`satchel.tombstone`) for requests still in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from satchel import ids, signed_id, tombstone
from satchel.codec import TaggedCodec, default_codec
from satchel.cookie_action import CookieAction, cookie_expiry
from satchel.errors import CodecError
from satchel.foreign import ForeignReader, is_foreign_cookie, load_foreign
from satchel.keys import KeyRing, Secret
from satchel.lifetime import Clock, Lifetime, system_clock
from satchel.session import Changes, Session
from satchel.signed_id import Token
from satchel.store import Patch, Prefetching, Record, Store, Updated
from satchel.users import UserRules

security_log = logging.getLogger("satchel.security")
log = logging.getLogger("satchel")

_UNCHANGED = Changes({}, frozenset(), None)


def _storage_key(session: Session, sid: str) -> str:
    """``ids.storage_key(sid)``, hashed once per request."""
    memo = session.storage_key_memo
    if memo is None or memo[0] != sid:
        memo = session.storage_key_memo = (sid, ids.storage_key(sid))
    return memo[1]


@dataclass(frozen=True)
class Policy:
    """What one request's config says: the key ring and the timeouts."""

    keys: KeyRing
    lifetime: Lifetime

    @classmethod
    def build(cls, secret: Secret, fallbacks: Sequence[Secret], lifetime: Lifetime) -> Policy:
        return cls(KeyRing(secret, fallbacks, purpose=signed_id.COOKIE_PURPOSE), lifetime)


class Engine:
    """Opens and commits sessions against one store."""

    def __init__(self, store: Store, *, codec: TaggedCodec = default_codec,
                 clock: Clock = system_clock, grace: float = tombstone.DEFAULT_GRACE,
                 users: UserRules | None = None) -> None:
        """``grace``: seconds a rotated or emptied id is remembered (:mod:`satchel.tombstone`).
        ``users``: the user key and the cap on a user's sessions (default: Flask-Login's
        ``_user_id``, no cap; see :mod:`satchel.users`)."""
        self.users = UserRules() if users is None else users
        self.store = store
        self.codec = codec
        self.clock = clock
        self.grace = grace
        self.graveyard = tombstone.Graveyard(store, grace)
        self._prefetch = store.prefetch if isinstance(store, Prefetching) else None

    @property
    def can_prefetch(self) -> bool:
        """True if the store can start a load before the session is used."""
        return self._prefetch is not None

    # -- cookies -------------------------------------------------------------

    def sign(self, sid: str, permanent: bool, policy: Policy) -> str:
        """The cookie value for ``sid`` (see :func:`satchel.signed_id.sign`)."""
        return signed_id.sign(sid, permanent, policy.keys)

    def verify(self, cookie: str | None, policy: Policy) -> Token | None:
        """The token a cookie carries, or None (logged) if it is not one we signed."""
        return signed_id.verify(cookie, policy.keys)

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
        if (prefetch and cookie and self._prefetch is not None
                and not (foreign is not None and is_foreign_cookie(cookie))):
            token = self.verify(cookie, policy)
            if token is not None:
                session.pending_load = self._prefetch(_storage_key(session, token.sid))
            session.defer_load(cookie, lambda target: self._load_token(target, token, policy))
        else:
            session.defer_load(cookie,
                               lambda target: self._load(target, cookie, policy, foreign))
        return session

    def _load(self, session: Session, cookie: str | None, policy: Policy,
              foreign: ForeignReader | None = None) -> None:
        if cookie and foreign is not None and is_foreign_cookie(cookie):
            load_foreign(session, cookie, foreign)
            return
        self._load_token(session, self.verify(cookie, policy), policy)

    def _load_token(self, session: Session, token: Token | None, policy: Policy) -> None:
        if token is None:
            return
        session.cookie_key_index = token.key_index
        session.cookie_permanent = token.permanent
        key = _storage_key(session, token.sid)
        gate = session.lock_gate
        if gate is not None and session.held_lock is None:
            held = gate(self.store, key, ids.fingerprint(token.sid))
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
            self._load_missing(session, token.sid)
            return
        if policy.lifetime.is_expired(record.created_at, record.last_seen, self.clock()):
            security_log.info("session %s expired under the current timeouts",
                              ids.fingerprint(token.sid))
            self.store.delete(key)
            return
        session.adopt(token.sid, record.fields, self._decode(record.fields, token.sid),
                      created_at=record.created_at, last_seen=record.last_seen,
                      permanent=record.permanent)
        session.user = record.user

    def _load_missing(self, session: Session, sid: str) -> None:
        """An id we signed that the store does not hold: rotated by a parallel request, or dead.

        A rotated id whose new id is live opens read-only, with what the rotation
        left unchanged (see :mod:`satchel.tombstone`); any other opens a new,
        empty session.
        """
        view = self.graveyard.rotated_view(_storage_key(session, sid))
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
        security_log.info("session %s not found or expired; starting a new one",
                          ids.fingerprint(sid))

    def _decode(self, raw: dict[str, bytes], sid: str) -> dict[str, Any]:
        data = {}
        for name, value in raw.items():
            try:
                data[name] = self.codec.decode(value)
            except CodecError:
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
        session.defer_load(session.request_cookie,
                           lambda target: self._load(target, session.request_cookie, policy))

    # -- commit ------------------------------------------------------------------

    looks_permanent = staticmethod(signed_id.looks_permanent)

    def commit(self, session: Session, policy: Policy, *, cookie_name: str = "session",
               refresh_each_request: bool = True,
               permanent_lifetime: float | None = None) -> CookieAction | None:
        """Write what the view changed and say what to do with the cookie.

        ``permanent_lifetime`` is how long a permanent cookie lives in the
        browser (Flask's ``PERMANENT_SESSION_LIFETIME``); the server-side idle
        and absolute timeouts are the policy's.

        The cookie of an existing session is sent only after the store, in
        this commit, found the session still live (a write, a touch, or a
        liveness check), so a request that started before a login (which
        rotated the id) never hands the browser the dead id. A session the view
        never used costs no store call and sends no cookie (Flask would re-send
        a permanent one); one the view read is re-sent when Flask would re-send
        it (``modified``, or permanent with ``refresh_each_request``), at the
        cost of that check.
        Raises :class:`~satchel.errors.CodecError` for a value that cannot be
        stored, before anything is written.
        """
        if session.load_failed:
            # The store failed mid-request: never overwrite what it holds. A logout
            # (SATCHEL_ON_STORE_ERROR="anonymous" lets the view run) still expires the cookie.
            return CookieAction(None) if session.destroyed else None
        if not session.loaded:
            self._cancel_prefetch(session)
            return None
        if session.read_only:
            if session.destroyed:
                # A logout through an id a parallel request rotated: destroy() always wins, so
                # the session it was rotated to ends too, and the browser forgets it.
                self.graveyard.end(ids.storage_key(session.retired_sid or session.sid or ""))
                return CookieAction(None)
            if session.modified or (session.may_have_changed
                                    and session.changes(self.codec.encode_field).any):
                log.info("session %s: a parallel request rotated its id; this request's changes"
                         " were not kept", ids.fingerprint(session.sid or ""))
            return None
        now = self.clock()
        was_user = session.user
        if session.sid is not None:
            if self.users.key is None or self.users.user_of(session) == was_user:
                return self._update(session, session.sid, policy, refresh_each_request,
                                    permanent_lifetime, now)
            session.regenerate()  # a login, a logout or a switch of user: a new id
        # (A session whose stored user differs only because it predates SATCHEL_USER_KEY
        # is rotated once too, and filed under its user.)
        # New, regenerated or destroyed: store the data under a new id first, so a failure
        # leaves the old session as it was; then retire the old id.
        action = None
        retired, old_fields = session.retired_sid, session.stored_fields
        fields: Mapping[str, bytes] = {}
        if not session.empty:
            fields = session.encoded(self.codec.encode_field)  # CodecError: nothing written
            action = self._create(session, fields, policy, now, permanent_lifetime)
            if (retired is not None and session.stored and not session.destroyed
                    and self.graveyard.ended(ids.storage_key(retired))):
                assert session.sid is not None  # the new id _create stored it under
                self.store.delete(ids.storage_key(session.sid))
                return None
        elif session.stored or retired is not None:
            action = CookieAction(None)
        if retired is not None:
            unchanged = {name: value for name, value in old_fields.items()
                         if fields.get(name) == value}
            self._retire(session, retired, unchanged, now)
        user = session.user
        if user is not None and user != was_user and session.sid is not None:  # a login
            self.users.evict_past_cap(self.store, user, _storage_key(session, session.sid),
                                      self.graveyard.end)
        return action

    def _update(self, session: Session, sid: str, policy: Policy, refresh_each_request: bool,
                permanent_lifetime: float | None, now: float) -> CookieAction | None:
        """Commit a stored session that keeps its id."""
        key = _storage_key(session, sid)
        lifetime = policy.lifetime
        changes = (session.changes(self.codec.encode_field) if session.may_have_changed
                   else _UNCHANGED)
        touch_due = lifetime.touch_due(session.last_seen, now)
        empty = session.empty
        must_set = (session.modified or changes.any or session.cookie_key_index != 0
                    or session.cookie_permanent != session.is_permanent
                    or (session.is_permanent and refresh_each_request))
        if not (must_set or touch_due or empty):
            return None  # read-only within the touch interval: no write, no cookie
        # From here on the store is always asked: a patch that changes nothing only checks that
        # the session is still live, so a cookie is never re-sent for an id that a parallel
        # request rotated (a login) or ended (a logout) meanwhile.
        buried = empty and bool(changes.delete)
        if buried:
            # Before the update: a parallel write that then finds the session gone keeps its keys.
            self.graveyard.bury(key, tombstone.record("emptied", now, self.grace))
        patch = Patch(set=changes.set, delete=changes.delete, permanent=changes.permanent,
                      delete_if_empty=empty)
        if touch_due:  # a write alone is not a touch: the idle deadline slides by threshold
            patch = patch._replace(last_seen=now,
                                   expires_at=lifetime.expires_at(session.created_at, now))
        outcome = self.store.update(key, patch)
        if buried and outcome != Updated.EMPTIED:
            # Not emptied by this request: gone already (a logout, which must win), or kept by
            # a parallel request's keys. The tombstone would mislead a later writer.
            self.graveyard.forget(key)
        if not outcome:
            return self._gone(session, sid, changes, policy, now, permanent_lifetime)
        if outcome == Updated.EMPTIED:
            return CookieAction(None)
        if touch_due:
            session.last_seen = now
        if empty or not must_set:  # empty here: a parallel request's keys keep it alive
            return None
        expires = self._cookie_expiry(session, policy, permanent_lifetime, now)
        return CookieAction(self.sign(sid, session.is_permanent, policy), expires)

    def _gone(self, session: Session, sid: str, changes: Changes, policy: Policy, now: float,
              permanent_lifetime: float | None) -> CookieAction | None:
        """The stored session ended while the request ran: keep its writes only if it was
        emptied by a parallel request (see :mod:`satchel.tombstone`)."""
        if not changes.set:
            return None  # nothing of this request's own is lost
        if self.graveyard.kind(_storage_key(session, sid)) == "emptied":
            log.info("session %s was emptied by a parallel request; this request's changes"
                     " start a new session", ids.fingerprint(sid))
            session.created_at = now
            return self._create(session, dict(changes.set), policy, now, permanent_lifetime)
        log.info("session %s ended during the request (logged out, rotated or expired); "
                 "its changes were not saved", ids.fingerprint(sid))
        return None

    def _retire(self, session: Session, sid: str, unchanged: Mapping[str, bytes],
                now: float) -> None:
        """End the old id of a regenerated or destroyed session.

        A rotation leaves a tombstone pointing to the new id, with the fields
        the rotation left ``unchanged``, so requests in flight with the old id
        neither undo the login nor see what it changed; a logout (``destroy``)
        leaves none, and removes any an earlier emptying left, so nothing in
        flight can keep writing.
        """
        old = ids.storage_key(sid)
        if session.destroyed:
            self.graveyard.end(old)  # and the sessions a parallel rotation made of it
        elif session.stored:
            successor = None if session.sid is None else _storage_key(session, session.sid)
            self.graveyard.bury(old, tombstone.record(
                "rotated", now, self.grace, permanent=session.is_permanent, fields=unchanged,
                successor=successor))
        self.store.delete(old)

    def _cancel_prefetch(self, session: Session) -> None:
        """Cancel the prefetched load of a session the request never used."""
        pending = session.pending_load
        if pending is not None:
            session.pending_load = None
            pending.cancel()

    def _create(self, session: Session, fields: dict[str, bytes], policy: Policy, now: float,
                permanent_lifetime: float | None) -> CookieAction:
        """Store ``fields`` as a new session with a fresh id; the cookie that carries it."""
        sid = ids.new_id()
        # A rotation keeps the absolute deadline; what follows a logout is a new session.
        kept = session.regenerated and not session.destroyed and session.created_at
        created_at = session.created_at if kept else now
        permanent = session.is_permanent
        user = self.users.user_of(session)
        record = Record(fields, created_at, now, policy.lifetime.expires_at(created_at, now),
                        permanent=permanent, user=user, device=session.device())
        self.store.create(ids.storage_key(sid), record)
        session.stored_as(sid, fields, created_at, now)
        session.user = user
        return CookieAction(self.sign(sid, permanent, policy),
                            self._cookie_expiry(session, policy, permanent_lifetime, now))

    def _cookie_expiry(self, session: Session, policy: Policy,
                       permanent_lifetime: float | None, now: float) -> float | None:
        return cookie_expiry(session.is_permanent, session.created_at, policy.lifetime,
                             permanent_lifetime, now)
