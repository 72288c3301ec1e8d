"""Values <-> bytes: tagged JSON, never pickle.

JSON carries str, int, float, bool, None, list and str-keyed dict as they
are. Other types travel as a one-key object whose key is a *tag* (a space,
then a short name), as Flask's own session serializer does::

    (1, 2)           -> {" t": [1, 2]}
    b"\\xff"          -> {" b": "/w=="}
    Markup("<b>")    -> {" m": "<b>"}
    UUID(...)        -> {" u": "hex"}
    datetime(...)    -> {" d": "2026-01-01T00:00:00+00:00"}  (naive stays naive)
    date(...)        -> {" da": "2026-01-01"}
    {1, 2}           -> {" s": [1, 2]}
    2**70            -> {" i": "1180591620717411303424"}
    {" t": 1}        -> {" di": {" t": 1}}   (a dict that merely looks tagged)

Add a type with :meth:`TaggedCodec.register`. A value of an unknown type
raises :class:`~satchel.errors.CodecError` naming the type.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

import orjson
from markupsafe import Markup

from satchel.errors import CodecError

_NATIVE = (str, int, float, bool, type(None))
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


@dataclass(frozen=True)
class Tag:
    """How one Python type travels in JSON.

    ``key`` is the tag name (stored as ``" " + key``); ``check`` picks the
    values it handles; ``to_json`` returns a JSON-able value (walked again,
    so it may hold other tagged values); ``to_python`` rebuilds the value.
    """

    key: str
    check: Callable[[Any], bool]
    to_json: Callable[[Any], Any]
    to_python: Callable[[Any], Any]


def _is_exactly(kind: type) -> Callable[[Any], bool]:
    return lambda value: type(value) is kind


DEFAULT_TAGS: tuple[Tag, ...] = (
    Tag("t", lambda v: isinstance(v, tuple), list, tuple),
    Tag("b", lambda v: isinstance(v, bytes), lambda v: base64.b64encode(v).decode("ascii"),
        base64.b64decode),
    Tag("m", lambda v: callable(getattr(v, "__html__", None)), lambda v: str(v.__html__()), Markup),
    Tag("u", lambda v: isinstance(v, UUID), lambda v: v.hex, UUID),
    Tag("d", lambda v: isinstance(v, datetime), datetime.isoformat, datetime.fromisoformat),
    Tag("da", _is_exactly(date), date.isoformat, date.fromisoformat),
    Tag("s", lambda v: isinstance(v, (set, frozenset)), list, set),
    Tag("i", lambda v: False, str, int),  # big ints; chosen by _tag, never by check
)


class TaggedCodec:
    """Encode session values to JSON bytes and back, with tags for other types."""

    def __init__(self, tags: tuple[Tag, ...] = DEFAULT_TAGS) -> None:
        self._tags: list[Tag] = []
        self._by_key: dict[str, Tag] = {}
        for tag in tags:
            self.register(tag)

    def register(self, tag: Tag, *, first: bool = False) -> None:
        """Add ``tag``; ``first=True`` lets it win over the tags already known."""
        name = " " + tag.key
        if name in self._by_key or tag.key == "di":
            raise ValueError(f"tag {tag.key!r} is already registered")
        self._by_key[name] = tag
        if first:
            self._tags.insert(0, tag)
        else:
            self._tags.append(tag)

    def encode(self, value: Any) -> bytes:
        """JSON bytes for ``value``. Raises CodecError for an unknown type."""
        try:
            return orjson.dumps(self._tag(value))
        except TypeError as err:  # orjson: a dict key that is not a str, or a huge int
            raise CodecError(f"cannot encode {type(value).__name__} value: {err}") from err

    def decode(self, data: bytes) -> Any:
        """The value ``data`` encodes. Raises CodecError for bytes that are not ours."""
        try:
            return self._untag(orjson.loads(data))
        except (ValueError, TypeError, AttributeError) as err:
            raise CodecError(f"cannot decode stored value: {err}") from err

    def from_json(self, data: Any) -> Any:
        """The value a parsed JSON structure (as ``encode`` wrote it) stands for."""
        try:
            return self._untag(data)
        except (ValueError, TypeError, AttributeError) as err:
            raise CodecError(f"cannot decode stored value: {err}") from err

    def _tag(self, value: Any) -> Any:
        kind = type(value)
        if kind in _NATIVE:
            if kind is int and not _INT_MIN <= value <= _INT_MAX:
                return {" i": str(value)}  # beyond what JSON numbers carry exactly
            return value
        if kind is list:
            return [self._tag(item) for item in value]
        if kind is dict:
            tagged = {key: self._tag(item) for key, item in value.items()}
            if len(value) == 1:
                (key,) = value
                if isinstance(key, str) and (key in self._by_key or key == " di"):
                    return {" di": tagged}
            return tagged
        for tag in self._tags:
            if tag.check(value):
                return {" " + tag.key: self._tag(tag.to_json(value))}
        if isinstance(value, _NATIVE):  # subclasses of str, int, ... without a tag
            return value
        if isinstance(value, dict):
            return self._tag(dict(value))
        if isinstance(value, list):
            return self._tag(list(value))
        raise CodecError(
            f"cannot store a {kind.__module__}.{kind.__qualname__} in the session; "
            "store JSON-like data, or register a Tag for this type on the codec"
        )

    def _untag(self, value: Any) -> Any:
        kind = type(value)
        if kind is list:
            return [self._untag(item) for item in value]
        if kind is not dict:
            return value
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key == " di":
                return {k: self._untag(v) for k, v in inner.items()}
            tag = self._by_key.get(key)
            if tag is not None:
                return tag.to_python(self._untag(inner))
        return {key: self._untag(item) for key, item in value.items()}


default_codec = TaggedCodec()
