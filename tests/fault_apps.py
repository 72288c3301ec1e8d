"""The app and server the fault tests and :mod:`tests.fault_harness` run: a threaded werkzeug
server on 127.0.0.1, a login per client, and a route that reads and writes its session on every
request; PostgreSQL reached through a :class:`~tests.faults.FaultProxy`."""

from __future__ import annotations

import gc
import http.client
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, session
from werkzeug.serving import make_server

from satchel import Satchel
from tests.services import LOOPBACK, POSTGRES_URL, postgres_store


def build_app(url: str, timeout: float | None) -> Flask:
    """The app on store ``url`` with ``SATCHEL_STORE_TIMEOUT = timeout`` (None: the default).

    ``POST /login/<n>`` logs client ``n`` in; ``GET /me/<n>`` answers 410 if the session is not
    client ``n``'s, else adds one to its ``hits`` (200); ``GET /hits/<n>`` answers them.
    """
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k" * 32, SATCHEL_STORE=url)
    if timeout is not None:
        app.config["SATCHEL_STORE_TIMEOUT"] = timeout
    Satchel(app)

    @app.post("/login/<int:number>")
    def login(number: int) -> str:
        session["n"] = number
        return "in"

    @app.get("/me/<int:number>")
    def me(number: int) -> tuple[str, int]:
        if session.get("n") != number:
            return "lost", 410
        session["hits"] = session.get("hits", 0) + 1  # a write on every request
        return "ok", 200

    @app.get("/hits/<int:number>")
    def hits(number: int) -> tuple[str, int]:
        if session.get("n") != number:
            return "lost", 410
        return str(session.get("hits", 0)), 200

    return app


@contextmanager
def serving(app: Flask) -> Iterator[int]:
    """Serve ``app`` on a free 127.0.0.1 port, a thread per request; yields the port."""
    server = make_server(LOOPBACK, 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(10)


@contextmanager
def serving_apart(url: str, timeout: float | None) -> Iterator[int]:
    """:func:`build_app` served by another process (``python -m tests.fault_apps``), so that
    the clients measuring it do not share its interpreter lock; yields the port."""
    args = [sys.executable, "-m", "tests.fault_apps", url, "" if timeout is None else str(timeout)]
    server = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("port "):
            raise RuntimeError(f"the app server did not start: {line!r}")
        yield int(line.split()[1])
    finally:
        server.terminate()
        server.wait(30)


def call(port: int, method: str, path: str, cookie: str | None) -> tuple[int, str | None]:
    """One request on a new connection: its status and the ``name=value`` of its Set-Cookie."""
    return fetch(port, method, path, cookie)[:2]  # type: ignore[return-value]


def fetch(port: int, method: str, path: str,
          cookie: str | None) -> tuple[int, str | None, bytes]:
    """One request on a new connection: its status, Set-Cookie's ``name=value``, and body."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=60)
    try:
        conn.request(method, path, headers={"Cookie": cookie} if cookie else {})
        response = conn.getresponse()
        body = response.read()
        set_cookie = response.getheader("Set-Cookie")
        return response.status, set_cookie.split(";", 1)[0] if set_cookie else None, body
    finally:
        conn.close()


def postgres_target() -> tuple[str, int]:
    """The test PostgreSQL server's (host, port); skips, or fails under CI, without one."""
    from psycopg.conninfo import conninfo_to_dict

    with postgres_store():  # skips, or fails under CI, without a server
        pass
    params = conninfo_to_dict(POSTGRES_URL)
    return str(params.get("host") or LOOPBACK), int(params.get("port") or 5432)


def proxied_postgres_url(port: int) -> str:
    """The test database's URL through a proxy on ``port``, its connections named
    ``satchel-faults`` (for ``pg_terminate_backend``)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(POSTGRES_URL)
    params.update(host=LOOPBACK, port=str(port), application_name="satchel-faults")
    return "postgresql://?" + make_conninfo(**params).replace(" ", "&")


def main() -> None:
    """Serve :func:`build_app` for ``argv[1]`` (the URL) and ``argv[2]`` (the timeout, or
    empty) on a free 127.0.0.1 port; print ``port N``; serve until terminated."""
    for noisy in ("werkzeug", "satchel", "psycopg", "psycopg.pool"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    timeout = float(sys.argv[2]) if sys.argv[2] else None
    app = build_app(sys.argv[1], timeout)
    server = make_server(LOOPBACK, 0, app, threaded=True)
    # What start-up made (the modules of Flask, the drivers, satchel: some 57,000 objects)
    # is left out of the cycle collector's full passes, as a pre-fork server that preloads
    # the app and calls gc.freeze() leaves it: each pass took 25-35 ms here, a pause of every
    # request thread that is the interpreter's, not the 503 path's the harness measures.
    gc.collect()
    gc.freeze()
    print(f"port {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
