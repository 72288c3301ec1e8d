"""Parallel same-key adds through a real threaded HTTP server, with and without ``@session_lock``.

A werkzeug server (``make_server``, a thread per request) on a free port of
127.0.0.1 runs a cart app; real HTTP clients (``http.client``, one thread
each) send N "add to cart" requests at once with one session cookie. Each
request reads the ``cart`` key, waits ``DELAY`` s (a product lookup), and
writes the cart back with its item added: per-key merge cannot keep them
all, a session lock must.

    .venv/bin/python -m tests.lock_harness    # prints adds tried and lost, per store

``tests/test_session_lock_parallel.py`` runs the locked case in ``make test``.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from flask import Flask, session
from werkzeug.serving import WSGIRequestHandler, make_server

from satchel import session_lock
from tests.clock import FakeClock
from tests.modes import SERVER_MODES, mode_app

HOST = "127.0.0.1"
DELAY = 0.002  # seconds between reading the cart and writing it back
TIMEOUT = 60


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def cart_app(mode: str, folder: Path, cleanup: ExitStack, *, locked: bool) -> Flask:
    """The cart app in ``mode``: /start (an empty cart), /add/<item>, /cart."""
    app = mode_app(mode, FakeClock(), folder, cleanup)

    @app.post("/start")
    def start() -> str:
        session["cart"] = []
        return "ok"

    def add(item: int) -> str:
        cart = session["cart"]
        time.sleep(DELAY)
        session["cart"] = [*cart, item]
        return "ok"

    app.post("/add/<int:item>")(session_lock(add) if locked else add)

    @app.get("/cart")
    def cart() -> dict[str, Any]:
        return {"cart": session.get("cart")}

    return app


@contextmanager
def serving(app: Flask) -> Iterator[int]:
    """Serve ``app`` on a free loopback port, a thread per request; yield the port."""
    server = make_server(HOST, 0, app, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


def call(port: int, method: str, path: str, cookie: str | None = None) -> tuple[int, Any, str]:
    """One HTTP request on its own connection: (status, headers, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT)
    try:
        conn.request(method, path, headers={"Cookie": f"session={cookie}"} if cookie else {})
        response = conn.getresponse()
        return response.status, response.headers, response.read().decode()
    finally:
        conn.close()


def parallel_adds(port: int, count: int) -> tuple[list[int], list[int]]:
    """Start a cart, send ``count`` adds at once; (the statuses, the items the cart kept)."""
    status, headers, _ = call(port, "POST", "/start")
    assert status == 200
    cookie = headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1]
    barrier = threading.Barrier(count)
    statuses: list[int] = [0] * count

    def add(item: int) -> None:
        barrier.wait(TIMEOUT)
        statuses[item] = call(port, "POST", f"/add/{item}", cookie)[0]

    threads = [threading.Thread(target=add, args=(item,)) for item in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    _, _, body = call(port, "GET", "/cart", cookie)
    return statuses, json.loads(body)["cart"]


def main() -> None:  # pragma: no cover - a measuring script
    import tempfile

    print(f"{'store':10} {'lock':5} {'adds':>5} {'200':>5} {'kept':>5} {'lost':>5} {'s':>6}")
    for mode in SERVER_MODES:
        for locked in (False, True):
            for count in (8, 50):
                with ExitStack() as cleanup, tempfile.TemporaryDirectory() as folder:
                    app = cart_app(mode, Path(folder), cleanup, locked=locked)
                    with serving(app) as port:
                        began = time.monotonic()
                        statuses, cart = parallel_adds(port, count)
                        took = time.monotonic() - began
                ok = statuses.count(200)
                print(f"{mode:10} {'yes' if locked else 'no':5} {count:5} {ok:5} {len(cart):5}"
                      f" {count - len(cart):5} {took:6.2f}")


if __name__ == "__main__":  # pragma: no cover
    main()
