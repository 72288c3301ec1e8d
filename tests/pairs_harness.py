"""Overlapping requests on one session through a real threaded HTTP server, on every store.

The server and clients are those of :mod:`tests.lock_harness` (werkzeug's
``make_server``, a thread per request, on 127.0.0.1; ``http.client``, a
thread per request). Two cases, both without ``@session_lock``:

- **Pairs**: a session per pair (its own cookie, seeded with ``seed``), two
  requests sent at once (a client barrier), each setting a different key
  (``a`` and ``b``, valued with the pair's number). Every third pair, one of
  the two pops ``seed`` instead, emptying its copy of the session (the case
  issue 10 fixed): the other's key must survive. In the view each request
  loads the session, then waits at a per-pair server barrier until the other
  has loaded too (so the two overlap for certain, whatever the scheduling),
  then one of them sleeps ``DELAY`` s (which one alternates by pair, so both
  commit orders occur) and writes. Afterwards, with the cookie a browser
  would hold (each ``Set-Cookie`` applied in the order the responses
  arrived), the session must hold both changes; a pair that does not is lost.
  "Lost in store" checks instead with the cookie ``b``'s response handed back.
- **Logouts**: a session with a user; a slow request loads it and waits
  while a logout (``session.destroy()``) on the same cookie is sent and
  answered; then the slow request writes a key and answers. The slow
  response must set no cookie and the old cookie must open an empty
  session; otherwise the logout is resurrected (counted as ``lost``).

Finding (an emptying pair, every store): when the emptier commits first, the
other's write starts a new session and its response carries the new cookie;
if the emptier's response (a cookie expiry, as Flask sends for an emptied
session) reaches the browser after it, the browser drops the new cookie. The
store keeps the key; the browser can no longer reach it.

    .venv/bin/python -m tests.pairs_harness    # pairs and logouts tried and lost, per store

``tests/test_pairs_parallel.py`` runs both in ``make test``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, current_app, session

from tests.clock import FakeClock
from tests.lock_harness import TIMEOUT, call, serving
from tests.modes import SERVER_MODES, mode_app

DELAY = 0.003  # seconds the later writer of a pair waits after both have loaded
WAVE = 20  # pairs (or logouts) in flight at once: 40 requests, within PostgreSQL's pool of 10
PAIRS = 200
LOGOUTS = 50


class Gates:
    """Per-pair server-side meeting points, created on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._barriers: dict[int, threading.Barrier] = {}
        self._events: dict[str, threading.Event] = {}

    def barrier(self, pair: int) -> threading.Barrier:
        with self._lock:
            return self._barriers.setdefault(pair, threading.Barrier(2))

    def event(self, name: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(name, threading.Event())

    def release_all(self) -> None:
        """Never leave a view waiting (a failed run)."""
        with self._lock:
            for barrier in self._barriers.values():
                barrier.abort()
            for event in self._events.values():
                event.set()


def _gates() -> Gates:
    gates: Gates = current_app.extensions["pair_gates"]
    return gates


def pairs_app(mode: str, folder: Path, cleanup: ExitStack) -> Flask:
    """The app in ``mode``: /seed, /pair (set a or b, or pop seed), /login, /slow, /logout,
    /dump. ``FakeClock``: nothing expires during a run."""
    app = mode_app(mode, FakeClock(), folder, cleanup)
    gates = app.extensions["pair_gates"] = Gates()
    cleanup.callback(gates.release_all)

    @app.post("/seed/<int:pair>")
    def seed(pair: int) -> str:
        session["seed"] = pair
        return "ok"

    @app.post("/pair/<int:pair>/<op>")
    def pair_write(pair: int, op: str) -> str:
        session.get("seed")  # load the session now
        _gates().barrier(pair).wait(TIMEOUT)  # the other request of the pair has loaded too
        if (op == "a") == (pair % 2 == 0):
            time.sleep(DELAY)
        if op == "pop":
            session.pop("seed")
        else:
            session[op] = pair
        return "ok"

    @app.post("/login/<int:pair>")
    def login(pair: int) -> str:
        session["user"] = f"user{pair}"
        return "ok"

    @app.post("/slow/<int:pair>")
    def slow(pair: int) -> str:
        session.get("user")  # load the session before the logout
        _gates().event(f"loaded:{pair}").set()
        _gates().event(f"go:{pair}").wait(TIMEOUT)  # the logout has answered
        session["cart"] = "apple"
        return "ok"

    @app.post("/logout")
    def logout() -> str:
        session.destroy()
        return "bye"

    @app.get("/dump")
    def dump() -> dict[str, Any]:
        return dict(session)

    return app


def session_cookie(headers: Any, cookie: str | None) -> str | None:
    """The session cookie a browser holds after a response's ``Set-Cookie`` headers."""
    for header in headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        if name != "session":
            continue
        value = rest.split(";", 1)[0]
        lowered = header.lower()
        expired = "expires=thu, 01 jan 1970" in lowered or "max-age=0" in lowered
        cookie = None if expired or not value else value
    return cookie


def dump(port: int, cookie: str | None) -> dict[str, Any]:
    status, _, body = call(port, "GET", "/dump", cookie)
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


def _in_waves(count: int, job: Callable[[int], None]) -> None:
    """``job(i)`` for i in range(count), on threads, ``WAVE`` at a time."""
    for start in range(0, count, WAVE):
        threads = [threading.Thread(target=job, args=(i,))
                   for i in range(start, min(start + WAVE, count))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)


@dataclass
class Counts:
    """What one kind of case gave: ``lost`` as the browser sees it (the cookie it holds
    after the responses, in the order they arrived), ``lost_in_store`` with the cookie
    the surviving writer's response handed back (the writes the store kept)."""

    tried: int = 0
    lost: list[int] = field(default_factory=list)  # the pairs (or logouts) lost
    lost_in_store: list[int] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # every status but the final dumps'


def run_pairs(port: int, count: int = PAIRS) -> dict[str, Counts]:
    """``count`` pairs of overlapping writes, each on its own session, every third emptying it.

    Returns counts per kind: ``"a+b"`` (two keys set) and ``"pop+b"`` (one empties the
    session, the other sets ``b``).
    """
    counts = {"a+b": Counts(), "pop+b": Counts()}
    lock = threading.Lock()

    def pair(number: int) -> None:
        status, headers, _ = call(port, "POST", f"/seed/{number}")
        cookie = session_cookie(headers, None)
        kind = "pop+b" if number % 3 == 2 else "a+b"
        ops = kind.split("+")
        expected = {"b": number} if kind == "pop+b" else {"seed": number, "a": number, "b": number}
        barrier = threading.Barrier(2)
        arrived: list[tuple[str, int, Any]] = []  # (op, status, headers), in arrival order

        def send(op: str) -> None:
            barrier.wait(TIMEOUT)
            status, headers, _ = call(port, "POST", f"/pair/{number}/{op}", cookie)
            with lock:
                arrived.append((op, status, headers))

        threads = [threading.Thread(target=send, args=(op,)) for op in ops]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
        held = cookie
        for _, _, response_headers in arrived:
            held = session_cookie(response_headers, held)
        kept = dump(port, held) if held else {}
        writer = cookie
        for op, _, response_headers in arrived:
            if op == "b":
                writer = session_cookie(response_headers, cookie)
        stored = dump(port, writer) if writer else {}
        with lock:
            counts[kind].tried += 1
            counts[kind].statuses += [status, *(s for _, s, _ in arrived)]
            if kept != expected:
                counts[kind].lost.append(number)
            if stored != expected:
                counts[kind].lost_in_store.append(number)

    _in_waves(count, pair)
    return counts


def run_logouts(app: Flask, port: int, count: int = LOGOUTS) -> Counts:
    """``count`` logouts, each answered while a slow writer on the same session waits."""
    counts = Counts()
    lock = threading.Lock()
    gates: Gates = app.extensions["pair_gates"]

    def logout(number: int) -> None:
        status, headers, _ = call(port, "POST", f"/login/{number}")
        old = session_cookie(headers, None)
        slow: list[Any] = []
        thread = threading.Thread(target=lambda: slow.append(
            call(port, "POST", f"/slow/{number}", old)))
        thread.start()
        gates.event(f"loaded:{number}").wait(TIMEOUT)
        bye, bye_headers, _ = call(port, "POST", "/logout", old)
        gates.event(f"go:{number}").set()
        thread.join(TIMEOUT)
        slow_status, slow_headers, _ = slow[0] if slow else (0, None, "")
        resurrected = (old is None or dump(port, old) != {}
                       or session_cookie(bye_headers, old) is not None
                       or slow_headers is None or slow_headers.get_all("Set-Cookie"))
        with lock:
            counts.tried += 1
            counts.statuses += [status, bye, slow_status]
            if resurrected:
                counts.lost.append(number)

    _in_waves(count, logout)
    return counts


def main() -> None:  # pragma: no cover - a measuring script
    import tempfile

    print(f"{'store':10} {'kind':7} {'tried':>6} {'lost':>5} {'lost in store':>14}"
          f" {'non-200':>8} {'s':>6}")
    for mode in SERVER_MODES:
        with ExitStack() as cleanup, tempfile.TemporaryDirectory() as folder:
            app = pairs_app(mode, Path(folder), cleanup)
            with serving(app) as port:
                began = time.monotonic()
                kinds = run_pairs(port)
                kinds["logout"] = run_logouts(app, port)
                took = time.monotonic() - began
        for kind, counts in kinds.items():
            bad = sum(s != 200 for s in counts.statuses)
            store = "-" if kind == "logout" else str(len(counts.lost_in_store))
            print(f"{mode:10} {kind:7} {counts.tried:6} {len(counts.lost):5} {store:>14}"
                  f" {bad:8} {took:6.2f}")


if __name__ == "__main__":  # pragma: no cover
    main()
