from __future__ import annotations

import pytest

from satchel.stores.memory import MemoryStore
from tests.clock import FakeClock
from tests.stores.contract import StoreContract
from tests.stores.contract_expired import ExpiredLookupContract


class TestMemoryStore(StoreContract, ExpiredLookupContract):
    @pytest.fixture
    def store(self, clock: FakeClock) -> MemoryStore:
        return MemoryStore(clock=clock)

    def test_loaded_records_are_copies(self, store: MemoryStore, clock: FakeClock) -> None:
        from tests.stores.contract import make_record

        store.create("k", make_record(clock, a=b"1"))
        loaded = store.load("k")
        assert loaded is not None
        loaded.fields["a"] = b"changed"
        again = store.load("k")
        assert again is not None and again.fields == {"a": b"1"}
