"""Session values of every supported type (hypothesis strategies), and ``same()`` to compare them.

``same(a, b)`` is equality of value *and* type, all the way down: ``1 == 1.0 == True``
and ``(1,) != [1]`` are told apart, nan equals nan, -0.0 differs from 0.0, and
datetimes must agree on their ISO form (so on microseconds, naive vs aware, and
the UTC offset; the zone object itself is not kept, as the codec documents).
"""

from __future__ import annotations

import math
import zoneinfo
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st
from markupsafe import Markup

TAG_LIKE_KEYS = [" t", " di", " b", " m", " u", " d", " da", " s", " fs", " i", " nf", " x"]


def same(a: Any, b: Any) -> bool:
    """True if ``a`` and ``b`` are equal and of the same type, all the way down."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if type(a) in (set, frozenset):  # each element has exactly one twin (not ==: see datetime)
        return len(a) == len(b) and all(sum(1 for y in b if same(x, y)) == 1 for x in a)
    if type(a) is datetime:  # == across zones is False in a fold or gap (PEP 495)
        return bool(a.isoformat() == b.isoformat())
    return bool(a == b)


_offsets = st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-23, minutes=-59),
                                             max_value=timedelta(hours=23, minutes=59)))
_zones = st.timezones() if zoneinfo.available_timezones() else st.nothing()

# Values a set can hold: hashable, and without nan (nan != nan, so a set cannot find it).
hashable_leaves = (
    st.none() | st.booleans() | st.integers()
    | st.integers(min_value=-(2**100), max_value=2**100)
    | st.floats(allow_nan=False) | st.text(max_size=8) | st.binary(max_size=8)
    | st.text(max_size=8).map(Markup) | st.uuids() | st.dates()
    | st.datetimes(timezones=st.none() | st.just(timezone.utc) | _offsets | _zones)
)
hashables = st.recursive(
    hashable_leaves,
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)

dict_keys = st.text(max_size=6) | st.sampled_from(TAG_LIKE_KEYS)

values = st.recursive(
    hashable_leaves | st.floats() | st.sets(hashables, max_size=3)
    | st.frozensets(hashables, max_size=3),
    lambda inner: (st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
                   | st.dictionaries(dict_keys, inner, max_size=3)),
    max_leaves=12,
)
"""Nested values of every type the codec supports, incl. nan/inf/-0.0, big ints, tag-like dicts."""

session_keys = st.text(max_size=6).filter(lambda key: "\0" not in key) | st.sampled_from(
    ["v", "", "f:x", "m:created", "_user_id", " t", "ключ", "🔑"])
"""Session keys every store keeps: any str without NUL (text() has no lone surrogates)."""
