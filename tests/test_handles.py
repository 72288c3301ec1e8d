"""Session handles: stable, opaque, never a cookie, opened only by the app that made them."""

from __future__ import annotations

import pytest

from satchel import ConfigError, ids
from satchel.handles import Handles

KEY = ids.storage_key(ids.new_id())


def test_a_handle_opens_to_its_storage_key_and_is_stable() -> None:
    handles = Handles("k" * 32)
    handle = handles.handle(KEY)
    assert len(handle) == 64 and handle == handles.handle(KEY)
    assert handles.storage_key(handle) == KEY
    assert handle != handles.handle(ids.storage_key(ids.new_id()))


def test_a_handle_is_neither_the_id_nor_the_storage_key_nor_a_cookie() -> None:
    sid = ids.new_id()
    handle = Handles("k" * 32).handle(ids.storage_key(sid))
    assert sid not in handle and ids.storage_key(sid) not in handle
    assert not ids.is_well_formed(handle)


@pytest.mark.parametrize("forged", [
    "", "x", "A" * 64, "A" * 63 + "=", "é" * 64, "A" * 65, None, 7, b"A" * 64,
])
def test_anything_not_made_by_the_app_opens_to_none(forged: object) -> None:
    assert Handles("k" * 32).storage_key(forged) is None  # type: ignore[arg-type]


def test_a_changed_character_opens_to_none() -> None:
    handles = Handles("k" * 32)
    handle = handles.handle(KEY)
    for position in (0, 31, 63):
        changed = handle[:position] + ("B" if handle[position] != "B" else "C") + handle[
            position + 1:]
        assert handles.storage_key(changed) is None


def test_another_apps_key_cannot_open_it_and_a_fallback_can() -> None:
    old = Handles("old-key" + "k" * 25).handle(KEY)
    assert Handles("new-key" + "k" * 25).storage_key(old) is None
    rotated = Handles("new-key" + "k" * 25, ["old-key" + "k" * 25])
    assert rotated.storage_key(old) == KEY
    assert rotated.handle(KEY) != old  # new handles are made under the current key


def test_only_storage_keys_get_handles() -> None:
    with pytest.raises(ValueError, match="not a storage key"):
        Handles("k" * 32).handle(ids.new_id())


def test_an_unusable_secret_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Handles("")


def test_a_device_description_keeps_no_control_character_and_fits() -> None:
    from satchel.store import DEVICE_MAX
    from satchel.users import describe_device

    assert describe_device("evil\x1b]0;owned\x07 agent\r\nX-Injected: 1", "203.0.113.9") == (
        "evil ]0;owned agent X-Injected: 1 (203.0.113.9)")
    long = describe_device("A" * 500, "2001:db8::1")
    assert long is not None and len(long) == DEVICE_MAX and long.endswith(" (2001:db8::1)")
    assert describe_device(None, None) is None and describe_device("", "") is None
