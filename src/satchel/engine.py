"""The framework-free request flow: ``open(cookie)`` -> Session, ``commit(Session)`` -> cookie.

The cookie holds ``<id>.<flag><mac>``: the session id, ``p`` (permanent) or
``b`` (browser-session), and an HMAC of both under a key derived from the
secret key. The MAC is checked before any store call; a cookie signed with a
fallback key is accepted and re-signed with the current key. The permanence
flag lets a request that never touches the session refresh a permanent
cookie without a store round trip, as Flask's ``SESSION_REFRESH_EACH_REQUEST``
asks.
"""

from __future__ import annotations

import base64
import hmac
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from satchel import ids
from satchel.codec import TaggedCodec, default_codec
from satchel.errors import CodecError
from satchel.keys import KeyRing, Secret
from satchel.lifetime import Clock, Lifetime, system_clock
from satchel.session import Session
from satchel.store import Patch, Prefetching, Record, Store

security_log = logging.getLogger("satchel.security")
log = logging.getLogger("satchel")

COOKIE_PURPOSE = "satchel/v1/session-id-cookie"
MAX_COOKIE_LENGTH = 128  # a well-formed value is 67 characters
MAX_FOREIGN_COOKIE_LENGTH = 8192
_MAC_CHARS = 22  # 16 bytes of HMAC-SHA256, unpadded base64
_BODY_LENGTH = ids.ID_LENGTH + 2  # "<id>.<flag>"
_COOKIE_LENGTH = _BODY_LENGTH + _MAC_CHARS


def _storage_key(session: Session, sid: str) -> str:
    """``ids.storage_key(sid)``, hashed once per request."""
    memo = session.storage_key_memo
    if memo is None or memo[0] != sid:
        memo = session.storage_key_memo = (sid, ids.storage_key(sid))
    return memo[1]


def _mac_text(mac: bytes) -> str:
    """The cookie's spelling of a MAC: its first 16 bytes, unpadded base64url."""
    return base64.urlsafe_b64encode(mac[:16])[:_MAC_CHARS].decode("ascii")


@dataclass(frozen=True)
class Policy:
    """What one request's config says: the key ring and the timeouts."""

    keys: KeyRing
    lifetime: Lifetime

    @classmethod
    def build(cls, secret: Secret, fallbacks: Sequence[Secret], lifetime: Lifetime) -> Policy:
        return cls(KeyRing(secret, fallbacks, purpose=COOKIE_PURPOSE), lifetime)


def cookie_expiry(permanent: bool, created_at: float, lifetime: Lifetime,
                  permanent_lifetime: float | None, now: float) -> float | None:
    """When the browser should drop the cookie: None (browser session) unless permanent.

    ``permanent_lifetime`` (Flask's ``PERMANENT_SESSION_LIFETIME``; default the
    idle timeout) from now, never past the absolute deadline.
    """
    if not permanent:
        return None
    expiry = now + (lifetime.idle if permanent_lifetime is None else permanent_lifetime)
    if lifetime.absolute is not None:
        expiry = min(expiry, created_at + lifetime.absolute)
    return expiry


ForeignReader = Callable[[str], "dict[str, Any] | None"]
"""Reads a cookie Flask's own session interface wrote: its data, or None if not valid."""


def is_foreign_cookie(cookie: str) -> bool:
    """True for a value shaped like Flask's own session cookie (``payload.time.sig``).

    satchel's id cookies hold one dot and its sealed tokens none.
    """
    return cookie.count(".") >= 2


def load_foreign(session: Session, cookie: str, reader: ForeignReader) -> None:
    """Fill ``session`` from a Flask session cookie, or log why not."""
    data = reader(cookie)
    if data is None:
        security_log.warning("rejected session cookie %s: not a valid Flask session cookie",
                             ids.fingerprint(cookie[:MAX_FOREIGN_COOKIE_LENGTH]))
        return
    permanent = bool(data.pop("_permanent", False))
    session.adopt_foreign(data, permanent=permanent)
    log.info("read Flask session cookie %s; re-issuing it in satchel's form",
             ids.fingerprint(cookie))


class CookieAction(NamedTuple):
    """What the response must do with the session cookie.

    ``value`` is None to expire the cookie; ``expires`` is None for a
    browser-session cookie.
    """

    value: str | None
    expires: float | None = None


class Token(NamedTuple):
    """A verified cookie: the id, its permanence flag, the key that signed it."""

    sid: str
    permanent: bool
    key_index: int


class Engine:
    """Opens and commits sessions against one store."""

    def __init__(self, store: Store, *, codec: TaggedCodec = default_codec,
                 clock: Clock = system_clock) -> None:
        self.store = store
        self.codec = codec
        self.clock = clock
        self._prefetch = store.prefetch if isinstance(store, Prefetching) else None

    @property
    def can_prefetch(self) -> bool:
        """True if the store can start a load before the session is used."""
        return self._prefetch is not None

    # -- cookies -------------------------------------------------------------

    def sign(self, sid: str, permanent: bool, policy: Policy) -> str:
        body = f"{sid}.{'p' if permanent else 'b'}"
        return body + _mac_text(policy.keys.mac(body.encode("ascii")))

    def verify(self, cookie: str | None, policy: Policy) -> Token | None:
        """The token a cookie carries, or None (logged) if it is not one we signed."""
        if not cookie:
            return None
        token = self._parse(cookie, policy)
        if token is None:
            security_log.warning("rejected session cookie %s: bad shape or signature",
                                 ids.fingerprint(cookie[:MAX_COOKIE_LENGTH]))
        return token

    def _parse(self, cookie: str, policy: Policy) -> Token | None:
        if len(cookie) != _COOKIE_LENGTH or not cookie.isascii():
            return None
        body, flag, mac = cookie[:_BODY_LENGTH], cookie[_BODY_LENGTH - 1], cookie[_BODY_LENGTH:]
        if cookie[ids.ID_LENGTH] != "." or flag not in "pb":
            return None
        # The MAC is compared in its one canonical spelling, in constant time. It covers the
        # id, so a match is an id this engine issued: well-formed (never re-checked here).
        message = body.encode("ascii")
        for index in range(len(policy.keys)):
            if hmac.compare_digest(_mac_text(policy.keys.mac(message, index)), mac):
                return Token(cookie[:ids.ID_LENGTH], flag == "p", index)
        return None

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
        pending = session.pending_load
        if pending is not None:
            session.pending_load = None
            record = pending.result()
        else:
            record = self.store.load(key)
        if record is None:
            security_log.info("session %s not found or expired; starting a new one",
                              ids.fingerprint(token.sid))
            return
        if policy.lifetime.is_expired(record.created_at, record.last_seen, self.clock()):
            security_log.info("session %s expired under the current timeouts",
                              ids.fingerprint(token.sid))
            self.store.delete(key)
            return
        session.adopt(token.sid, record.fields, self._decode(record.fields, token.sid),
                      created_at=record.created_at, last_seen=record.last_seen,
                      permanent=record.permanent)

    def _decode(self, raw: dict[str, bytes], sid: str) -> dict[str, Any]:
        data = {}
        for name, value in raw.items():
            try:
                data[name] = self.codec.decode(value)
            except CodecError:
                log.warning("session %s: dropped key %r, its stored value does not decode",
                            ids.fingerprint(sid), name)
        return data

    # -- commit ------------------------------------------------------------------

    def _refresh(self, cookie: str | None, policy: Policy,
                 permanent_lifetime: float | None) -> CookieAction | None:
        """For a request that never used its session: re-send a permanent cookie.

        Costs no store call, and an HMAC check only for a cookie shaped like a
        permanent one. None if there is nothing to send.
        """
        if not cookie or len(cookie) != _COOKIE_LENGTH or cookie[ids.ID_LENGTH + 1] != "p":
            return None
        token = self.verify(cookie, policy)
        if token is None or not token.permanent:
            return None
        expires = self._cookie_expiry(None, policy, permanent_lifetime)
        return CookieAction(self.sign(token.sid, True, policy), expires)

    def commit(self, session: Session, policy: Policy, *, cookie_name: str = "session",
               refresh_each_request: bool = True,
               permanent_lifetime: float | None = None) -> CookieAction | None:
        """Write what the view changed and say what to do with the cookie.

        ``permanent_lifetime`` is how long a permanent cookie lives in the
        browser (Flask's ``PERMANENT_SESSION_LIFETIME``); the server-side idle
        and absolute timeouts are the policy's. A session the view never used
        costs no store call; with ``refresh_each_request`` its cookie is re-sent
        if it is permanent.
        """
        if session.load_failed:
            return None  # the store failed mid-request: never overwrite what it holds
        if not session.loaded:
            self._cancel_prefetch(session)
            if not refresh_each_request:
                return None
            return self._refresh(session.request_cookie, policy, permanent_lifetime)
        now = self.clock()
        data = session._data
        if session._retired is not None:
            self.store.delete(ids.storage_key(session._retired))
        if session.sid is None:  # new, regenerated or destroyed
            if not data:
                had_cookie = not session._new or session._retired is not None
                return CookieAction(None) if had_cookie else None
            return self._create(session, policy, now, permanent_lifetime)
        key = _storage_key(session, session.sid)
        if not data:
            self.store.delete(key)
            return CookieAction(None)
        patch = self._patch(session, now, policy)
        if patch is not None and not self.store.update(key, patch):
            log.info("session %s ended during the request (logged out or expired); "
                     "its changes were not saved", ids.fingerprint(session.sid))
            return None
        changed = patch is not None and (patch.set or patch.delete or patch.clear)
        must_set = (session.modified or changed or session.cookie_key_index != 0
                    or session.cookie_permanent != session._permanent
                    or (session._permanent and refresh_each_request))
        if not must_set:
            return None
        expires = self._cookie_expiry(session, policy, permanent_lifetime, now)
        return CookieAction(self.sign(session.sid, session._permanent, policy), expires)

    def _cancel_prefetch(self, session: Session) -> None:
        """Cancel the prefetched load of a session the request never used."""
        pending = session.pending_load
        if pending is not None:
            session.pending_load = None
            pending.cancel()

    def _create(self, session: Session, policy: Policy, now: float,
                permanent_lifetime: float | None) -> CookieAction:
        sid = ids.new_id()
        created_at = session.created_at if session._regenerated and session.created_at else now
        fields = {name: self.codec.encode(value) for name, value in session._data.items()}
        record = Record(fields, created_at, now, policy.lifetime.expires_at(created_at, now),
                        permanent=session._permanent)
        self.store.create(ids.storage_key(sid), record)
        session.sid, session.created_at, session.last_seen = sid, created_at, now
        session._raw = fields
        return CookieAction(self.sign(sid, session._permanent, policy),
                            self._cookie_expiry(session, policy, permanent_lifetime, now))

    def _patch(self, session: Session, now: float, policy: Policy) -> Patch | None:
        """The smallest patch for what changed; None if nothing changed and no touch is due."""
        if not (session._set or session._removed or session._read or session._cleared
                or session._permanent_changed):  # read-only: at most a touch
            if not policy.lifetime.touch_due(session.last_seen, now):
                return None
            return Patch(last_seen=now, expires_at=policy.lifetime.expires_at(session.created_at,
                                                                              now))
        encode, raw = self.codec.encode, session._raw
        updates = {name: encode(session._data[name]) for name in session._set}
        updates.update(session.changed_in_place(encode))
        for name, value in list(updates.items()):
            if not session._cleared and raw.get(name) == value:
                del updates[name]
        deleted = frozenset(name for name in session._removed if name in raw)
        permanent = session._permanent if session._permanent_changed else None
        changed = bool(updates or deleted or session._cleared or permanent is not None)
        if not policy.lifetime.touch_due(session.last_seen, now):
            if not changed:
                return None
            # A write is not a touch: the idle deadline slides by threshold, as for reads.
            # Leaving the timestamps alone keeps the write small (no index change in SQL).
            return Patch(set=updates, delete=deleted, clear=session._cleared,
                         permanent=permanent)
        expires_at = policy.lifetime.expires_at(session.created_at, now)
        return Patch(set=updates, delete=deleted, clear=session._cleared, last_seen=now,
                     expires_at=expires_at, permanent=permanent)

    def _cookie_expiry(self, session: Session | None, policy: Policy,
                       permanent_lifetime: float | None = None,
                       now: float | None = None) -> float | None:
        now = self.clock() if now is None else now
        if session is None:  # a refresh without a load: the absolute deadline is unknown
            return now + (policy.lifetime.idle if permanent_lifetime is None
                          else permanent_lifetime)
        return cookie_expiry(session._permanent, session.created_at, policy.lifetime,
                             permanent_lifetime, now)
