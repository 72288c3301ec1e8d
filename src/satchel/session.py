"""The session object a view sees: a ``dict`` that knows what changed.

It is a real ``dict`` subclass, as Flask's own session is, so ``isinstance(session,
dict)``, ``session.copy()``, ``dict(session)`` and ``jsonify(session)`` work as
they do with Flask's cookie session (``flask.session`` itself is a proxy, which
``json.dumps`` and a view's ``return`` do not see through, with either).

Per-key change tracking (:mod:`satchel.tracked`): assigning or deleting a
key records it, and a mutable value that was read is re-encoded at commit
and compared with the bytes it was loaded from, so
``session["cart"].append(x)`` is saved without ``session.modified = True``.
The engine asks :meth:`~satchel.tracked.TrackedDict.changes` what to write.

The data is loaded lazily: nothing is read from the cookie or the store
until the first operation that needs it (``accessed`` then becomes True). The
engine may have sent the store's load ahead (prefetch); its answer is still
taken only then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from satchel.tracked import _NOTHING_TRACKED, Changes, TrackedDict

if TYPE_CHECKING:
    from satchel.locking import HeldLock
    from satchel.store import PendingLoad

    LockGate = Callable[[object, str, str], HeldLock | None]

__all__ = ["Changes", "Session"]


class Session(TrackedDict):
    """A session's data plus Flask's ``permanent``/``new``/``modified``/``accessed``.

    ``dict(session)`` holds only what the application stored: no hidden keys.
    The id never appears in ``repr`` or ``str``. Keys are ``str``; anything
    else raises ``TypeError`` (JSON object keys are strings, RFC 8259 §4).
    """

    # Immutable defaults live on the class: a request's session only pays for what changes.
    _permanent = False
    _permanent_changed = False
    _modified_flag = False
    _new = True
    _retired: str | None = None
    _regenerated = False
    _destroyed = False
    # Engine bookkeeping: the id, when it was created/seen, how the cookie verified.
    sid: str | None = None
    storage_key_memo: tuple[str, str] | None = None  # (sid, its storage key)
    request_cookie: str | None = None
    policy: Any = None  # what the engine opened the session with (its keys and timeouts)
    cookie_name = "session"  # the name of the request's session cookie (sealed for it)
    # Reads a cookie Flask's own session interface wrote (satchel.foreign), if enabled
    foreign_reader: Callable[[str], dict[str, Any] | None] | None = None
    created_at = 0.0
    last_seen = 0.0
    cookie_key_index = 0
    cookie_permanent = False
    read_only = False  # opened through an id a parallel request rotated: nothing is kept
    pending_load: PendingLoad | None = None  # a load the engine sent ahead (prefetch)
    # Session locks (satchel.locking): called with (store, storage key, session id) before
    # the load, it takes the lock if the request wants one (naming the session in its log lines
    # by ids.fingerprint of the id, computed only then); the lock is released after the commit.
    lock_gate: LockGate | None = None
    held_lock: HeldLock | None = None
    was_locked = False
    # Users (satchel.users): the user the stored record is filed under, as loaded, then as
    # stored by this request's commit.
    user: str | None = None

    def device(self) -> str | None:
        """A short description of the browser making this request, for the record of a new
        session (see :func:`satchel.users.describe_device`); None: not recorded. The Flask
        face overrides it."""
        return None

    def defer_load(self, cookie: str | None, loader: Callable[[Session], None]) -> None:
        """Remember the request's cookie and run ``loader`` on first use (engine's use)."""
        self.request_cookie = cookie
        self._loader = loader

    def unload(self) -> None:
        """Forget what was loaded, so the session loads again (engine's use; only for a
        session nothing has changed yet)."""
        dict.clear(self)
        self._raw = {}
        self._read = self._set = self._removed = _NOTHING_TRACKED
        self._new, self.sid, self.read_only, self.user = True, None, False, None
        self.created_at = self.last_seen = 0.0
        self._permanent = False

    def adopt(self, sid: str | None, raw: dict[str, bytes], data: dict[str, Any], *,
              created_at: float, last_seen: float, permanent: bool) -> None:
        """Fill a session with a stored record's data; used by the engine.

        ``raw`` holds the stored bytes of the keys whose value may be mutated in
        place (server-side: every key), to find in-place changes at commit.
        """
        self.sid = sid
        self._raw = raw
        dict.update(self, data)
        self.created_at = created_at
        self.last_seen = last_seen
        self._permanent = permanent
        self._new = False

    def adopt_foreign(self, data: dict[str, Any], *, permanent: bool) -> None:
        """Fill a new session from a cookie another session interface wrote.

        Every key counts as changed, so the commit stores the session in
        satchel's own form and replaces the foreign cookie.
        """
        dict.update(self, data)
        self._set = set(data)
        self._permanent = permanent
        self._modified_flag = True

    def stored_as(self, sid: str, raw: dict[str, bytes], created_at: float,
                  last_seen: float) -> None:
        """Record that the engine stored this session under ``sid`` (after a create)."""
        self.sid, self._raw = sid, raw
        self.created_at, self.last_seen = created_at, last_seen

    # -- the engine's view: what the request did (reads nothing, marks nothing accessed) ----

    @property
    def stored(self) -> bool:
        """True if the data came from a stored session (or a cookie that held one)."""
        return not self._new

    @property
    def is_permanent(self) -> bool:
        """``permanent``, without counting as an access."""
        return self._permanent

    @property
    def retired_sid(self) -> str | None:
        """The id that :meth:`regenerate` or :meth:`destroy` retired, to delete at commit."""
        return self._retired

    @property
    def regenerated(self) -> bool:
        """True if :meth:`regenerate` (or :meth:`destroy`) was called."""
        return self._regenerated

    @property
    def destroyed(self) -> bool:
        """True if :meth:`destroy` was called (a logout: the stored session must go)."""
        return self._destroyed

    def _permanence_change(self) -> bool | None:
        return self._permanent if self._permanent_changed else None

    @property
    def pristine(self) -> bool:
        """True if the request changed nothing and was handed no mutable value: no key
        assigned, deleted or cleared, no ``modified = True``, no change of ``permanent``,
        no :meth:`regenerate` (then :meth:`changes` finds nothing and :attr:`modified` is
        False). The engines' cheap test for a request that only read its session."""
        return not (self._set or self._removed or self._read or self._cleared
                    or self._modified_flag or self._permanent_changed or self._regenerated)

    def clear(self) -> None:
        """Remove every key and make the session non-permanent, as Flask's ``clear()`` does.

        Only the keys this request loaded or set are deleted from the store: a
        key a parallel request added meanwhile survives (per-key merge). Use
        :meth:`destroy` to end the session whatever it holds.
        """
        super().clear()
        self.permanent = False

    # -- Flask's SessionMixin attributes -------------------------------------

    @property
    def permanent(self) -> bool:
        """Whether the cookie outlives the browser session (Flask semantics)."""
        self._use()
        return self._permanent

    @permanent.setter
    def permanent(self, value: bool) -> None:
        self._use()
        value = bool(value)
        if value != self._permanent:
            self._permanent = value
            self._permanent_changed = not self._permanent_changed
        self._modified_flag = True

    @property
    def new(self) -> bool:
        """True if no stored session was found for this request's cookie."""
        self._use()
        return self._new

    @property
    def modified(self) -> bool:
        """True if the view changed the session.

        Nested mutations (``session["cart"].append(x)``) are found at commit,
        not here. Setting it to False does not discard changes already made:
        each changed key is saved regardless.
        """
        return self._modified_flag or bool(self._set or self._removed or self._cleared
                                           or self._permanent_changed or self._retired)

    @modified.setter
    def modified(self, value: bool) -> None:
        """True marks every loaded key as possibly changed in place (Flask's way to say a
        nested value changed): each is re-encoded at commit, and saved if it differs.
        True loads the session first (so it counts as an access), as there is no other
        way to know its keys; False changes nothing else."""
        if value:
            self._use()
            self._reading().update(dict.keys(self))
        self._modified_flag = bool(value)

    # -- satchel's additions ---------------------------------------------------

    def regenerate(self) -> None:
        """Give the session a new id at commit, keeping its data; the old id dies.

        Call it on login (and privilege changes) against session fixation
        (OWASP Session Management Cheat Sheet, "Renew the Session ID After Any
        Privilege Level Change"). Works on a new, empty or just-cleared session.
        A request still in flight with the old id cannot undo the login: the
        store remembers the rotation for ``SATCHEL_GRACE_PERIOD`` seconds.
        """
        self._use()
        if self.sid is not None and self._retired is None:
            self._retired = self.sid
        self.sid = None
        self._regenerated = True

    def destroy(self) -> None:
        """Delete the stored session and expire the cookie at commit (a logout).

        Unlike :meth:`clear`, it ends the session whatever a parallel request
        wrote to it. Keys set after this start a brand-new session with a
        fresh id.
        """
        self.regenerate()
        self.clear()
        self._destroyed = True

    def __repr__(self) -> str:
        if self._loader is not None:
            return "<Session (not loaded)>"
        return (f"<Session keys={sorted(dict.keys(self))!r} new={self._new}"
                f" permanent={self._permanent}>")

    __str__ = __repr__
