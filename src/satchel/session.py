"""The session object a view sees: a ``dict`` that knows what changed.

It is a real ``dict`` subclass, as Flask's own session is, so ``isinstance(session,
dict)``, ``session.copy()``, ``json.dumps(session)``, ``jsonify(session)`` and
``return session`` from a view work as they do with Flask's cookie session.

Per-key change tracking: assigning or deleting a key records it, and a
mutable value (list, dict, set, bytearray) that was read is re-encoded at
commit and compared with the bytes it was loaded from, so
``session["cart"].append(x)`` is saved without ``session.modified = True``.
The engine asks :meth:`Session.changes` what to write.

The data is loaded lazily: nothing is read from the cookie or the store
until the first operation that needs it (``accessed`` then becomes True). The
engine may have sent the store's load ahead (prefetch); its answer is still
taken only then. Every ``dict`` method is overridden to load first, so no
method sees an unloaded session; C code that reads a dict's storage directly
(``orjson.dumps(session)``) sees it only once something has loaded it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from satchel.store import PendingLoad

_MUTABLE = (list, dict, set, bytearray)
_MISSING: Any = object()


class Changes(NamedTuple):
    """What one request did to a stored session's data, as the store must apply it.

    ``set``: keys whose value is new or differs from what was loaded, encoded.
    ``delete``: keys that were loaded and are gone. Keys the request never saw
    are in neither, so a parallel request's new keys survive a ``clear()``.
    ``permanent``: the new permanence if it changed, else None.
    """

    set: dict[str, bytes]
    delete: frozenset[str]
    permanent: bool | None

    @property
    def any(self) -> bool:
        """True if there is anything to write."""
        return bool(self.set or self.delete or self.permanent is not None)


class Session(dict[str, Any]):
    """A session's data plus Flask's ``permanent``/``new``/``modified``/``accessed``.

    ``dict(session)`` holds only what the application stored: no hidden keys.
    The id never appears in ``repr`` or ``str``. Keys are ``str``; anything
    else raises ``TypeError`` (JSON object keys are strings, RFC 8259 §4).
    """

    # Immutable defaults live on the class: a request's session only pays for what changes.
    _cleared = False
    _permanent = False
    _permanent_changed = False
    _modified_flag = False
    _new = True
    _retired: str | None = None
    _regenerated = False
    _destroyed = False
    accessed = False
    # Engine bookkeeping: the id, when it was created/seen, how the cookie verified.
    sid: str | None = None
    storage_key_memo: tuple[str, str] | None = None  # (sid, its storage key)
    request_cookie: str | None = None
    created_at = 0.0
    last_seen = 0.0
    cookie_key_index = 0
    cookie_permanent = False
    load_failed = False
    read_only = False  # opened through an id a parallel request rotated: nothing is kept
    pending_load: PendingLoad | None = None  # a load the engine sent ahead (prefetch)

    def __init__(self, loader: Callable[[Session], None] | None = None) -> None:
        super().__init__()
        self._loader = loader
        self._raw: dict[str, bytes] = {}
        self._read: set[str] = set()
        self._set: set[str] = set()
        self._removed: set[str] = set()

    # -- loading ---------------------------------------------------------

    def _use(self) -> None:
        self.accessed = True
        loader = self._loader
        if loader is not None:
            self._loader = None
            try:
                loader(self)
            except BaseException:
                self.load_failed = True  # the commit must write nothing
                raise

    def defer_load(self, cookie: str | None, loader: Callable[[Session], None]) -> None:
        """Remember the request's cookie and run ``loader`` on first use (engine's use)."""
        self.request_cookie = cookie
        self._loader = loader

    def load_quietly(self) -> None:
        """Load the data without marking the session accessed (for the engine's own use)."""
        accessed = self.accessed
        self._use()
        self.accessed = accessed

    @property
    def loaded(self) -> bool:
        """True once the data has been read (always True for a session never stored)."""
        return self._loader is None

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
    def empty(self) -> bool:
        """True if the session holds no key (without counting as an access)."""
        return not dict.__len__(self)

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

    @property
    def stored_fields(self) -> Mapping[str, bytes]:
        """The bytes loaded from the store (or last written), by key."""
        return self._raw

    def encoded(self, encode: Callable[[str, Any], bytes]) -> dict[str, bytes]:
        """Every key's value, as ``encode(key, value)`` gives it; its errors propagate."""
        return {name: encode(name, value) for name, value in dict.items(self)}

    def changes(self, encode: Callable[[str, Any], bytes]) -> Changes:
        """What to write for this request: changed keys encoded, loaded keys deleted.

        A key assigned its loaded value again, or a mutable value read and left
        as it was, is not written. ``encode(key, value)``'s errors propagate.
        """
        raw = self._raw
        candidates = self._set | self._read if self._read else self._set
        updates = {}
        for name in candidates:
            value = dict.get(self, name, _MISSING)
            if value is _MISSING:
                continue
            data = encode(name, value)
            if raw.get(name) != data:
                updates[name] = data
        if self._cleared:
            deleted = frozenset(name for name in raw if not dict.__contains__(self, name))
        else:
            deleted = frozenset(name for name in self._removed if name in raw)
        permanent = self._permanent if self._permanent_changed else None
        return Changes(updates, deleted, permanent)

    @property
    def may_have_changed(self) -> bool:
        """False if the request certainly changed nothing (reads of immutable values only)."""
        return bool(self._set or self._removed or self._read or self._cleared
                    or self._permanent_changed)

    # -- reading -------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        self._use()
        value = dict.__getitem__(self, key)
        if isinstance(value, _MUTABLE):
            self._read.add(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        self._use()
        value = dict.get(self, key, _MISSING)
        if value is _MISSING:
            return default
        if isinstance(value, _MUTABLE):
            self._read.add(key)
        return value

    def _read_all(self) -> None:
        """Every mutable value may now be changed through a reference the caller holds."""
        for name, value in dict.items(self):
            if isinstance(value, _MUTABLE):
                self._read.add(name)

    def __contains__(self, key: object) -> bool:
        self._use()
        return dict.__contains__(self, key)

    def __iter__(self) -> Iterator[str]:
        self._use()
        return dict.__iter__(self)

    def __reversed__(self) -> Iterator[str]:
        self._use()
        return dict.__reversed__(self)

    def __len__(self) -> int:
        self._use()
        return dict.__len__(self)

    def keys(self) -> Any:
        self._use()
        return dict.keys(self)

    def values(self) -> Any:
        self._use()
        self._read_all()
        return dict.values(self)

    def items(self) -> Any:
        self._use()
        self._read_all()
        return dict.items(self)

    def copy(self) -> dict[str, Any]:
        """A plain ``dict`` with the same items (shallow, as ``dict.copy``)."""
        self._use()
        self._read_all()
        return dict(dict.items(self))

    def __eq__(self, other: object) -> bool:
        self._use()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        self._use()
        return dict.__ne__(self, other)

    __hash__ = None

    def __or__(self, other: Any) -> Any:
        return self.copy() | other

    def __ror__(self, other: Any) -> Any:
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(other) | self.copy()

    # -- writing -------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"session keys must be str, not {type(key).__name__}")
        self._use()
        dict.__setitem__(self, key, value)
        self._set.add(key)
        self._removed.discard(key)

    def __delitem__(self, key: str) -> None:
        self._use()
        dict.__delitem__(self, key)
        self._set.discard(key)
        self._removed.add(key)

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        self._use()
        if dict.__contains__(self, key):
            value = dict.__getitem__(self, key)
            del self[key]
            return value
        if default is _MISSING:
            raise KeyError(key)
        return default

    def popitem(self) -> tuple[str, Any]:
        self._use()
        if not dict.__len__(self):
            raise KeyError("popitem(): the session is empty")
        key = next(reversed(dict.keys(self)))
        return key, self.pop(key)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._use()
        if dict.__contains__(self, key):
            return self[key]
        self[key] = default
        return default

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        self._use()
        if isinstance(other, Mapping):
            pairs: Iterable[tuple[Any, Any]] = [(key, other[key]) for key in other]
        elif hasattr(other, "keys"):
            pairs = [(key, other[key]) for key in other.keys()]
        else:
            pairs = other
        for key, value in pairs:
            self[key] = value
        for key, value in kwargs.items():
            self[key] = value

    def __ior__(self, other: Any) -> Session:  # type: ignore[override]
        self.update(other)
        return self

    def clear(self) -> None:
        """Remove every key and make the session non-permanent, as Flask's ``clear()`` does.

        Only the keys this request loaded or set are deleted from the store: a
        key a parallel request added meanwhile survives (per-key merge). Use
        :meth:`destroy` to end the session whatever it holds.
        """
        self._use()
        dict.clear(self)
        self._set.clear()
        self._removed.clear()
        self._read.clear()
        self._cleared = True
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
        self._modified_flag = bool(value)

    # -- satchel's additions ---------------------------------------------------

    def regenerate(self) -> None:
        """Give the session a new id at commit, keeping its data; the old id dies.

        Call it on login (and privilege changes) against session fixation
        (OWASP Session Management Cheat Sheet, "Renew the Session ID After Any
        Privilege Level Change"). Works on a new, empty or just-cleared session.
        A request still in flight with the old id cannot undo the login: the
        store remembers the rotation for ``SATCHEL_ROTATION_GRACE`` seconds.
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
