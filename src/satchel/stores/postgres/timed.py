"""Time bounds for PostgreSQL connections: connecting, a statement sent, a stalled network.

Three bounds, each for a different failure (PostgreSQL docs, "Connection Parameters" and
"Client Connection Defaults"):

- ``connect_timeout`` (libpq): connecting. libpq counts whole seconds, at least 2.
- ``statement_timeout`` (server setting, sent in ``options``): the server cancels a statement
  that runs too long (a lock wait, a slow disk). It does nothing if the server, or the network
  on the way, never answers.
- the client's own wait: :func:`timed_connection` makes a ``psycopg.Connection`` class whose
  every wait for the server (psycopg's ``Connection.wait``, which ``execute`` uses) gives up
  after ``timeout`` seconds, raising ``psycopg.OperationalError``. This is what bounds a stalled
  server or network, where no byte and no error ever comes back.
"""

from __future__ import annotations

import inspect
import logging
import re
import select
from functools import cache
from time import monotonic
from typing import Any, TypeVar

import psycopg

RV = TypeVar("RV")
log = logging.getLogger("satchel")
# A statement_timeout in libpq's options: "-c statement_timeout=5s" (PostgreSQL's units;
# milliseconds without one)
_STATEMENT_TIMEOUT = re.compile(
    r"statement_timeout\s*=\s*'?\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*'?(?:\s|$)")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_NATIVE = "timeout" in inspect.signature(psycopg.Connection.wait).parameters
# psycopg's Wait/Ready flags (psycopg.waiting), the same in every psycopg 3.
_WAIT_R, _WAIT_W, _READY_R, _READY_W = 1, 2, 1, 2


class WaitTimeout(psycopg.OperationalError):
    """The server did not answer within the store's timeout."""


def pool_kwargs(params: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Connection arguments bounding connect and statements by ``timeout`` seconds.

    ``params`` are the URL's own libpq parameters: a ``connect_timeout`` or a
    ``statement_timeout`` already in them is kept.

    ``statement_timeout`` is :func:`statement_bound` of ``timeout``: shorter than the
    client's own wait (:func:`timed_connection`), so the server cancels a statement that
    waits too long (on a row lock, say) and its answer comes back before the client gives
    up. The call then fails alone; a client-side timeout would instead say the server
    cannot be reached, and trip the store's breaker for every call.
    """
    kwargs: dict[str, Any] = {}
    if "connect_timeout" not in params:
        kwargs["connect_timeout"] = max(2, round(timeout))
    options = params.get("options") or ""
    if "statement_timeout" not in options:
        ms = max(1, round(statement_bound(timeout) * 1000))
        kwargs["options"] = f"{options} -c statement_timeout={ms}".strip()
    else:
        given = options_statement_timeout(options)
        if given is None or given == 0 or given >= timeout:
            shown = "unreadable" if given is None else "off" if given == 0 else f"{given:g} s"
            log.warning("PostgreSQL statement_timeout in the URL (%s) is not below the"
                        " store's timeout (%g s): a statement held by a lock is cut by the"
                        " client, which trips the store's breaker (503s until a probe"
                        " passes); set it below, e.g. -c statement_timeout=%d, or leave"
                        " it out", shown, timeout, round(statement_bound(timeout) * 1000))
    return kwargs


def options_statement_timeout(options: str) -> float | None:
    """The ``statement_timeout`` set in libpq ``options`` (``-c statement_timeout=5s``), in
    seconds (PostgreSQL's units: ``us``, ``ms``, ``s``, ``min``, ``h``, ``d``; milliseconds
    without one); 0 means none; None if ``options`` sets none this can read."""
    found = _STATEMENT_TIMEOUT.search(options)
    if found is None:
        return None
    return float(found.group(1)) * _UNIT_SECONDS[found.group(2) or "ms"]


def statement_bound(timeout: float) -> float:
    """The ``statement_timeout`` (seconds) :func:`pool_kwargs` sets for a client ``timeout``
    (seconds): 80 % of it, and at most 1 s less (3 s -> 2.4 s, 10 s -> 9 s, 0.5 s -> 0.4 s),
    which leaves the server's cancel time to reach the client on a loaded machine."""
    return max(timeout * 0.8, timeout - 1.0)


@cache
def timed_connection(timeout: float) -> type[psycopg.Connection[Any]]:
    """A ``psycopg.Connection`` subclass whose waits for the server last at most ``timeout`` s.

    Pass it as a pool's ``connection_class``. A wait that runs out raises
    :class:`WaitTimeout` (a ``psycopg.OperationalError``); the connection is then
    mid-statement, and the pool discards it when it is returned.
    """

    class TimedConnection(psycopg.Connection[Any]):
        def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
            bound = _bound if timeout is None else min(timeout, _bound)
            if _NATIVE:
                try:
                    return super().wait(gen, interval, bound)
                except psycopg.errors._WaitTimeout as err:
                    raise WaitTimeout(f"no answer from the server within {bound:g} s") from err
            return wait_bounded(gen, self.pgconn.socket, bound)

    _bound = float(timeout)
    TimedConnection.__name__ = TimedConnection.__qualname__ = f"TimedConnection{timeout:g}"
    return TimedConnection


def wait_bounded(gen: Any, fileno: int, timeout: float) -> Any:
    """Run psycopg generator ``gen`` on socket ``fileno`` for at most ``timeout`` seconds.

    What psycopg's own wait does (for a psycopg whose ``Connection.wait`` takes no timeout),
    with ``poll``. Raises :class:`WaitTimeout` when the time is up.
    """
    deadline = monotonic() + timeout
    poller = select.poll()
    try:
        state = next(gen)
        while True:
            mask = (select.POLLIN if state & _WAIT_R else 0) | (
                select.POLLOUT if state & _WAIT_W else 0)
            poller.register(fileno, mask)
            left = deadline - monotonic()
            events = poller.poll(max(0.0, left) * 1000) if left > 0 else []
            poller.unregister(fileno)
            if not events:
                raise WaitTimeout(f"no answer from the server within {timeout:g} s")
            got = events[0][1]
            ready = (_READY_R if got & (select.POLLIN | select.POLLERR | select.POLLHUP) else 0) | (
                _READY_W if got & (select.POLLOUT | select.POLLERR | select.POLLHUP) else 0)
            state = gen.send(ready)
    except StopIteration as done:
        return done.value

