from __future__ import annotations

from satchel import ids


def test_new_ids_are_well_formed_and_distinct() -> None:
    made = {ids.new_id() for _ in range(1000)}
    assert len(made) == 1000
    assert all(ids.is_well_formed(i) and len(i) == 43 for i in made)


def test_shape_check_refuses_anything_else() -> None:
    good = ids.new_id()
    for bad in ("", good[:-1], good + "A", good[:-1] + "=", good[:-1] + "/", good[:-1] + "\n",
                "é" * 43):
        assert not ids.is_well_formed(bad)


def test_storage_key_is_sha256_hex_and_does_not_contain_the_id() -> None:
    sid = ids.new_id()
    key = ids.storage_key(sid)
    assert len(key) == 64 and sid not in key
    assert key == ids.storage_key(sid)


def test_fingerprint_is_short_and_not_the_storage_key() -> None:
    sid = ids.new_id()
    assert len(ids.fingerprint(sid)) == 12
    assert ids.fingerprint(sid) not in ids.storage_key(sid)
