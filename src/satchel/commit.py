"""The commit half of the engine: write what a request changed, say what to do with the cookie.

:class:`Committer` is a base of :class:`~satchel.engine.Engine`; it is
split out to keep each module to one step of the request flow. It uses the
engine's store, codec, clock, user rules and graveyard (:mod:`satchel.tombstone`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from satchel import ids, signed_id, tombstone
from satchel.codec import TaggedCodec
from satchel.cookie_action import CookieAction, cookie_expiry
from satchel.events import Events, RevokeReason, RotateReason
from satchel.lifetime import Clock
from satchel.session import Changes, Session
from satchel.store import Patch, Record, Store, Updated
from satchel.users import UserRules

if TYPE_CHECKING:
    from satchel.engine import Policy

log = logging.getLogger("satchel")

_UNCHANGED = Changes({}, frozenset(), None)


def storage_key_of(session: Session, sid: str) -> str:
    """``ids.storage_key(sid)``, hashed once per request."""
    memo = session.storage_key_memo
    if memo is None or memo[0] != sid:
        memo = session.storage_key_memo = (sid, ids.storage_key(sid))
    return memo[1]


class Committer:
    """Commits sessions to :attr:`store` (the commit methods of :class:`~satchel.engine.Engine`)."""

    store: Store
    codec: TaggedCodec
    clock: Clock
    grace: float
    graveyard: tombstone.Graveyard
    users: UserRules
    events: Events

    def sign(self, sid: str, permanent: bool, policy: Policy) -> str:
        """The cookie value for ``sid`` (see :func:`satchel.signed_id.sign`)."""
        return signed_id.sign(sid, permanent, policy.keys)

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
                ended = session.retired_sid or session.sid or ""
                self.graveyard.end(ids.storage_key(ended))
                self.events.destroyed(ended, "destroy")
                return CookieAction(None)
            if session.modified or (session.may_have_changed
                                    and session.changes(self.codec.encode_field).any):
                log.info("session %s: a parallel request rotated its id; this request's changes"
                         " were not kept", ids.fingerprint(session.sid or ""))
            return None
        now = self.clock()
        was_user = session.user
        rotation: RotateReason = "regenerate"
        sid = session.sid
        if sid is not None:
            if self.users.key is None or self.users.user_of(session) == was_user:
                return self._update(session, sid, policy, refresh_each_request,
                                    permanent_lifetime, now)
            session.regenerate()  # a login, a logout or a switch of user: a new id
            rotation = "user-changed"
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
        self._report(session, retired, rotation)
        user = session.user
        if user is not None and user != was_user and session.sid is not None:  # a login
            self.users.evict_past_cap(self.store, user, storage_key_of(session, session.sid),
                                      lambda key: self.revoke(key, "max-sessions", user))
        return action

    def revoke(self, key: str, reason: RevokeReason, user: str | None = None) -> None:
        """End the session stored under storage key ``key`` and any id it was rotated to
        meanwhile (see :meth:`~satchel.tombstone.Graveyard.end`), and send ``session_revoked``.
        """
        self.graveyard.end(key)
        self.store.delete(key)
        self.events.revoked(key, reason, user)

    def _report(self, session: Session, retired: str | None,
                rotation: RotateReason = "regenerate") -> None:
        """Send the events of a commit that stored a new id or retired one."""
        new = session.sid  # set here only by _create: a new id stored in this commit
        if retired is not None and (session.destroyed or new is None):
            self.events.destroyed(retired, "destroy" if session.destroyed else "emptied")
        if new is not None:
            if retired is not None and not session.destroyed:
                self.events.rotated(retired, new, rotation)
            else:
                self.events.created(new)

    def _update(self, session: Session, sid: str, policy: Policy, refresh_each_request: bool,
                permanent_lifetime: float | None, now: float) -> CookieAction | None:
        """Commit a stored session that keeps its id."""
        lifetime = policy.lifetime
        touch_due = now - session.last_seen >= lifetime.touch_after  # lifetime.touch_due
        permanent = session.is_permanent
        must_set = (session.cookie_key_index != 0 or session.cookie_permanent != permanent
                    or (permanent and refresh_each_request))
        if session.pristine:  # only read: nothing to write, and not modified
            changes = _UNCHANGED
        else:
            changes = (session.changes(self.codec.encode_field) if session.may_have_changed
                       else _UNCHANGED)
            must_set = must_set or session.modified or changes.any
        empty = session.empty
        if not (must_set or touch_due or empty):
            return None  # read-only within the touch interval: no write, no cookie
        key = storage_key_of(session, sid)
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
            self.events.destroyed(sid, "emptied")
            return CookieAction(None)
        if touch_due:
            session.last_seen = now
        if empty or not must_set:  # empty here: a parallel request's keys keep it alive
            return None
        expires = self._cookie_expiry(session, policy, permanent_lifetime, now)
        value = session.request_cookie
        if not (session.cookie_key_index == 0
                and signed_id.carries(value, sid, session.is_permanent)):
            value = self.sign(sid, session.is_permanent, policy)
        return CookieAction(value, expires)

    def _gone(self, session: Session, sid: str, changes: Changes, policy: Policy, now: float,
              permanent_lifetime: float | None) -> CookieAction | None:
        """The stored session ended while the request ran: keep its writes only if it was
        emptied by a parallel request (see :mod:`satchel.tombstone`)."""
        if not changes.set:
            return None  # nothing of this request's own is lost
        if self.graveyard.kind(storage_key_of(session, sid)) == "emptied":
            log.info("session %s was emptied by a parallel request; this request's changes"
                     " start a new session", ids.fingerprint(sid))
            session.created_at = now
            action = self._create(session, dict(changes.set), policy, now, permanent_lifetime)
            self.events.created(session.sid or "")  # the id _create stored it under
            return action
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
            successor = None if session.sid is None else storage_key_of(session, session.sid)
            self.graveyard.bury(old, tombstone.record(
                "rotated", now, self.grace, permanent=session.is_permanent, fields=unchanged,
                successor=successor))
        self.store.delete(old)

    def commit_unused(self, session: Session) -> None:
        """:meth:`commit` of a session the request never used (``not session.loaded``): no
        store call, no cookie; a load sent ahead (prefetch) is cancelled."""
        self._cancel_prefetch(session)

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
