from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from satchel.keys import KeyRing, derive


def test_purposes_get_different_keys() -> None:
    assert derive(b"secret", "a") != derive(b"secret", "b")


def test_sign_and_verify_with_fallbacks() -> None:
    old = KeyRing("old", purpose="p")
    new = KeyRing("new", ["old"], purpose="p")
    mac = old.sign(b"message")
    assert new.verify(b"message", mac) == 1
    assert new.verify(b"message", new.sign(b"message")) == 0
    assert KeyRing("other", purpose="p").verify(b"message", mac) is None
    assert new.verify(b"tampered", mac) is None


def test_short_macs_are_refused() -> None:
    ring = KeyRing("k", purpose="p")
    assert ring.verify(b"m", ring.sign(b"m")[:8]) is None


def test_repr_shows_no_key_material() -> None:
    ring = KeyRing("super secret", purpose="p")
    assert "secret" not in repr(ring)


@given(secret=st.binary(min_size=1, max_size=100), message=st.binary(max_size=300))
def test_mac_is_standard_hmac_sha256_of_the_derived_key(secret: bytes, message: bytes) -> None:
    ring = KeyRing(b"current", [secret], purpose="test")
    for index, key in enumerate((b"current", secret)):
        expected = hmac.new(derive(key, "test"), message, hashlib.sha256).digest()
        assert ring.mac(message, index) == expected
    assert ring.sign(message) == ring.mac(message)[:16]
