"""Redis memory per session: satchel's RedisStore next to Flask-Session's Redis backend.

Starts its own ``redis-server`` on a free 127.0.0.1 port with Redis's default settings
(only ``--save ""`` and ``--appendonly no``, so nothing goes to disk; neither changes how
keys are stored), so the figures are the defaults' and no other client disturbs INFO.
Each contender is a Flask app whose login route stores the same payload::

    {"user": 12345, "cart": [{"sku": "SKU-000001", "qty": 1}, ... x 3]}

and is driven through Flask's test client, ``--sessions`` times (one new session each).
Per session, two figures:

- ``MEMORY USAGE`` of a session's key (key, value, the dict entry; averaged over a sample);
- the growth of ``INFO memory``'s ``used_memory`` over all sessions, divided by their number
  (everything the server spends: the keys' expiry entries, hash-table growth, ...).

and, to show where they go, the length of a key's name and of its value (``STRLEN``), in bytes:
the allocator rounds each up to its size class (jemalloc: 48, 56, 64, 80, 96, 112, 128, ...),
so a few bytes more can cost a class more.

The ratio is satchel's bytes over Flask-Session's (the goal: at most 1.0).

    python bench/redis_memory.py                     # 10,000 sessions each, ~30 s
    python bench/redis_memory.py --sessions 1000     # quicker
    python bench/redis_memory.py --server /path/to/valkey-server
    python bench/redis_memory.py --config hash-max-listpack-value=128   # not the default
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from flask import Flask, session
from redis.backoff import NoBackoff
from redis.retry import Retry

from satchel import Satchel
from satchel.stores.redis import RedisStore

HOST = "127.0.0.1"
SECRET = "bench-secret-key-of-a-sensible-length-0123456789"
CART = [{"sku": f"SKU-{n:06d}", "qty": n} for n in (1, 2, 3)]
SAMPLE = 200  # keys MEMORY USAGE is asked about, per contender


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def redis_server(binary: str, config: list[str]) -> Iterator[redis.Redis]:
    """A client of a fresh server started from ``binary`` on a free loopback port, with
    Redis's defaults but for ``config`` (``name=value`` items); stopped on exit."""
    port = _free_port()
    folder = tempfile.mkdtemp(prefix="satchel-redis-memory-")
    args = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", folder]
    for item in config:
        name, _, value = item.partition("=")
        args += ["--" + name, value]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # No retries, as satchel advises (a retry waits the timeout again); RedisStore warns else.
    client = redis.Redis(host=HOST, port=port, socket_timeout=10,
                         retry=Retry(NoBackoff(), 0))
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"{binary} did not start on port {port}") from None
                time.sleep(0.05)
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def _app(name: str) -> Flask:
    app = Flask(name)
    app.config["SECRET_KEY"] = SECRET

    @app.get("/login")
    def login() -> str:
        session["user"] = 12345
        session["cart"] = CART
        return "ok"

    return app


def satchel_app(client: redis.Redis, *, record_device: bool = True) -> Flask:
    app = _app("satchel")
    app.config["SATCHEL_RECORD_DEVICE"] = record_device
    Satchel(app, store=RedisStore(client, prefix="satchel:"))
    return app


def satchel_without_device(client: redis.Redis) -> Flask:
    """satchel with ``SATCHEL_RECORD_DEVICE = False``: the user agent and address a session
    records for ``sessions_of`` (27 bytes here) is what it stores beyond Flask-Session."""
    return satchel_app(client, record_device=False)


def flask_session_app(client: redis.Redis) -> Flask:
    from flask_session import Session

    app = _app("flask_session")
    app.config.update(SESSION_TYPE="redis", SESSION_REDIS=client)  # prefix "session:"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Session(app)
    return app


def _used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def login(app: Flask) -> None:
    """One new session in ``app``, by its login route."""
    with app.test_client() as browser:
        if browser.get("/login").status_code != 200:
            raise SystemExit(f"{app.name}: the login route failed")


def measure(client: redis.Redis, build: Callable[[redis.Redis], Flask], prefix: str,
            sessions: int) -> dict[str, Any]:
    """Bytes per session of the app ``build`` makes: MEMORY USAGE and used_memory growth.

    One session is made first, outside the count: what a server spends once, not per
    session (a Lua script's body in the script cache, a client's buffers), is then not
    spread over the sessions counted."""
    app = build(client)
    login(app)
    before_keys = client.dbsize()
    before = _used(client)
    for _ in range(sessions):
        login(app)
    grown = _used(client) - before
    names = [n for n in client.scan_iter(match=prefix + "*", count=1000)][:SAMPLE]
    usage = [int(client.memory_usage(n, samples=0) or 0) for n in names]
    values = [int(client.strlen(n)) for n in names]
    return {"keys": client.dbsize() - before_keys, "usage": sum(usage) / len(usage),
            "key_bytes": sum(map(len, names)) / len(names),
            "value_bytes": sum(values) / len(values),
            "used": grown / sessions, "type": client.type(names[0]).decode(),
            "encoding": client.object("encoding", names[0]).decode()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--server", default=shutil.which("redis-server") or "redis-server",
                        help="the redis-server (or valkey-server) binary to start")
    parser.add_argument("--config", action="append", default=[],
                        help="name=value: a setting other than the default (repeatable)")
    args = parser.parse_args()
    with redis_server(args.server, args.config) as client:
        version = client.info("server").get("redis_version")
        rows = {}
        for name, build, prefix in (("flask-session", flask_session_app, "session:"),
                                    ("satchel", satchel_app, "satchel:"),
                                    ("satchel, no device", satchel_without_device, "satchel:")):
            rows[name] = measure(client, build, prefix, args.sessions)
            client.flushall()  # our own server
            time.sleep(0.2)
    print(f"{args.server} {version}, {args.sessions} sessions each,"
          f" settings: {' '.join(args.config) or 'defaults'}")
    print(f"{'':20}{'MEMORY USAGE':>14}{'used_memory':>14}  {'keys':>6}  {'key':>6}"
          f"  {'value':>6}  type/encoding")
    for name, row in rows.items():
        print(f"{name:20}{row['usage']:>12.0f} B{row['used']:>12.0f} B  {row['keys']:>6}"
              f"  {row['key_bytes']:>4.0f} B  {row['value_bytes']:>4.0f} B"
              f"  {row['type']}/{row['encoding']}")
    fs = rows["flask-session"]
    for name in ("satchel", "satchel, no device"):
        ours = rows[name]
        print(f"{'ratio, ' + name:20}{ours['usage'] / fs['usage']:>13.2f}x"
              f"{ours['used'] / fs['used']:>13.2f}x  (/ Flask-Session; goal <= 1.00)")


if __name__ == "__main__":
    sys.exit(main())
