"""Values come back exactly, or the save fails loudly: in every mode, through real requests.

One request stores values, a later one reads them back, through each of the five
modes (memory, SQLite, sealed cookies, Redis and PostgreSQL on the real servers):
the values must come back equal *and* of the same type, all the way down
(hypothesis draws nested values of every supported type). A value or a key no mode
can keep raises CodecError naming the session key, at save, and writes nothing,
whether the request creates the session, updates it, rotates its id or changed a
value in place.
"""

from __future__ import annotations

import logging
import math
import re
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from enum import IntEnum
from pathlib import Path
from typing import Any

import flask
import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st
from markupsafe import Markup

from satchel import Satchel, SessionTooLarge, ids
from satchel.errors import CodecError
from satchel.store import Patch
from tests.clock import FakeClock
from tests.modes import MODES, make_store
from tests.spy import PrefetchSpy, SpyStore
from tests.values import same, session_keys, values

WRITES = {"create", "update", "delete"}


class Harness:
    """One app in one mode; ``box`` carries values between the test and the views."""

    def __init__(self, mode: str, store: Any, clock: FakeClock) -> None:
        self.mode = mode
        self.clock = clock
        self.spy: SpyStore | None = None
        if mode != "cookie":
            self.spy = store = (PrefetchSpy if hasattr(store, "prefetch") else SpyStore)(store)
        app = self.app = flask.Flask(__name__)
        app.config.update(TESTING=True, SECRET_KEY="round-trip secret key, 32 bytes+")
        Satchel(app, store=store, clock=clock)
        self.box: dict[str, Any] = {}
        box = self.box

        @app.post("/set")
        def set_values() -> str:
            if box.get("regenerate"):
                flask.session.regenerate()  # type: ignore[attr-defined]
            flask.session.update(box["set"])
            return ""

        @app.post("/append")
        def append() -> str:
            flask.session[box["key"]].append(box["item"])
            return ""

        @app.get("/get")
        def get_values() -> str:
            box["got"] = dict(flask.session)
            return ""

    def set(self, client: FlaskClient, data: dict[str, Any], *, regenerate: bool = False) -> None:
        self.box.update(set=data, regenerate=regenerate)
        assert client.post("/set").status_code == 200

    def get(self, client: FlaskClient) -> dict[str, Any]:
        assert client.get("/get").status_code == 200
        got: dict[str, Any] = self.box.pop("got")
        return got

    def writes(self) -> list[str]:
        """The store writes since the last reset (none in cookie mode: it has no store)."""
        return [] if self.spy is None else [n for n in self.spy.names() if n in WRITES]

    def reset(self) -> None:
        if self.spy is not None:
            self.spy.reset()


@pytest.fixture(scope="module", params=MODES)
def harness(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Harness]:
    clock = FakeClock()
    with ExitStack() as cleanup:
        folder: Path = tmp_path_factory.mktemp("roundtrip")
        yield Harness(request.param, make_store(request.param, clock, folder, cleanup), clock)


def same_session(got: dict[str, Any], expected: dict[str, Any]) -> bool:
    """``same`` for a whole session: its keys in any order (stores keep no key order)."""
    return got.keys() == expected.keys() and all(same(got[k], expected[k]) for k in expected)


# -- round trip ------------------------------------------------------------------------

TRICKY = {
    "nan": math.nan, "inf": math.inf, "-inf": -math.inf, "-0.0": -0.0,
    "frozenset": frozenset({1, (2, b"\x00")}), "set": {frozenset(), "a"},
    "nul": "a\x00b", "nul-dict": {"\x00": ["\x00", b"\x00"]}, "big": [2**70, -(2**100)],
    "tag-like": {" t": 1}, "escape-like": {" di": {" nf": "nan"}},
    "markup": Markup("<b>&amp;</b>"), "aware": datetime(2026, 3, 29, 1, 30, tzinfo=timezone(
        timedelta(hours=5, minutes=45))), "naive": datetime(2026, 1, 1, 0, 0, 0, 1),
}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=st.dictionaries(session_keys, values, min_size=1, max_size=3),
       second=st.dictionaries(session_keys, values, max_size=3))
@example(first=TRICKY, second={"nan": [math.nan], "new": frozenset({-0.0})})
def test_values_come_back_with_their_types(harness: Harness, first: dict[str, Any],
                                           second: dict[str, Any]) -> None:
    client = harness.app.test_client()
    try:
        harness.set(client, first)  # creates the session
        harness.set(client, second)  # updates it (cookie mode: re-seals it)
    except SessionTooLarge:  # cookie mode: too big for a browser; a loud failure, not a loss
        reject()
    expected = {**first, **second}
    got = harness.get(client)
    assert same_session(got, expected), (got, expected)


# -- what no mode can keep: CodecError naming the key, nothing written -----------------------


class Level(IntEnum):
    ADMIN = 1


class Html:
    def __html__(self) -> str:
        return "<b>x</b>"


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


BAD_VALUES = {
    "decimal": Decimal("1.10"), "int-enum": Level.ADMIN, "ordered-dict": OrderedDict(a=1),
    "html-object": Html(), "deep": deep(300), "very-deep": deep(50_000),
    "surrogate": "\ud800", "surrogate-dict-key": {"\udfff": 1}, "int-key": {1: 2},
    "huge-int": 10**5000,
}
BAD_KEYS = {"nul-key": "a\x00b", "surrogate-key": "x\ud800"}
BAD = [(name, "v", value) for name, value in BAD_VALUES.items()] + [
    (name, key, "value") for name, key in BAD_KEYS.items()]


def fails_naming(key: str) -> Any:
    return pytest.raises(CodecError, match=re.escape(f"session key {key!r}"))


@pytest.mark.parametrize(("key", "value"), [(k, v) for _, k, v in BAD], ids=[n for n, _, _ in BAD])
def test_create_fails_naming_the_key_and_writes_nothing(harness: Harness, key: str,
                                                        value: Any) -> None:
    client = harness.app.test_client()
    harness.reset()
    with fails_naming(key):
        harness.set(client, {"ok": 1, key: value})
    assert harness.writes() == []
    assert harness.get(client) == {}


@pytest.mark.parametrize(("key", "value"), [(k, v) for _, k, v in BAD], ids=[n for n, _, _ in BAD])
@pytest.mark.parametrize("regenerate", [False, True], ids=["update", "regenerate"])
def test_update_fails_naming_the_key_and_writes_nothing(harness: Harness, key: str, value: Any,
                                                        regenerate: bool) -> None:
    client = harness.app.test_client()
    harness.set(client, {"ok": 1})
    harness.reset()
    with fails_naming(key):
        harness.set(client, {"ok": 2, key: value}, regenerate=regenerate)
    assert harness.writes() == []  # not even the old id's delete, on a rotation
    assert harness.get(client) == {"ok": 1}


@pytest.mark.parametrize("value", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_a_bad_value_appended_in_place_fails_naming_the_key(harness: Harness,
                                                            value: Any) -> None:
    client = harness.app.test_client()
    harness.set(client, {"ok": 1, "cart": [1]})
    harness.reset()
    harness.box.update(key="cart", item=value)
    with fails_naming("cart"):
        client.post("/append")
    assert harness.writes() == []
    assert harness.get(client) == {"ok": 1, "cart": [1]}


def test_outside_testing_the_response_is_a_500_and_nothing_is_written(harness: Harness) -> None:
    client = harness.app.test_client()
    harness.set(client, {"ok": 1})
    harness.reset()
    harness.app.config["PROPAGATE_EXCEPTIONS"] = False
    try:
        harness.box.update(set={"v": Decimal(1)}, regenerate=False)
        response = client.post("/set")
    finally:
        harness.app.config["PROPAGATE_EXCEPTIONS"] = None
    assert response.status_code == 500
    assert "Set-Cookie" not in response.headers
    assert harness.writes() == []
    assert harness.get(client) == {"ok": 1}


# -- what does not decode: dropped, logged, never a 500 ----------------------------------------

UNDECODABLE = {
    "bad-tag": b'{" t": 5}', "bad-base64": b'{" b": "!!"}', "bad-set": b'{" s": [[1]]}',
    "bad-float": b'{" nf": "1.5"}', "huge-int": b'{" i": "' + b"1" * 5000 + b'"}',
    "deep": b"[" * 1000 + b"]" * 1000, "deep-dicts": b'{"a":' * 300 + b"1" + b"}" * 300,
}


def plant(harness: Harness, client: FlaskClient, fields: dict[str, bytes]) -> None:
    """Add ``fields`` (bytes as stored) to the client's session, behind satchel's back."""
    cookie = client.get_cookie("session")
    assert cookie is not None
    if harness.spy is not None:
        key = ids.storage_key(cookie.value[:ids.ID_LENGTH])
        assert harness.spy.inner.update(key, Patch(set=fields))
        return
    now = harness.clock()  # cookie mode: the JSON forms go inside a token sealed with the app's key
    forms = b",".join(b'"%s":%s' % (name.encode(), form) for name, form in fields.items())
    plaintext = b"[1,%r,%r,%r,{%s}]" % (now, now, now + 3600, b'"ok":1,' + forms)
    policy = harness.app.session_interface.policy(harness.app)  # type: ignore[attr-defined]
    client.set_cookie("session", policy.sealer.seal(plaintext, name="session"))


def test_stored_values_that_do_not_decode_are_dropped_and_logged(
        harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    client = harness.app.test_client()
    harness.set(client, {"ok": 1})
    plant(harness, client, UNDECODABLE)
    with caplog.at_level(logging.WARNING, logger="satchel"):
        assert harness.get(client) == {"ok": 1}
    dropped = {record.args[1] for record in caplog.records  # type: ignore[index]
               if "does not decode" in record.getMessage()}
    assert dropped == set(UNDECODABLE)
