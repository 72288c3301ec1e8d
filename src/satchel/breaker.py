"""A store known to be down fails fast; a background probe checks whether it is back.

A network store (Redis, PostgreSQL) holds one :class:`Breaker`. When one of its calls fails
because the server cannot be reached (refused, reset, timed out), the store calls
:meth:`Breaker.trip`. From then on every call first meets :attr:`Breaker.down` and goes through
:meth:`Breaker.enter`, which never makes a request wait out the store's timeout (but for
the one exception below, after a refused probe):

- if no probe is running, it starts one in a thread of its own: the store's ``probe`` (a PING,
  a ``SELECT 1``, the schema creation still owed), bounded by the store's timeout, and waits
  for it up to :attr:`Breaker.patience` (40 ms). A probe that passes in that time closes the
  breaker and the call goes on, so the first request after the store is back succeeds; one
  that fails (a refused connection fails in microseconds) gives this call its
  :class:`~satchel.errors.StoreUnavailable`; one still running (a stalled server) leaves the
  call to fail at once while the probe goes on, and closes the breaker when it passes. A probe
  whose server has answered but that has more to do (PostgreSQL: create the table owed, check
  the pool's idle connections) says so (:meth:`Breaker.answered`), and the call waits for
  it to end;
- while a probe runs, a call waits for it the same way (up to :attr:`Breaker.patience`) and
  goes on if it passes, so a store that comes back in the middle of a probe (a stalled server
  that answers again) serves the next request at once; otherwise it gets
  :class:`~satchel.errors.StoreUnavailable`. A probe's failure answers only the calls that
  arrived before it started: one that arrived later waits for the next probe, so the first
  request after the store is back is not failed by an attempt made before.

So while the store is down, requests get their 503 in milliseconds: only the requests already
in a store call when it fell wait for the timeout. A call that was in flight when the breaker
tripped and then gets the server's answer closes it (:meth:`Breaker.reached`): one slow answer
on a loaded machine is not an outage. Only a failure to reach the server trips it: an error the
server itself answers with (a statement timeout, Redis's OOM) does not. There is no delay
between probes: at most one runs at a time. After a probe the server refused (it failed within
:data:`FAST_FAILURE`, far sooner than a server that hangs lets a probe fail), the next runs in
the thread of the call that starts it, which saves a thread and a hand-over per probe while a
store refuses, and the calls that meet it wait for it to end, as that call does: it ends in
about a connection's time (refused again, or connected to a server that is back), and a
connection to a server just back may take longer than :attr:`Breaker.patience`. If the server
stops answering meanwhile, the calls that wait on that one probe wait out the store's
timeout, as the calls in flight when a store falls do, and the probes after it get threads of
their own again.

A healthy store pays one attribute check per call (``if breaker.down``). This is the "circuit
breaker" of Nygard's *Release It!*, its half-open state a single trial call run in the
background.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from time import monotonic

from satchel.errors import StoreUnavailable, without_tracebacks
from satchel.forks import hold_across_forks

FAST_FAILURE = 0.1
"""Seconds: a probe that fails within this met a server that refuses (the kernel answers a
refused connection in microseconds; a loaded machine's scheduler and interpreter lock add
milliseconds), not one that hangs (that probe fails only at the store's timeout). The next
probe then runs in the thread of the call that starts it (see :meth:`Breaker.enter`)."""


class _Probe:
    """One run of a store's probe in a thread of its own, and how it ended."""

    __slots__ = ("answered", "done", "error", "inline", "pid", "started")

    def __init__(self, inline: bool) -> None:
        self.inline = inline  # runs in its caller's thread: the server refused the last one
        self.started = monotonic()
        self.pid = os.getpid()
        self.done = threading.Event()
        self.answered = threading.Event()  # the server answered; the probe has more to do
        self.error: BaseException | None = None


class Breaker:
    """The down/up state of one store.

    ``name`` is how messages name the store (no password: the caller's ``repr``).
    ``lease`` (seconds) is how long a probe may run before another call may start one beside
    it (a probe is bounded by the store's timeout; the lease only guards against one that
    hangs past it). ``patience`` (seconds) is how long a call waits for a probe to answer
    before it fails.
    """

    __slots__ = ("_cause", "_inline", "_lease", "_lock", "_name", "_probe", "_reason",
                 "_since", "down", "patience")

    def __init__(self, name: str, *, lease: float = 60.0, patience: float = 0.04) -> None:
        self.down = False
        """True from a failure to reach the store until a probe passes. Read without a lock."""
        self.patience = patience
        self._name = name
        self._lease = lease
        self._lock = threading.Lock()
        hold_across_forks(self._lock, f"the breaker of {name}")  # a child must get it free
        self._probe: _Probe | None = None
        self._since = 0.0
        self._reason = ""
        self._cause: BaseException | None = None
        # The last probe failed within FAST_FAILURE: the server refuses at once, so the next
        # probe runs in the thread of the call that starts it (no thread to start and hand
        # over to). If it hangs instead, that call waits the store's timeout, as the calls
        # in flight when a store falls do, and the probes after it get threads again.
        self._inline = False

    def trip(self, reason: str, cause: BaseException | None = None) -> None:
        """A call failed because the store cannot be reached (``reason``: why, no secrets).

        ``cause``, the driver's error (scrubbed of secrets), becomes the ``__cause__`` of the
        StoreUnavailable that calls get while the breaker is open, so a log says why. It is
        kept without its traceback (see :func:`~satchel.errors.without_tracebacks`): the
        same object, as ``__cause__`` of the error the failed call raises, prints its type
        and message but no stack.
        """
        without_tracebacks(cause)
        with self._lock:
            if not self.down:
                self._since = monotonic()
            self._reason = reason
            self._cause = cause
            self.down = True

    def enter(self, probe: Callable[[], None]) -> None:
        """Called when :attr:`down`: return if the store is back, else raise StoreUnavailable.

        ``probe()`` raises (StoreUnavailable, after tripping the breaker again) if the store is
        still down; when it returns, the breaker closes. It runs in a thread of its own, one at
        a time; this call waits for it at most :attr:`patience` seconds and raises
        StoreUnavailable if it has not passed by then. After a probe that failed within
        :data:`FAST_FAILURE` (the server refused the connection), the next one runs in the
        calling thread instead, bounded by the store's timeout: a refusing store then
        costs no thread and no hand-over per probe. A call that finds a probe running
        waits for that one the same way instead of starting another: up to its patience,
        or, for a probe in its caller's thread, to that probe's end. A failed probe answers
        the calls that arrived before it started; a call that arrived while it ran (the
        store may have come back after its attempt) waits for the next probe, its own or
        another call's, while time is left. So a call waits for at most two probes, and
        while the store refuses, calls share probes instead of each running its own.
        """
        arrived = monotonic()
        deadline = arrived + self.patience
        while True:
            with self._lock:
                if not self.down:
                    return  # a probe passed meanwhile
                running = self._probe
                now = monotonic()
                if running is not None and (running.done.is_set() or running.pid != os.getpid()
                                            or now - running.started >= self._lease):
                    running = None  # ended, or lost: a forked child does not have the thread
                mine = running is None
                if running is None:
                    running = self._probe = _Probe(self._inline)
            if mine and running.inline:
                self._run(running, probe)
            elif mine:
                threading.Thread(target=self._run, args=(running, probe), daemon=True,
                                 name=f"satchel probe {self._name}").start()
            if running.inline:
                # The server refused the probe before this one: this one ends in about a
                # connection's time, which may exceed the patience once the server is back.
                # Wait as its own caller does, so the first requests after that get through.
                finished = running.done.wait(self._lease)
            else:
                finished = running.done.wait(max(0.0, deadline - monotonic()))
            if not finished and running.answered.is_set():
                # The server answered: what the probe still does (a table to create, idle
                # connections to check) is bounded by the store's own timeout. Wait for it, so
                # the first request after the store is back does not get a 503.
                finished = running.done.wait(self._lease)
            if not finished:
                raise self._unavailable(monotonic())  # still running: it goes on without us
            if running.error is None:  # passed: _run closed the breaker
                if self.down:  # another failure tripped it again since
                    raise self._unavailable(monotonic())
                return
            if mine:
                error, running = running.error, None
                try:
                    raise error
                finally:  # this frame, in error's traceback, must not hold it: no cycle
                    del error
            if running.started >= arrived or monotonic() >= deadline:
                # A probe that started after this call arrived has answered for it, whoever
                # started it: no probe per waiting call, no convoy of probe threads.
                raise self._unavailable(monotonic())
            # a probe older than this call failed, maybe just before the store came back:
            # wait for the next one (this call's own, or one another call starts)

    def reached(self) -> None:
        """Called by a store call that got the server's answer while :attr:`down`: the server
        can be reached, so close the breaker and let calls through again.

        A call that was in flight when another one timed out, and then got its answer,
        proves the server answers: a slow moment (a loaded machine, a long lock wait) is
        not an outage, and calls must not get 503 until a probe, which opens a connection
        of its own and may take longer than :attr:`patience` on a loaded machine, passes.
        A probe still running ends on its own; if it fails, it trips the breaker again.
        """
        with self._lock:
            self.down = False

    def answered(self) -> None:
        """Called by a probe once the server has answered, when it has more to do before it
        passes (create a table, check idle connections): calls waiting for it then wait
        until it ends (it is bounded by the store's timeout), not only their patience."""
        running = self._probe
        if running is not None:
            running.answered.set()

    def _run(self, started: _Probe, probe: Callable[[], None]) -> None:
        try:
            probe()
        except BaseException as err:  # the caller that waits for it re-raises it
            started.error = without_tracebacks(err)  # it ran in another thread
            self._inline = monotonic() - started.started < FAST_FAILURE
        else:
            self._inline = False
            with self._lock:
                if self._probe is started:
                    self.down = False
        finally:
            with self._lock:
                if self._probe is started:
                    self._probe = None
            started.done.set()

    def _unavailable(self, now: float) -> StoreUnavailable:
        error = StoreUnavailable(
            f"{self._name} unavailable since {now - self._since:.1f} s ago"
            f" ({self._reason}); checking whether it is back")
        error.__cause__ = self._cause  # (which also sets __suppress_context__)
        return error

    def __repr__(self) -> str:
        return f"<Breaker {self._name} {'down' if self.down else 'up'}>"
