"""Values <-> bytes: tagged JSON, never pickle.

A value comes back with the same value *and type*, or the save fails with
:class:`~satchel.errors.CodecError`; nothing is changed silently. JSON carries
str, int, float, bool, None, list and str-keyed dict as they are. These
types travel as a one-key object whose key is a *tag* (a space, then a short
name), as Flask's own session serializer (``flask.json.tag``) does::

    (1, 2)           -> {" t": [1, 2]}
    b"\\xff"          -> {" b": "/w=="}
    Markup("<b>")    -> {" m": "<b>"}
    UUID(...)        -> {" u": "hex"}
    datetime(...)    -> {" d": "2026-01-01T00:00:00+00:00"}  (naive stays naive)
    date(...)        -> {" da": "2026-01-01"}
    {1, 2}           -> {" s": [1, 2]}   (items in the order of their JSON bytes)
    frozenset({1})   -> {" fs": [1]}
    2**70            -> {" i": "1180591620717411303424"}
    float("nan")     -> {" nf": "nan"}   (also "inf", "-inf"; -0.0 stays -0.0)
    {" t": 1}        -> {" di": {" t": 1}}   (a dict that merely looks tagged)

Types are matched exactly: a subclass of a supported type (an ``IntEnum``, a
``StrEnum``, a namedtuple, ``OrderedDict``, ``defaultdict``, a datetime
subclass, an object with ``__html__`` that is not ``Markup``) would come back
as its base type, so it raises CodecError naming the type instead. Register a
:class:`Tag` for it with :meth:`TaggedCodec.register`, or store a plain value.

Also refused at save, with CodecError: a str with a lone surrogate (anywhere,
dict keys included: UTF-8 cannot carry it), a dict key that is not exactly a
str, an int of more digits than ``sys.get_int_max_str_digits()`` (4,300 by
default), and nesting deeper than :data:`MAX_DEPTH` JSON levels (a tagged
value counts one level for its tag). :meth:`TaggedCodec.encode_field` also
refuses a session key holding NUL or a lone surrogate, and names the key in
every error. A nan comes back as a nan (its sign bit and payload are not kept).

An aware datetime comes back with a fixed UTC offset: the same instant and the
same offset, but a ``zoneinfo``/pytz zone is not kept (arithmetic across a DST
change then differs), and ``fold`` is not kept. Flask's own session keeps
less: it turns every datetime into UTC and drops the microseconds.

Decoding raises only CodecError, whatever the bytes (malformed JSON, a tag
whose payload is malformed, nesting deeper than :data:`MAX_DEPTH`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from uuid import UUID

import orjson
from markupsafe import Markup

from satchel.errors import CodecError
from satchel.tags import DEFAULT_TAGS, Tag

__all__ = ["DEFAULT_TAGS", "MAX_DEPTH", "Tag", "TaggedCodec", "default_codec"]

_NATIVE = (str, int, float, bool, type(None))
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
MAX_DEPTH = 254
"""The deepest nesting of JSON arrays and objects a value may encode to (orjson's limit)."""


_DICT_ESCAPE = " di"
_SUPPORTED = frozenset((*_NATIVE, list, dict, tuple, bytes, set, frozenset, Markup, datetime,
                        date, UUID))


class TaggedCodec:
    """Encode session values to JSON bytes and back, with tags for other types."""

    def __init__(self, tags: tuple[Tag, ...] = DEFAULT_TAGS) -> None:
        self._tags: list[Tag] = []
        self._by_key: dict[str, Tag] = {}
        for tag in tags:
            self.register(tag)

    def register(self, tag: Tag, *, first: bool = False) -> None:
        """Add ``tag``; ``first=True`` lets it win over the tags already known.

        Raises ValueError for a key already taken (``"di"`` is reserved).
        """
        name = " " + tag.key
        if name in self._by_key or name == _DICT_ESCAPE:
            raise ValueError(f"tag {tag.key!r} is already registered")
        self._by_key[name] = tag
        if first:
            self._tags.insert(0, tag)
        else:
            self._tags.append(tag)

    def encode(self, value: Any) -> bytes:
        """JSON bytes for ``value``.

        Raises CodecError, naming the type, for anything that would not come
        back as it went in (see the module's docstring).
        """
        try:
            return orjson.dumps(self._tag(value, 0))
        except CodecError:
            raise
        except RecursionError as err:  # a tag whose to_json never bottoms out
            raise CodecError(f"cannot encode {type(value).__name__} value: nested too deeply"
                             f" (more than {MAX_DEPTH} levels)") from err
        except Exception as err:  # orjson: a lone surrogate; a Tag's to_json that failed
            raise CodecError(f"cannot encode {type(value).__name__} value: {err}") from err

    def encode_field(self, name: str, value: Any) -> bytes:
        """:meth:`encode` for the value of session key ``name``.

        Raises CodecError naming the key: for a value :meth:`encode` refuses,
        and for a key that is not a str, or holds NUL or a lone surrogate (one
        rule for every store: PostgreSQL's jsonb and text cannot hold NUL, and
        no store can keep a str that UTF-8 cannot encode).
        """
        if type(name) is not str or "\0" in name or not _is_utf8(name):
            raise CodecError(f"session key {name!r}: session keys must be str without NUL"
                             " or lone surrogates; rename the key")
        try:
            return self.encode(value)
        except CodecError as err:
            raise CodecError(f"session key {name!r}: {err}") from err

    def decode(self, data: bytes) -> Any:
        """The value ``data`` encodes. Raises CodecError (only) for bytes that are not ours."""
        try:
            return self._untag(orjson.loads(data), 0)
        except CodecError:
            raise
        except Exception as err:
            raise CodecError(f"cannot decode stored value: {err}") from err

    def decode_fields(self, raw: Mapping[str, bytes]) -> tuple[dict[str, Any], list[str]]:
        """:meth:`decode` of each value of ``raw`` (a stored session's fields, by key): the
        values that decode, by key, and the keys whose bytes do not (in ``raw``'s order).

        Raises nothing of its own. A value that is a JSON scalar (most are) is taken as it
        parses, without the walk :meth:`decode` makes for tags.
        """
        data: dict[str, Any] = {}
        dropped: list[str] = []
        if type(self).decode is not TaggedCodec.decode:  # a subclass's own decode rules
            for name, value in raw.items():
                try:
                    data[name] = self.decode(value)
                except CodecError:
                    dropped.append(name)
            return data, dropped
        loads, untag = orjson.loads, self._untag
        for name, value in raw.items():
            try:
                parsed = loads(value)
                kind = type(parsed)
                data[name] = untag(parsed, 0) if kind is list or kind is dict else parsed
            except Exception:  # what decode turns into CodecError
                dropped.append(name)
        return data, dropped

    def from_json(self, data: Any) -> Any:
        """The value a parsed JSON structure (as ``encode`` wrote it) stands for.

        Raises CodecError (only) for a structure ``encode`` would not write.
        """
        try:
            return self._untag(data, 0)
        except CodecError:
            raise
        except Exception as err:
            raise CodecError(f"cannot decode stored value: {err}") from err

    def _tag(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if kind in _NATIVE:
            if kind is int and not _INT_MIN <= value <= _INT_MAX:
                return {" i": _big_int(value)}  # beyond what JSON numbers carry exactly
            if kind is float and not math.isfinite(value):
                return {" nf": repr(value)}  # JSON has no nan or infinity
            return value
        depth += 1
        if depth > MAX_DEPTH:
            raise _too_deep()
        if kind is list:
            return [self._tag(item, depth) for item in value]
        if kind is dict:
            if len(value) == 1:
                (key,) = value
                if type(key) is str and (key in self._by_key or key == _DICT_ESCAPE):
                    if depth == MAX_DEPTH:  # the escape is one more level
                        raise _too_deep()
                    return {_DICT_ESCAPE: self._tag_dict(value, depth + 1)}
            return self._tag_dict(value, depth)
        for tag in self._tags:
            if tag.check(value):
                inner = self._tag(tag.to_json(value), depth)
                if (kind is set or kind is frozenset) and type(inner) is list:
                    # In a canonical order: iteration order depends on the hash seed, and
                    # bytes that differ for the same set would read as a change at commit.
                    inner.sort(key=orjson.dumps)
                return {" " + tag.key: inner}
        base = next((base for base in kind.__mro__ if base in _SUPPORTED), None)
        if base is not None or callable(getattr(value, "__html__", None)):
            why = (f"a subclass of {_name(base)}" if base is not None
                   else "not markupsafe.Markup, though it has __html__")
            raise CodecError(
                f"cannot store a {_name(kind)} in the session: it is {why}, and would not come"
                " back as the same type; store a plain value (str(v), int(v), dict(v),"
                " Markup(v), ...), or register a Tag for this type on the codec")
        raise CodecError(
            f"cannot store a {_name(kind)} in the session; "
            "store JSON-like data, or register a Tag for this type on the codec"
        )

    def _tag_dict(self, value: dict[Any, Any], depth: int) -> dict[str, Any]:
        tagged = {}
        for key, item in value.items():
            if type(key) is not str:
                raise CodecError(f"cannot encode a dict key of type {_name(type(key))}"
                                 f" ({key!r}); dict keys must be str")
            tagged[key] = self._tag(item, depth)
        return tagged

    def _untag(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if kind is not list and kind is not dict:
            return value
        depth += 1
        if depth > MAX_DEPTH:
            raise _too_deep()
        if kind is list:
            return [self._untag(item, depth) for item in value]
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key == _DICT_ESCAPE:
                if type(inner) is not dict:
                    raise ValueError("a dict escape that holds no dict")
                if depth == MAX_DEPTH:
                    raise _too_deep()
                return {k: self._untag(v, depth + 1) for k, v in inner.items()}
            tag = self._by_key.get(key)
            if tag is not None:
                return tag.to_python(self._untag(inner, depth))
        return {key: self._untag(item, depth) for key, item in value.items()}


def _too_deep() -> CodecError:
    return CodecError(f"nested more than {MAX_DEPTH} levels deep (each list, dict and tagged"
                      " value is a level); store a flatter value")


def _is_utf8(text: str) -> bool:
    """False for a str with a lone surrogate (``"\\ud800"``), which UTF-8 cannot encode."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _big_int(value: int) -> str:
    try:
        return str(value)
    except ValueError as err:  # more digits than sys.get_int_max_str_digits() allows
        raise CodecError(f"cannot encode an int of about {value.bit_length() * 3 // 10}"
                         f" digits: {err}") from err


def _name(kind: type) -> str:
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


default_codec = TaggedCodec()
