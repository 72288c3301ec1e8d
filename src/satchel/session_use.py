"""Which request paths use their session: what prefetching goes by.

A request whose path used its session last time will most likely use it
again, so its store load is worth sending as the request opens. A path not
seen yet (each ``/item/<id>``) goes by the last request that carried a
session cookie. Bounded: at most ``limit`` paths, the oldest forgotten
first, and paths longer than ``max_length`` are never remembered (junk URLs
cost no memory). Thread-safe enough for a guess: a lost update costs one
lazy load or one wasted prefetch.
"""

from __future__ import annotations


class SessionUse:
    """What the requests to each path did with their session."""

    def __init__(self, *, limit: int = 4096, max_length: int = 256) -> None:
        self.limit = limit
        self.max_length = max_length
        # path -> used, oldest first; and what the last request with a cookie did. Public for
        # the session interface's hot path: it reads them as expected() and record() do
        self.paths: dict[str, bool] = {}
        self.last_used = True

    def expected(self, path: str) -> bool:
        """True if a request to ``path`` is expected to use its session."""
        return self.paths.get(path, self.last_used)

    def record(self, path: str, *, used: bool, had_cookie: bool) -> None:
        """Remember what a request to ``path`` did with its session."""
        if had_cookie:
            self.last_used = used
        paths = self.paths
        if len(path) > self.max_length or paths.get(path) is used:
            return
        if len(paths) >= self.limit and path not in paths:
            try:
                del paths[next(iter(paths))]
            except (KeyError, StopIteration, RuntimeError):  # another thread got there first
                pass
        paths[path] = used

    def __len__(self) -> int:
        return len(self.paths)

    def __contains__(self, path: object) -> bool:
        return path in self.paths
