"""Client-side mode: the whole session sealed into the cookie (``SATCHEL_STORE="cookie://"``).

The same Session object, timeouts and Flask semantics as the server-side
mode, with no store. The sealed plaintext is JSON::

    [1, created_at, last_seen, expires_at, {key: value in the tagged codec's form}]

``expires_at`` is the deadline the timeouts gave when the token was sealed.
Opening checks it *and* the current config's timeouts, so a replayed old
cookie past its idle or absolute deadline opens to an empty session, and
lowering a timeout takes effect at once. Permanence travels in the token's
authenticated header, so a request that never touches its session refreshes
a permanent cookie without guessing.

Limits, by nature: a cookie session cannot be revoked before its deadline
(a copied cookie stays valid until then; the server-side stores can revoke),
its size is capped by the browser (see ``SessionTooLarge``), and two parallel
requests that change it race, the later cookie winning (no per-key merge).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from satchel import ids
from satchel.codec import TaggedCodec, default_codec
from satchel.cookie_action import CookieAction, cookie_expiry
from satchel.errors import CodecError
from satchel.events import Events
from satchel.foreign import (
    MAX_FOREIGN_COOKIE_LENGTH,
    ForeignReader,
    is_foreign_cookie,
    load_foreign,
)
from satchel.keys import Secret
from satchel.lifetime import Clock, Lifetime, system_clock
from satchel.sealed import (
    MAX_TOKEN_CHARS,
    OPENED_CACHE_MAX_BYTES,
    OPENED_CACHE_SIZE,
    Sealer,
    looks_permanent,
)
from satchel.session import Session

log = logging.getLogger("satchel")

PURPOSE = "satchel/v1/sealed-session"
_PAYLOAD_VERSION = 1
_AS_IS = frozenset((str, int, float, bool, type(None)))
_NUMBERS = (int, float)  # compared by exact type: a JSON true is not a time

@dataclass(frozen=True)
class SealedCookies:
    """Selects client-side mode: ``Satchel(app, store=SealedCookies())``, or ``"cookie://"``.

    ``compress``: zlib-compress a payload when that makes the token smaller.
    Turn it off if a session holds an attacker-chosen value next to a secret
    (compressed length can leak how alike they are).
    """

    compress: bool = True


@dataclass(frozen=True)
class SealedPolicy:
    """What one request's config says: the sealing keys and the timeouts."""

    sealer: Sealer
    lifetime: Lifetime


class CookieEngine:
    """Opens and commits sessions sealed in the cookie itself."""

    def __init__(self, mode: SealedCookies | None = None, *,
                 codec: TaggedCodec = default_codec, clock: Clock = system_clock,
                 events: Events | None = None) -> None:
        """``events``: what the lifecycle events are sent and logged through; they name a
        session by the fingerprint of its cookie value (a sealed session has no id)."""
        self.mode = mode if mode is not None else SealedCookies()
        self.codec = codec
        self.clock = clock
        self.events = events if events is not None else Events()
        self._lazy_load = self._load_opened  # one bound method, given to every session
        self._payloads: dict[bytes, _Payload] = {}  # see _payload

    def build_policy(self, secret: Secret, fallbacks: Sequence[Secret],
                     lifetime: Lifetime) -> SealedPolicy:
        sealer = Sealer(secret, fallbacks, purpose=PURPOSE, compress=self.mode.compress)
        return SealedPolicy(sealer, lifetime)

    # -- open ------------------------------------------------------------------

    can_prefetch = False  # the cookie holds the session: nothing to fetch ahead

    def open(self, cookie: str | None, policy: SealedPolicy, session: Session | None = None, *,
             cookie_name: str = "session", foreign: ForeignReader | None = None,
             prefetch: bool = False) -> Session:
        """A lazy session for this cookie: nothing is opened until the view uses it.

        ``prefetch`` is accepted for the engines' common signature (see
        :attr:`can_prefetch`).
        """
        if session is None:
            session = Session()
        session.policy = policy
        session.cookie_name = cookie_name
        if foreign is not None:
            session.foreign_reader = foreign
        session.defer_load(cookie, self._lazy_load)
        return session

    def _load_opened(self, session: Session) -> None:
        """The loader :meth:`open` gives: the cookie, policy, cookie name and foreign reader
        are the session's own (``request_cookie``, ``policy``, ``cookie_name``,
        ``foreign_reader``)."""
        cookie = session.request_cookie
        if not cookie:
            return
        policy: SealedPolicy = session.policy
        name = session.cookie_name
        foreign = session.foreign_reader
        if foreign is not None and is_foreign_cookie(cookie):
            if not load_foreign(session, cookie, foreign):
                self.events.rejected(cookie[:MAX_FOREIGN_COOKIE_LENGTH], "bad-flask-cookie")
            return
        opened = policy.sealer.open(cookie, name=name)
        payload = None if opened is None else self._payload(opened.plaintext)
        if opened is None or payload is None:  # not sealed with our keys for this name
            self.events.rejected(cookie[:MAX_TOKEN_CHARS], "bad-seal")
            return
        created_at, last_seen, expires_at, data, forms = payload
        now = self.clock()
        expired = policy.lifetime.expired_by(created_at, last_seen, now)
        if expired is None and now >= expires_at:  # sealed under timeouts raised since
            expired = policy.lifetime.set_by(created_at, last_seen, expires_at)
        if expired is not None:
            self.events.expired(cookie, expired)
            return
        raw: dict[str, bytes] = {}  # the bytes of the values that may be mutable
        if forms:  # those values: made anew for each request
            data = dict(data)
            for key, form in forms:
                try:
                    data[key] = self.codec.from_json(form)
                except CodecError:
                    log.warning("session cookie %s: dropped key %r, its value does not decode",
                                ids.fingerprint(cookie), key)
                    del data[key]
                    continue
                raw[key] = orjson.dumps(form)
        session.cookie_key_index = opened.key_index
        session.cookie_permanent = opened.permanent
        session.adopt(None, raw, data, created_at=created_at, last_seen=last_seen,
                      permanent=opened.permanent)

    def _payload(self, plaintext: bytes) -> _Payload | None:
        """The sealed payload, parsed (None if malformed); remembered for a plaintext the
        sealer remembers too (the same bytes object comes back for the same token)."""
        payload = self._payloads.get(plaintext)
        if payload is None:
            payload = _payload(plaintext)
            if payload is not None and len(plaintext) <= OPENED_CACHE_MAX_BYTES:
                if len(self._payloads) >= OPENED_CACHE_SIZE:
                    self._payloads.clear()
                self._payloads[plaintext] = payload
        return payload

    # -- commit ------------------------------------------------------------------

    def refreshes_unused(self, session: Session, refresh_each_request: bool) -> bool:
        """True if :meth:`commit` of a session the request never used re-seals its cookie:
        one whose header says it is permanent, with ``refresh_each_request`` (as Flask
        re-sends a permanent cookie). Otherwise that commit does nothing."""
        cookie = session.request_cookie
        return bool(refresh_each_request and cookie and looks_permanent(cookie))

    def commit(self, session: Session, policy: SealedPolicy, *, cookie_name: str = "session",
               refresh_each_request: bool = True,
               permanent_lifetime: float | None = None) -> CookieAction | None:
        """Say what to do with the cookie: re-seal, expire, or nothing.

        A session the view never used is opened only to refresh a cookie whose
        header says it is permanent, when ``refresh_each_request`` asks for it.
        Raises CodecError naming the key whose value cannot be stored.
        """
        if not session.loaded:
            if not self.refreshes_unused(session, refresh_each_request):
                return None
            session.load_quietly()
            if not session.stored:
                return None
        if session.empty:
            if not session.stored:
                return None
            self.events.destroyed(session.request_cookie or "",
                                  "destroy" if session.destroyed else "emptied")
            return CookieAction(None)
        now = self.clock()
        permanent = session.is_permanent
        if session.pristine:  # only read: not modified, nothing changed
            changed = not session.stored
        else:
            changed = (session.modified or session.regenerated or not session.stored
                       or (session.may_have_changed
                           and session.changes(self.codec.encode_field).any))
        must_seal = (changed or session.cookie_key_index != 0
                     or session.cookie_permanent != permanent
                     or (permanent and refresh_each_request)
                     or policy.lifetime.touch_due(session.last_seen, now))
        if not must_seal:
            return None
        created_at = session.created_at if session.stored else now
        fields = {key: orjson.Fragment(value)
                  for key, value in session.encoded(self.codec.encode_field).items()}
        expires_at = policy.lifetime.expires_at(created_at, now)
        plaintext = orjson.dumps([_PAYLOAD_VERSION, created_at, now, expires_at, fields])
        token = policy.sealer.seal(plaintext, name=cookie_name, permanent=permanent)
        session.created_at, session.last_seen = created_at, now
        if not session.stored or session.destroyed:
            if session.destroyed:
                self.events.destroyed(session.request_cookie or "", "destroy")
            self.events.created(token)
        expires = cookie_expiry(permanent, created_at, policy.lifetime,
                                permanent_lifetime, now)
        return CookieAction(token, expires)

    def __repr__(self) -> str:
        return f"<CookieEngine {self.mode!r}>"


class _Payload(NamedTuple):
    """A sealed payload as the loader takes it. ``data``: every value in the payload's
    order, a tagged or container value (one that may be mutable) as its JSON form, to be
    replaced by a fresh decode per request (``forms``: those keys and forms). Shared by
    every request with the same token: never changed."""

    created_at: float
    last_seen: float
    expires_at: float
    data: dict[str, Any]
    forms: tuple[tuple[str, Any], ...]


def _payload(plaintext: bytes) -> _Payload | None:
    parsed = _parse(plaintext)
    if parsed is None:
        return None
    created_at, last_seen, expires_at, fields = parsed
    forms = tuple((key, form) for key, form in fields.items() if type(form) not in _AS_IS)
    return _Payload(created_at, last_seen, expires_at, fields, forms)


def _parse(plaintext: bytes) -> tuple[float, float, float, dict[str, Any]] | None:
    try:
        payload = orjson.loads(plaintext)
    except orjson.JSONDecodeError:
        return None
    if type(payload) is not list or len(payload) != 5 or payload[0] != _PAYLOAD_VERSION:
        return None
    _, created_at, last_seen, expires_at, fields = payload
    if (type(fields) is not dict or type(created_at) not in _NUMBERS
            or type(last_seen) not in _NUMBERS or type(expires_at) not in _NUMBERS):
        return None
    return created_at, last_seen, expires_at, fields
