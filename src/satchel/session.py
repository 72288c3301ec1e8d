"""The session object a view sees: a mutable mapping that knows what changed.

Per-key change tracking: assigning or deleting a key records it, and a
mutable value (list, dict, set) that was read is re-encoded at commit and
compared with the bytes it was loaded from, so ``session["cart"].append(x)``
is saved without ``session.modified = True``. A commit sends only the keys
that changed.

The data is loaded lazily: nothing is read from the cookie or the store
until the first operation that needs it (``accessed`` then becomes True). The
engine may have sent the store's load ahead (prefetch); its answer is still
taken only then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from satchel.store import PendingLoad

_MUTABLE = (list, dict, set, bytearray)
_MISSING: Any = object()


class Session(MutableMapping[str, Any]):
    """A session's data plus Flask's ``permanent``/``new``/``modified``/``accessed``.

    ``dict(session)`` holds only what the application stored: no hidden keys.
    The id never appears in ``repr`` or ``str``.
    """

    # Immutable defaults live on the class: a request's session only pays for what changes.
    _cleared = False
    _permanent = False
    _permanent_changed = False
    _modified_flag = False
    _new = True
    _retired: str | None = None
    _regenerated = False
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
    pending_load: PendingLoad | None = None  # a load the engine sent ahead (prefetch)

    def __init__(self, loader: Callable[[Session], None] | None = None) -> None:
        self._loader = loader
        self._data: dict[str, Any] = {}
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
        """Fill a session with a stored record's data; used by the engine."""
        self.sid = sid
        self._raw = raw
        self._data = data
        self.created_at = created_at
        self.last_seen = last_seen
        self._permanent = permanent
        self._new = False

    def adopt_foreign(self, data: dict[str, Any], *, permanent: bool) -> None:
        """Fill a new session from a cookie another session interface wrote.

        Every key counts as changed, so the commit stores the session in
        satchel's own form and replaces the foreign cookie.
        """
        self._data = dict(data)
        self._set = set(self._data)
        self._permanent = permanent
        self._modified_flag = True

    def changed_in_place(self, encode: Callable[[Any], bytes]) -> dict[str, bytes]:
        """Keys whose mutable value was read and then changed in place, with their new bytes.

        Keys assigned or deleted are not included: those are tracked as set/removed.
        """
        changed = {}
        for name in self._read - self._set:
            if name in self._data:
                value = encode(self._data[name])
                if value != self._raw.get(name):
                    changed[name] = value
        return changed

    # -- mapping protocol --------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        self._use()
        value = self._data[key]
        if isinstance(value, _MUTABLE):
            self._read.add(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        self._use()
        value = self._data.get(key, _MISSING)
        if value is _MISSING:
            return default
        if isinstance(value, _MUTABLE):
            self._read.add(key)
        return value

    def __contains__(self, key: object) -> bool:
        self._use()
        return key in self._data

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"session keys must be str, not {type(key).__name__}")
        self._use()
        self._data[key] = value
        self._set.add(key)
        self._removed.discard(key)

    def __delitem__(self, key: str) -> None:
        self._use()
        del self._data[key]
        self._set.discard(key)
        self._removed.add(key)

    def __iter__(self) -> Iterator[str]:
        self._use()
        return iter(self._data)

    def __len__(self) -> int:
        self._use()
        return len(self._data)

    def clear(self) -> None:
        self._use()
        self._data.clear()
        self._set.clear()
        self._removed.clear()
        self._read.clear()
        self._cleared = True

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

        Call it on login (and privilege changes) against session fixation.
        Works on a new, empty or just-cleared session.
        """
        self._use()
        if self.sid is not None and self._retired is None:
            self._retired = self.sid
        self.sid = None
        self._regenerated = True

    def destroy(self) -> None:
        """Delete the stored session and expire the cookie at commit.

        Keys set after this start a brand-new session with a fresh id.
        """
        self.regenerate()
        self.clear()

    def __repr__(self) -> str:
        if self._loader is not None:
            return "<Session (not loaded)>"
        return f"<Session keys={sorted(self._data)!r} new={self._new} permanent={self._permanent}>"
