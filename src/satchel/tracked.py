"""A ``dict`` that loads lazily and knows, per key, what changed: the base of the session.

Every ``dict`` method is overridden to load the data first (the loader runs
once, on the first operation that needs it) and to record what it changes:
keys assigned, keys deleted, a ``clear()``, and mutable values (list, dict,
set, bytearray) handed out, which are re-encoded at commit and compared with
the bytes they were loaded from, so ``d["cart"].append(x)`` counts as a change
(a tuple too: it may hold a list).
C code that reads a dict's storage directly (``orjson.dumps``, the empty-dict
fast path of ``json.dumps``) sees the data only once something has loaded it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from satchel.errors import StoreUnavailable

_MUTABLE = (list, dict, set, bytearray, tuple)  # a tuple may hold a list
_MISSING: Any = object()
_NOTHING_LOADED: Mapping[str, bytes] = MappingProxyType({})
# Empty and read-only: typed as the set each one is replaced by once written to
_NOTHING_TRACKED: set[str] = frozenset()  # type: ignore[assignment]


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


class TrackedDict(dict[str, Any]):
    """The lazily loaded, change-tracking dict; see the module docstring.

    Keys are ``str``; anything else raises ``TypeError`` (JSON object keys
    are strings, RFC 8259 section 4).
    """

    _cleared = False
    _loader: Callable[[Any], None] | None = None  # runs on first use; None once loaded
    accessed = False
    load_failed = False  # the loader raised: the commit writes nothing
    # SATCHEL_ON_STORE_ERROR = "anonymous": a load the store fails leaves the dict empty (and
    # never saved) instead of raising StoreUnavailable into the view
    empty_on_store_error = False

    # Nothing loaded, nothing tracked: the bytes loaded, and the keys read (a mutable value
    # handed out), set and removed. Each is made when first written to, so a request only
    # pays for the bookkeeping it uses (a read of immutable values: none).
    _raw: dict[str, bytes] = _NOTHING_LOADED  # type: ignore[assignment]
    _read: set[str] = _NOTHING_TRACKED
    _set: set[str] = _NOTHING_TRACKED
    _removed: set[str] = _NOTHING_TRACKED

    def __init__(self, loader: Callable[[Any], None] | None = None, *,
                 deferred: bool = False) -> None:
        """``deferred``: the caller gives the loader next (``defer_load``). (The dict's
        bookkeeping is made as it is first needed, deferred or not.)"""
        super().__init__()
        self._loader = loader

    def _reading(self) -> set[str]:
        """The keys whose mutable value was handed out, made on first use."""
        read = self._read
        if read is _NOTHING_TRACKED:
            read = self._read = set()
        return read

    # -- loading ---------------------------------------------------------

    def _use(self) -> None:
        self.accessed = True
        loader = self._loader
        if loader is not None:
            self._loader = None
            try:
                loader(self)
            except StoreUnavailable:
                self.load_failed = True  # the commit must write nothing
                if not self.empty_on_store_error:
                    raise
                dict.clear(self)  # the loader reported the error (satchel.events)
                self._raw = {}
            except BaseException:
                self.load_failed = True  # the commit must write nothing
                raise

    def load_quietly(self) -> None:
        """Load the data without marking the session accessed (for the engine's own use)."""
        accessed = self.accessed
        self._use()
        self.accessed = accessed

    @property
    def loaded(self) -> bool:
        """True once the data has been read (always True for a session never stored)."""
        return self._loader is None

    @property
    def empty(self) -> bool:
        """True if the session holds no key (without counting as an access)."""
        return not dict.__len__(self)

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
        return Changes(updates, deleted, self._permanence_change())

    def _permanence_change(self) -> bool | None:
        """The new permanence, if metadata a subclass keeps changed it; None if unchanged."""
        return None

    @property
    def may_have_changed(self) -> bool:
        """False if the request certainly changed nothing (reads of immutable values only)."""
        return bool(self._set or self._removed or self._read or self._cleared
                    or self._permanence_change() is not None)

    # -- reading -------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        self._use()
        value = dict.__getitem__(self, key)
        if isinstance(value, _MUTABLE):
            self._reading().add(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        self._use()
        value = dict.get(self, key, _MISSING)
        if value is _MISSING:
            return default
        if isinstance(value, _MUTABLE):
            self._reading().add(key)
        return value

    def _read_all(self) -> None:
        """Every mutable value may now be changed through a reference the caller holds."""
        for name, value in dict.items(self):
            if isinstance(value, _MUTABLE):
                self._reading().add(name)

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

    def __copy__(self) -> dict[str, Any]:
        """``copy.copy(session)``: a plain ``dict``, as :meth:`copy` gives.

        The default copy of a ``dict`` subclass would share this object's change
        tracking, so changing the copy would change what the session saves.
        """
        return self.copy()

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        """``copy.deepcopy(session)``: a plain ``dict`` of deep copies of the values."""
        return copy.deepcopy(self.copy(), memo)

    def __reduce_ex__(self, protocol: object) -> tuple[Any, ...]:
        """Pickled as the plain ``dict`` of its data, as Flask's own session is: never with
        the session id, the keys or the loader the object holds."""
        return (dict, (self.copy(),))

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
        assigned = self._set
        if assigned is _NOTHING_TRACKED:
            assigned = self._set = set()
        assigned.add(key)
        if self._removed:
            self._removed.discard(key)

    def __delitem__(self, key: str) -> None:
        self._use()
        dict.__delitem__(self, key)
        if self._set:
            self._set.discard(key)
        removed = self._removed
        if removed is _NOTHING_TRACKED:
            removed = self._removed = set()
        removed.add(key)

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

    def __ior__(self, other: Any) -> TrackedDict:  # type: ignore[override]
        self.update(other)
        return self

    def clear(self) -> None:
        """Remove every key. Only the keys that were loaded or set count as deleted."""
        self._use()
        dict.clear(self)
        self._read = self._set = self._removed = _NOTHING_TRACKED
        self._cleared = True
