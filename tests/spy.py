"""A store wrapper that records every call, to assert what reached the store."""

from __future__ import annotations

from typing import Any

from satchel.store import Patch, PendingLoad, Record, Store, Updated


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

    def update(self, key: str, patch: Patch) -> Updated:
        self.calls.append(("update", patch))
        return self.inner.update(key, patch)

    def delete(self, key: str) -> None:
        self.calls.append(("delete", key))
        self.inner.delete(key)


class PrefetchSpy(SpyStore):
    """A SpyStore for a store that prefetches: it records ``prefetch``, then how each
    pending load ended (``result`` or ``cancel``)."""

    def prefetch(self, key: str) -> PendingLoad | None:
        self.calls.append(("prefetch", key))
        pending = self.inner.prefetch(key)  # type: ignore[attr-defined]
        return None if pending is None else _SpiedPending(self, pending)


class _SpiedPending:
    def __init__(self, spy: SpyStore, pending: PendingLoad) -> None:
        self.spy, self.pending = spy, pending

    def result(self) -> Record | None:
        self.spy.calls.append(("result", None))
        return self.pending.result()

    def cancel(self) -> None:
        self.spy.calls.append(("cancel", None))
        self.pending.cancel()
