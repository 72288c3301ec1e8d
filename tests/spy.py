"""A store wrapper that records every call, to assert what reached the store."""

from __future__ import annotations

from typing import Any

from satchel.store import Patch, Record, Store


class SpyStore:
    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: list[tuple[str, Any]] = []

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def reset(self) -> None:
        self.calls.clear()

    def load(self, key: str) -> Record | None:
        self.calls.append(("load", key))
        return self.inner.load(key)

    def create(self, key: str, record: Record) -> None:
        self.calls.append(("create", record))
        self.inner.create(key, record)

    def update(self, key: str, patch: Patch) -> bool:
        self.calls.append(("update", patch))
        return self.inner.update(key, patch)

    def delete(self, key: str) -> None:
        self.calls.append(("delete", key))
        self.inner.delete(key)
