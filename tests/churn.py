"""Build and drop Flask apps on one ``SATCHEL_STORE`` URL; report what the process holds.

    python -W error -m tests.churn URL COUNT

Each app writes a session in one request (and deletes it in a second, so the run leaves no
data behind), then is dropped and ``gc.collect()`` runs. Prints
one JSON object: after the first app, after the tenth, and after the last, the process's
thread count, its open file descriptors, and the server's connections that are this run's.
"This run's" is told by name: a PostgreSQL URL's ``application_name``, a Redis URL's
``client_name``; an observer connection of another name counts them. An SQLite URL has no
server: its counts are ``null``.

Run by tests/test_resources.py, in a process of its own so that anything printed as
"Exception ignored in ..." (an error in a ``__del__``) shows on stderr.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import Flask, session

from satchel import Satchel

MARKS = (1, 10)  # counts are taken after these apps, and after the last


def server_count(url: str) -> tuple[Callable[[], int], Callable[[], None]]:
    """A function counting the server's connections named as ``url`` names them, and a closer."""
    query = parse_qs(urlsplit(url).query)
    if url.startswith("postgres"):
        import psycopg

        name = query["application_name"][0]
        observer = psycopg.connect(url.split("?")[0], autocommit=True,
                                   application_name="satchel-churn-observer")

        def count() -> int:
            row = observer.execute("SELECT count(*) FROM pg_stat_activity"
                                   " WHERE application_name = %s", (name,)).fetchone()
            return int(row[0]) if row else 0

        return count, observer.close
    if url.startswith("redis"):
        import redis

        name = query["client_name"][0]
        plain = url.split("?")[0].replace("redis+cluster://", "redis://")
        admin = redis.Redis.from_url(plain)

        def count() -> int:
            return sum(client.get("name") == name for client in admin.client_list())

        return count, admin.close
    return (lambda: -1), (lambda: None)


def one_app(url: str, number: int) -> None:
    app = Flask(f"churn{number}")
    app.config.update(SECRET_KEY="churn secret " * 4, SATCHEL_STORE=url)
    Satchel(app)

    @app.post("/")
    def write() -> str:
        session["n"] = number
        return "ok"

    @app.delete("/")
    def end() -> str:
        session.clear()  # an emptied session's record is deleted: the run leaves no data behind
        return "ok"

    client = app.test_client()
    response = client.post("/")
    assert response.status_code == 200, response.status_code
    assert "session=" in response.headers.get("Set-Cookie", "")
    assert client.delete("/").status_code == 200


def main(url: str, count: int) -> dict[str, Any]:
    server, close = server_count(url)
    counts: dict[str, Any] = {}
    try:
        for number in range(1, count + 1):
            one_app(url, number)
            gc.collect()
            if number == 1:  # what is left now (modules, imports) is not scanned again: faster
                gc.freeze()
            if number in MARKS or number == count:
                counts[str(number)] = {
                    "threads": threading.active_count(),
                    "fds": len(os.listdir("/proc/self/fd")),
                    "server": None if server() < 0 else server(),
                }
    finally:
        close()
    return counts


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
