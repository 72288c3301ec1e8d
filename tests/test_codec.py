from __future__ import annotations

import math
from collections import OrderedDict, defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Any, NamedTuple
from uuid import UUID, uuid4

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from markupsafe import Markup

from satchel.codec import Tag, TaggedCodec, default_codec
from satchel.errors import CodecError
from tests.values import same, values

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


@given(values)
def test_every_supported_type_round_trips_with_its_type(value: Any) -> None:
    assert same(codec.decode(codec.encode(value)), value)


@given(st.dictionaries(st.sampled_from([" t", " b", " di", " m", " u", " d", " s", "x"]),
                       st.integers(), min_size=1, max_size=1))
def test_dicts_that_look_tagged_stay_dicts(value: dict[str, int]) -> None:
    assert codec.decode(codec.encode(value)) == value


def test_uuid_type_is_restored() -> None:
    value = UUID(int=7)
    assert codec.decode(codec.encode(value)) == value


# -- exact values and types, or CodecError ------------------------------------------

@pytest.mark.parametrize("value", [
    math.nan, math.inf, -math.inf, -0.0, 0.0, [math.nan, {"x": -math.inf}], (-0.0,),
    frozenset({1, 2}), {frozenset({"a"}), (1, b"x")}, [frozenset()], frozenset({(1, 2)}),
    {" nf": "nan"}, {" fs": [1]}, {" i": "1"},
], ids=repr)
def test_nan_inf_negative_zero_and_frozenset_round_trip(value: Any) -> None:
    assert same(codec.decode(codec.encode(value)), value)


class Color(IntEnum):
    RED = 1


class Name(StrEnum):
    ALICE = "alice"


class Point(NamedTuple):
    x: int
    y: int


class Text(str):
    pass


class Stamp(datetime):
    pass


class Html:
    def __html__(self) -> str:
        return "<b>x</b>"


class Safe(Markup):
    pass


SUBCLASSES = [
    (Color.RED, "IntEnum|Color", "int"), (Name.ALICE, "Name", "str"),
    (Point(1, 2), "Point", "tuple"), (OrderedDict(a=1), "OrderedDict", "dict"),
    (defaultdict(list), "defaultdict", "dict"), (Text("x"), "Text", "str"),
    (Stamp(2026, 1, 1), "Stamp", "datetime"), (Html(), "Html", "__html__"),
    (Safe("<b>"), "Safe", "Markup"), (float.__new__(type("F", (float,), {}), 1.5), "F", "float"),
    (bytearray(b"x"), "bytearray", "store"),
]


@pytest.mark.parametrize(("value", "type_name", "why"), SUBCLASSES,
                         ids=[name for _, name, _ in SUBCLASSES])
def test_subclasses_of_supported_types_are_refused(value: Any, type_name: str,
                                                   why: str) -> None:
    with pytest.raises(CodecError, match=type_name) as caught:
        codec.encode(value)
    assert why in str(caught.value)
    assert "register a Tag" in str(caught.value)
    with pytest.raises(CodecError, match=type_name):  # nested too
        codec.encode({"a": [value]})


def test_subclass_dict_keys_are_refused() -> None:
    with pytest.raises(CodecError, match="Name"):
        codec.encode({Name.ALICE: 1})


def test_a_tag_for_a_subclass_makes_it_round_trip() -> None:
    custom = TaggedCodec()
    custom.register(Tag("color", lambda v: type(v) is Color, int, Color))
    assert same(custom.decode(custom.encode([Color.RED])), [Color.RED])


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def nested_tuples(depth: int) -> Any:
    value: Any = ()
    for _ in range(depth):
        value = (value,)  # two JSON levels each: {" t": [...]}
    return value


@pytest.mark.parametrize("value", [
    nested(255), nested(100_000), nested_tuples(127), {"a": nested(254)},
    nested(253, {" t": 1}),
], ids=["255", "100000", "tuples", "dict", "escape"])
def test_too_deep_is_codec_error(value: Any) -> None:
    with pytest.raises(CodecError, match="levels deep"):
        codec.encode(value)


def test_as_deep_as_json_carries_round_trips() -> None:
    assert same(codec.decode(codec.encode(nested(254))), nested(254))
    assert same(codec.decode(codec.encode(nested(252, {" t": 1}))), nested(252, {" t": 1}))
    assert same(codec.decode(codec.encode(nested_tuples(126))), nested_tuples(126))


@pytest.mark.parametrize("value", ["\ud800", ["a\udfff"], {"\ud800": 1}, ("x", {"k\udc00": 2})],
                         ids=repr)
def test_lone_surrogates_are_codec_error(value: Any) -> None:
    with pytest.raises(CodecError, match="surrogates"):
        codec.encode(value)


def test_an_int_beyond_the_str_limit_is_codec_error() -> None:
    with pytest.raises(CodecError, match="digits"):
        codec.encode(10**5000)
    assert codec.decode(codec.encode(-(10**4000))) == -(10**4000)


def test_a_failing_tag_is_codec_error() -> None:
    custom = TaggedCodec()
    custom.register(Tag("bad", lambda v: isinstance(v, Decimal), lambda v: 1 / 0,
                        lambda v: {}["missing"]))
    with pytest.raises(CodecError, match="division"):
        custom.encode(Decimal(1))
    with pytest.raises(CodecError, match="missing"):
        custom.decode(b'{" bad": 1}')


@pytest.mark.parametrize("data", [
    b'{" t": 5}', b'{" t": "abc"}', b'{" s": [[1]]}', b'{" s": 5}', b'{" fs": {"a": 1}}',
    b'{" fs": [[1]]}', b'{" nf": "1.5"}', b'{" nf": 5}', b'{" i": 5}', b'{" i": "x"}',
    b'{" i": "' + b"1" * 5000 + b'"}', b'{" b": 5}', b'{" b": "!!"}', b'{" m": 5}',
    b'{" u": 5}', b'{" u": "xyz"}', b'{" d": "2026-13-01"}', b'{" da": 5}', b'{" di": [1]}',
    b"[" * 255 + b"]" * 255, b"[" * 1024 + b"]" * 1024, b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 300 + b"1" + b"}" * 300,
], ids=lambda data: data[:24].decode())
def test_malformed_bytes_raise_only_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        codec.decode(data)
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return
    with pytest.raises(CodecError):
        codec.from_json(parsed)


def test_encode_field_names_the_key() -> None:
    assert codec.encode_field("b", (2,)) == b'{" t":[2]}'
    for key, value in [("price", Decimal(1)), ("deep", nested(300)), ("s", "\ud800"),
                       ("level", Color.RED), ("big", 10**5000)]:
        with pytest.raises(CodecError, match=f"session key {key!r}"):
            codec.encode_field(key, value)


@pytest.mark.parametrize("key", ["a\x00b", "\ud800", "x\udfffy", 1, Name.ALICE], ids=repr)
def test_encode_field_refuses_keys_no_store_can_keep(key: Any) -> None:
    with pytest.raises(CodecError, match="session key"):
        codec.encode_field(key, "v")


@pytest.mark.parametrize("microseconds", [1, -1, 999_999, -30_000_001, 3_600_000_000])
def test_datetime_offsets_under_a_minute_keep_their_microseconds(microseconds: int) -> None:
    # CPython 3.11's fromisoformat reads "+00:00:00.000001" as UTC.
    value = datetime(2000, 1, 1, tzinfo=timezone(timedelta(microseconds=microseconds)))
    back = codec.decode(codec.encode(value))
    assert back.utcoffset() == value.utcoffset()
    assert same(back, value)


def test_same_tells_apart_what_equality_does_not() -> None:
    # The property tests compare with same(); it must fail where a type or sign changed.
    utc = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    for a, b in [(1, 1.0), (1, True), ((1,), [1]), (-0.0, 0.0), ({1}, frozenset({1})),
                 ({"a": 1}, {"a": True}), ([{1}], [{True}]), (utc, utc.astimezone(
                     timezone(timedelta(hours=1)))), (Markup("x"), "x"), (b"x", bytearray(b"x"))]:
        assert not same(a, b) and not same(b, a), (a, b)
    assert same([math.nan, {"k": (frozenset({1}),)}], [math.nan, {"k": (frozenset({1}),)}])


@given(st.dictionaries(st.text(max_size=8), values, max_size=6))
def test_decode_fields_gives_what_decode_gives_for_each_value(data: dict[str, Any]) -> None:
    raw = {name: codec.encode(value) for name, value in data.items()}
    decoded, dropped = codec.decode_fields(raw)
    assert dropped == []
    assert list(decoded) == list(raw)
    for name, value in decoded.items():
        assert same(value, codec.decode(raw[name]))


def test_decode_fields_drops_the_values_decode_refuses_and_names_them_in_order() -> None:
    raw = {"a": b"1", "bad": b"{not json", "b": b'{" t": [1, 2]}', "tag": b'{" b": 5}',
           "deep": b"[" * 300 + b"]" * 300}
    decoded, dropped = codec.decode_fields(raw)
    assert decoded == {"a": 1, "b": (1, 2)}
    assert dropped == ["bad", "tag", "deep"]


def test_decode_fields_goes_through_a_subclass_s_own_decode() -> None:
    class Shouting(TaggedCodec):
        def decode(self, data: bytes) -> Any:
            value = super().decode(data)
            if value == "refused":
                raise CodecError("refused")
            return value.upper() if isinstance(value, str) else value

    decoded, dropped = Shouting().decode_fields({"a": b'"x"', "b": b'"refused"', "c": b"2"})
    assert decoded == {"a": "X", "c": 2}
    assert dropped == ["b"]
