"""The Set-Cookie header satchel writes is the one Werkzeug's dump_cookie writes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.http import dump_cookie

from satchel.cookie_header import CookieTemplate

attributes = st.fixed_dictionaries({
    "domain": st.sampled_from([None, "", "example.com", ".example.com", "localhost:5000",
                               "bücher.example"]),
    "path": st.sampled_from([None, "/", "/app", "/a b;c"]),
    "secure": st.booleans(),
    "httponly": st.booleans(),
    "samesite": st.sampled_from([None, "Lax", "strict", "NONE"]),
    "partitioned": st.booleans(),
})
values = st.one_of(
    st.from_regex(r"[A-Za-z0-9_\-.]{0,80}", fullmatch=True),  # what satchel's tokens look like
    st.text(max_size=30),  # anything, quoted or escaped by Werkzeug
)
expiries = st.one_of(st.none(), st.floats(min_value=-1e6, max_value=4e9),
                     st.integers(0, 4_000_000_000).map(lambda s: s - 5e-7))


@settings(max_examples=300)
@given(name=st.sampled_from(["session", "__Host-s", "my_app"]), attrs=attributes,
       value=values, expires=expiries)
def test_header_is_byte_for_byte_dump_cookie(name: str, attrs: dict[str, object], value: str,
                                             expires: float | None) -> None:
    template = CookieTemplate(name, **attrs)  # type: ignore[arg-type]
    assert template.header(value, expires) == dump_cookie(name, value, expires=expires,
                                                          max_size=0, **attrs)  # type: ignore[arg-type]


def test_the_date_follows_each_second() -> None:
    template = CookieTemplate("s", domain=None, path="/", secure=False, httponly=True,
                              samesite=None, partitioned=False)
    first = template.header("v", 1_800_000_000.2)
    assert "Expires=Fri, 15 Jan 2027 08:00:00 GMT" in first
    assert template.header("v", 1_800_000_000.9) == first
    assert "Expires=Fri, 15 Jan 2027 08:00:01 GMT" in template.header("v", 1_800_000_001.0)


def test_unknown_samesite_is_refused() -> None:
    with pytest.raises(ValueError, match="SESSION_COOKIE_SAMESITE 'sometimes'"):
        CookieTemplate("s", domain=None, path="/", secure=False, httponly=True,
                       samesite="sometimes", partitioned=False)
