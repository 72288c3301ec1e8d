"""The tags of :mod:`satchel.codec`: how each type JSON cannot carry travels in it.

:class:`Tag` describes one; :data:`DEFAULT_TAGS` are the ones every codec starts with
(the table in :mod:`satchel.codec`'s docstring).
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from markupsafe import Markup

_TINY_OFFSET = re.compile(r"[+-]00:00:00\.[0-9]{6}\Z")
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


@dataclass(frozen=True)
class Tag:
    """How one Python type travels in JSON.

    ``key`` is the tag name (stored as ``" " + key``); ``check`` picks the
    values it handles (match the type exactly, ``type(v) is T``, unless the
    tag rebuilds every subclass it accepts); ``to_json`` returns a JSON-able
    value (walked again, so it may hold other tagged values); ``to_python``
    rebuilds the value from that, and should raise (ValueError, TypeError,
    ...) for a payload it did not write: the codec turns any exception it
    raises into CodecError.
    """

    key: str
    check: Callable[[Any], bool]
    to_json: Callable[[Any], Any]
    to_python: Callable[[Any], Any]


def _is_exactly(kind: type) -> Callable[[Any], bool]:
    return lambda value: type(value) is kind


def _from(kind: type, build: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``build``, for a payload of exactly ``kind``; ValueError for any other payload."""

    def to_python(payload: Any) -> Any:
        if type(payload) is not kind:
            raise ValueError(f"a {kind.__name__} payload was expected,"
                             f" not {type(payload).__name__}")
        return build(payload)

    return to_python


def _non_finite(payload: Any) -> float:
    if type(payload) is not str or payload not in _NON_FINITE:
        raise ValueError(f"{payload!r} is not 'nan', 'inf' or '-inf'")
    return _NON_FINITE[payload]


def _datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    # CPython 3.11 reads an offset under a second ("+00:00:00.000001", which isoformat
    # writes for such an offset) as UTC: read its microseconds here.
    if value.tzinfo is not None and _TINY_OFFSET.search(text) and not value.utcoffset():
        sign = -1 if text[-16] == "-" else 1
        offset = timedelta(microseconds=sign * int(text[-6:]))
        value = value.replace(tzinfo=timezone(offset))
    return value


def _b64decode(payload: str) -> bytes:
    return base64.b64decode(payload, validate=True)


DEFAULT_TAGS: tuple[Tag, ...] = (
    Tag("t", _is_exactly(tuple), list, _from(list, tuple)),
    Tag("b", _is_exactly(bytes), lambda v: base64.b64encode(v).decode("ascii"),
        _from(str, _b64decode)),
    Tag("m", _is_exactly(Markup), str, _from(str, Markup)),
    Tag("u", _is_exactly(UUID), lambda v: v.hex, _from(str, UUID)),
    Tag("d", _is_exactly(datetime), datetime.isoformat, _from(str, _datetime)),
    Tag("da", _is_exactly(date), date.isoformat, _from(str, date.fromisoformat)),
    Tag("s", _is_exactly(set), list, _from(list, set)),
    Tag("fs", _is_exactly(frozenset), list, _from(list, frozenset)),
    # Chosen by _tag, never by check: ints beyond 64 bits, and nan/inf/-inf.
    Tag("i", lambda v: False, str, _from(str, int)),
    Tag("nf", lambda v: False, str, _non_finite),
)
