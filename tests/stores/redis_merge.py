"""RedisStore's fast update (satchel.stores.redis.merge): an update right after a load of the
same session sends the merged bytes, which the script writes if the session still holds what
was loaded. It must write what the script's own merge writes, byte for byte and with the
same TTL, and fall back to that merge whenever the session changed since the load (no lost
update, no resurrection of a deleted session, no update of an expired one).

Mixed into the RedisStore test classes of a single server and of a cluster, which provide
the ``store`` and ``clock`` fixtures. Not collected on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from satchel.store import Patch, Record, Updated
from satchel.stores.redis import RedisStore
from satchel.stores.redis import sessions as sessions_module
from tests.clock import FakeClock

HOUR = 3600.0
FAST = "a" * 64  # updated after a load: the fast path
SLOW = "b" * 64  # updated without one: the script's merge

BIG = b"x" * 300  # deflated when stored

RECORDS: dict[str, Callable[[float], Record]] = {
    "plain": lambda now: Record({"n": b"1", "u": b'"alice"'}, now - 60, now - 30, now + HOUR),
    "permanent, device": lambda now: Record({"n": b"1", "big": BIG}, now - 60, now - 30,
                                            now + HOUR, permanent=True, device="Firefox"),
    "user": lambda now: Record({"n": b"1"}, now - 60, now - 30, now + HOUR, user="alice"),
    "no field": lambda now: Record({}, now - 60, now - 30, now + HOUR),
}

# Patches, and whether the fast path may write them alone (True) or must leave them to the
# script (False: an emptied session, a user moved, a user's set to extend, ...).
PATCHES: dict[str, tuple[Callable[[float], Patch], set[str]]] = {
    "set one": (lambda now: Patch(set={"n": b"2"}), {"plain", "permanent, device", "user",
                                                     "no field"}),
    "set new, delete one": (lambda now: Patch(set={"new": b"v" * 100}, delete=frozenset({"n"})),
                            {"plain", "permanent, device", "user", "no field"}),
    "clear, set": (lambda now: Patch(set={"a": b"1", "b": b"2"}, clear=True),
                   {"plain", "permanent, device", "user", "no field"}),
    "touch": (lambda now: Patch(last_seen=now, expires_at=now + HOUR / 2),
              {"plain", "permanent, device", "user", "no field"}),
    "touch, set, permanent": (lambda now: Patch(set={"n": b"3"}, last_seen=now,
                                                expires_at=now + 2 * HOUR, permanent=False),
                              {"plain", "permanent, device", "no field"}),  # user: extend
    "make permanent": (lambda now: Patch(permanent=True), {"plain", "permanent, device",
                                                            "user", "no field"}),
    "delete, keep if empty": (lambda now: Patch(delete=frozenset({"n", "u", "big", "a"}),
                                                delete_if_empty=True), set()),
    "delete one, keep if empty": (lambda now: Patch(delete=frozenset({"n"}),
                                                    delete_if_empty=True),
                                  {"plain", "permanent, device"}),
    "keep if empty": (lambda now: Patch(delete_if_empty=True),
                      {"plain", "permanent, device", "user"}),  # no field: deleted
    "log in": (lambda now: Patch(user="bob"), set()),
    "log out": (lambda now: Patch(user=""), set()),
    "delete and set one name": (lambda now: Patch(set={"n": b"4"}, delete=frozenset({"n"})),
                                set()),
    "nothing": (lambda now: Patch(), {"plain", "permanent, device", "user", "no field"}),
}


class RedisFastUpdateContract:
    @pytest.mark.parametrize("record_name", list(RECORDS))
    @pytest.mark.parametrize("patch_name", list(PATCHES))
    def test_an_update_after_a_load_writes_what_the_script_writes(
            self, store: RedisStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
            record_name: str, patch_name: str) -> None:
        fast_paths: list[bytes | None] = []

        def merged(*args: Any) -> bytes | None:
            fast_paths.append(result := real(*args))
            return result

        real = sessions_module.merged
        monkeypatch.setattr(sessions_module, "merged", merged)
        record = RECORDS[record_name](clock.now)
        make_patch, fast_for = PATCHES[patch_name]
        store.create(FAST, record)
        store.create(SLOW, record)
        clock.advance(5)
        patch = make_patch(clock.now)
        assert store.load(FAST) == store.load(SLOW) == record
        store.load(FAST)  # the last load: what the update merges onto
        fast = store.update(FAST, patch)
        slow = store.update(SLOW, patch)
        assert fast == slow
        # The fast path was taken where it may be, and only there.
        assert fast_paths[0] is not None if record_name in fast_for else fast_paths[0] is None
        assert fast_paths[1:] == []  # the update without a load had nothing to merge onto
        client: Any = store.client
        assert client.get(store._names.of(FAST)) == client.get(store._names.of(SLOW))
        assert abs(client.pttl(store._names.of(FAST)) - client.pttl(store._names.of(SLOW))) < 2000
        assert store.load(FAST) == store.load(SLOW)

    def test_a_write_between_the_load_and_the_update_is_kept(
            self, store: RedisStore, clock: FakeClock) -> None:
        other = RedisStore(store.client, prefix=store.prefix, clock=clock)
        try:
            store.create(FAST, RECORDS["plain"](clock.now))
            store.load(FAST)
            assert other.update(FAST, Patch(set={"theirs": b"1"})) is Updated.KEPT
            assert store.update(FAST, Patch(set={"n": b"2"})) is Updated.KEPT
        finally:
            other.close()
        loaded = store.load(FAST)
        assert loaded is not None
        assert loaded.fields == {"n": b"2", "u": b'"alice"', "theirs": b"1"}

    def test_an_update_after_a_load_never_brings_back_a_deleted_session(
            self, store: RedisStore, clock: FakeClock) -> None:
        other = RedisStore(store.client, prefix=store.prefix, clock=clock)
        try:
            store.create(FAST, RECORDS["plain"](clock.now))
            store.load(FAST)
            other.delete(FAST)
            assert store.update(FAST, Patch(set={"n": b"2"})) is Updated.GONE
        finally:
            other.close()
        assert store.load(FAST) is None
        assert store.client.exists(store._names.of(FAST)) == 0

    def test_an_update_after_a_load_of_a_session_that_expired_since_is_gone(
            self, store: RedisStore, clock: FakeClock) -> None:
        store.create(FAST, RECORDS["plain"](clock.now))
        store.load(FAST)
        clock.advance(HOUR + 1)  # by the store's clock: Redis still holds it
        assert store.update(FAST, Patch(set={"n": b"2"})) is Updated.GONE
        clock.advance(-HOUR)
        loaded = store.load(FAST)
        assert loaded is not None and loaded.fields["n"] == b"1"

    def test_the_bytes_of_one_session_are_never_merged_onto_another(
            self, store: RedisStore, clock: FakeClock) -> None:
        store.create(FAST, RECORDS["plain"](clock.now))
        store.create(SLOW, RECORDS["permanent, device"](clock.now))
        store.load(FAST)
        assert store.update(SLOW, Patch(set={"n": b"2"})) is Updated.KEPT
        loaded = store.load(SLOW)
        assert loaded is not None
        assert loaded.fields == {"n": b"2", "big": BIG} and loaded.device == "Firefox"

    def test_a_session_under_its_earlier_name_is_updated_there_by_the_script(
            self, store: RedisStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
        # A session from before the current names: the fast path writes at the current name
        # only, so it is not tried (it would cost a round trip more), and UPDATE writes
        # the session where it lives.
        calls: list[object] = []
        real = sessions_module.merged
        monkeypatch.setattr(sessions_module, "merged",
                            lambda *args: calls.append(args) or real(*args))
        client: Any = store.client
        store.create(FAST, RECORDS["plain"](clock.now))
        current, earlier = store._names.of(FAST), store._names.legacy(FAST)
        assert earlier is not None
        client.set(earlier, client.get(current), px=client.pttl(current))
        client.delete(current)
        assert store.load(FAST) is not None
        assert store.update(FAST, Patch(set={"n": b"2"})) is Updated.KEPT
        assert calls == []
        assert client.exists(current) == 0
        loaded = store.load(FAST)
        assert loaded is not None and loaded.fields["n"] == b"2"
