"""A store known to be down fails fast; one call at a time checks whether it is back.

A network store (Redis, PostgreSQL) holds one :class:`Breaker`. When one of its calls fails
because the server cannot be reached (refused, reset, timed out), the store calls
:meth:`Breaker.trip`. From then on every call first meets :attr:`Breaker.down` and goes through
:meth:`Breaker.enter`: all but one get :class:`~satchel.errors.StoreUnavailable` at once (a 503 in
milliseconds instead of a wait for the store's timeout), and the one left runs the store's
``probe`` (a PING, a ``SELECT 1``, the schema creation still owed), bounded by the store's timeout.
A probe that passes closes the breaker and its call goes on, so the first request after the store
is back succeeds; one that fails keeps it open and the next call probes again. There is no delay
between probes: at most one runs at a time, and a refused connection fails in microseconds.

A healthy store pays one attribute check per call (``if breaker.down``). This is the "circuit
breaker" of Nygard's *Release It!* with its half-open state reduced to a single trial call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from time import monotonic

from satchel.errors import StoreUnavailable


class Breaker:
    """The down/up state of one store.

    ``name`` is how messages name the store (no password: the caller's ``repr``).
    ``lease`` (seconds) is how long a probe may run before another call may probe instead
    (a probe is bounded by the store's timeout; the lease only guards against a lost one).
    """

    __slots__ = ("_lease", "_lock", "_name", "_probe_started", "_reason", "_since", "down")

    def __init__(self, name: str, *, lease: float = 10.0) -> None:
        self.down = False
        """True from a failure to reach the store until a probe passes. Read without a lock."""
        self._name = name
        self._lease = lease
        self._lock = threading.Lock()
        self._probe_started: float | None = None
        self._since = 0.0
        self._reason = ""

    def trip(self, reason: str) -> None:
        """A call failed because the store cannot be reached (``reason``: why, no secrets)."""
        with self._lock:
            if not self.down:
                self._since = monotonic()
            self._reason = reason
            self.down = True
            self._probe_started = None

    def enter(self, probe: Callable[[], None]) -> None:
        """Called when :attr:`down`: raise StoreUnavailable at once, or be the one probe.

        The probe runs ``probe()``, which raises (StoreUnavailable, after tripping the breaker
        again) if the store is still down; when it returns, the breaker closes and the caller
        goes on with its call. While a probe runs, other callers get StoreUnavailable.
        """
        now = monotonic()
        with self._lock:
            if not self.down:
                return  # a probe passed meanwhile
            started = self._probe_started
            if started is not None and now - started < self._lease:
                raise StoreUnavailable(
                    f"{self._name} unavailable since {now - self._since:.1f} s ago"
                    f" ({self._reason}); checking whether it is back")
            self._probe_started = now
        try:
            probe()
        except BaseException:
            with self._lock:
                if self._probe_started == now:
                    self._probe_started = None
            raise
        with self._lock:
            self.down = False
            self._probe_started = None

    def __repr__(self) -> str:
        return f"<Breaker {self._name} {'down' if self.down else 'up'}>"
