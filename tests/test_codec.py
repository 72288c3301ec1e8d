from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from markupsafe import Markup

from satchel.codec import Tag, TaggedCodec, default_codec
from satchel.errors import CodecError

codec = default_codec

SPECIAL = [
    (1, 2, 3),
    b"\xff\x00",
    Markup("<em>hi</em>"),
    uuid4(),
    datetime(2026, 11, 22, 10, 30, 15, 123456, tzinfo=timezone.utc),
    datetime(2026, 11, 22, 10, 30, tzinfo=timezone(timedelta(hours=-5))),
    datetime(2026, 11, 22, 10, 30),
    date(2026, 11, 22),
    {1, 2, 3},
    {" t": "not-a-tuple"},
    {" di": "not-a-dict"},
    {" t__": "x"},
    {"nested": [(1, b"x"), {" b": [1]}]},
    "",
    None,
    True,
    2**62,
    2**70,
    -(2**70),
    1.5,
]


@pytest.mark.parametrize("value", SPECIAL, ids=range(len(SPECIAL)))
def test_round_trip_keeps_value_and_type(value: Any) -> None:
    decoded = codec.decode(codec.encode(value))
    assert decoded == value
    assert type(decoded) is type(value)


def test_tuple_inside_dict_inside_list() -> None:
    value = [{"a": (1, (2, 3))}]
    assert codec.decode(codec.encode(value)) == value


def test_unknown_type_names_the_type() -> None:
    with pytest.raises(CodecError, match="Decimal"):
        codec.encode({"price": Decimal("1.10")})


def test_non_string_dict_keys_are_refused() -> None:
    with pytest.raises(CodecError):
        codec.encode({1: "a"})


def test_registering_a_tag_extends_the_codec() -> None:
    custom = TaggedCodec()
    custom.register(Tag("dec", lambda v: isinstance(v, Decimal), str, Decimal))
    assert custom.decode(custom.encode(Decimal("1.10"))) == Decimal("1.10")
    with pytest.raises(ValueError, match="already registered"):
        custom.register(Tag("dec", lambda v: False, str, str))


@pytest.mark.parametrize("data", [b"", b"{", b"\xff\xfe", b'{" u": "not-hex"}',
                                  b'{" d": 5}', b'{" di": 5}'])
def test_undecodable_bytes_raise_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        codec.decode(data)


def test_never_pickles() -> None:
    class Anything:
        pass

    with pytest.raises(CodecError, match="Anything"):
        codec.encode(Anything())


json_like = st.recursive(
    st.none() | st.booleans() | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False) | st.text() | st.binary()
    | st.uuids() | st.datetimes(timezones=st.just(timezone.utc)),
    lambda children: st.lists(children, max_size=4)
    | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@given(json_like)
def test_any_supported_value_round_trips(value: Any) -> None:
    assert codec.decode(codec.encode(value)) == value


@given(st.dictionaries(st.sampled_from([" t", " b", " di", " m", " u", " d", " s", "x"]),
                       st.integers(), min_size=1, max_size=1))
def test_dicts_that_look_tagged_stay_dicts(value: dict[str, int]) -> None:
    assert codec.decode(codec.encode(value)) == value


def test_uuid_type_is_restored() -> None:
    value = UUID(int=7)
    assert codec.decode(codec.encode(value)) == value
