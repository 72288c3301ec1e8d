from __future__ import annotations

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
