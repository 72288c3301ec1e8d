"""RedisStore's own cost: ``load`` and ``update`` next to one raw redis-py round trip each.

Each store call is one round trip, so the floor under it is the bare driver
call that carries the same bytes (the store is timed on its kept connections,
the default, and through ``client.execute_command``, as the raw calls are):

- ``store.load``   vs ``client.get`` of the same key (what ``load`` sends);
- ``store.update`` vs ``client.evalsha`` of the same script with the same
  arguments, captured from one ``store.update`` call and replayed as the bytes
  that went on the wire (so formatting the timestamps counts as the store's work).

A raw ``GET`` and ``SET`` of a 64-byte value are shown for scale. Runs are
interleaved and each call reports its fastest run (see ``bench/timing.py``).
The keys live
under a random prefix and are deleted at the end.

    python bench/redis_store.py                 # about half a minute
    python bench/redis_store.py --quick         # a smoke run, figures not meaningful
    SATCHEL_TEST_REDIS_URL=redis://127.0.0.1:6380/0 python bench/redis_store.py
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from timing import fastest_interleaved

from satchel.store import Patch, Record
from satchel.stores.redis import RedisStore

REDIS_URL = os.environ.get("SATCHEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# A typical logged-in session: a user id, a CSRF token, a small cart, Flask-Login's marker.
FIELDS = {"_user_id": b'"42"', "csrf_token": b'"' + b"t" * 40 + b'"',
          "cart": b"[101,205,333]", "_fresh": b"true"}


def _capture_evalsha(client: redis.Redis, call: Callable[[], Any]) -> tuple[Any, ...]:
    """The EVALSHA arguments ``call`` sends through ``client`` (sent for real, too)."""
    sent: list[tuple[Any, ...]] = []
    original = client.execute_command

    def spy(*args: Any, **options: Any) -> Any:
        if str(args[0]).upper() == "EVALSHA":
            sent.append(args[1:])
        return original(*args, **options)  # type: ignore[no-untyped-call]

    client.execute_command = spy  # type: ignore[method-assign]
    try:
        call()
    finally:
        del client.execute_command
    if len(sent) != 1:
        raise RuntimeError(f"expected one EVALSHA from store.update, saw {len(sent)}")
    sha, numkeys, *rest = sent[0]
    return (sha, numkeys, *map(_wire, rest))


def _wire(arg: Any) -> bytes:
    """``arg`` as redis-py sends it: bytes as they are, str as UTF-8, numbers as their repr."""
    if isinstance(arg, bytes):
        return arg
    return (arg if isinstance(arg, str) else repr(arg)).encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few calls")
    parser.add_argument("--seconds", type=float, default=0.03,
                        help="length of one timed run of one call")
    parser.add_argument("--repeats", type=int, default=25,
                        help="timed runs per call (the fastest counts)")
    args = parser.parse_args(argv)
    seconds, repeats = (0.002, 3) if args.quick else (args.seconds, args.repeats)

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.RedisError as err:
        print(f"no Redis at SATCHEL_TEST_REDIS_URL={REDIS_URL!r}: {err}", file=sys.stderr)
        return 1
    prefix = f"satchel-bench:{uuid.uuid4().hex}:"
    try:
        store = RedisStore(client, prefix=prefix)
        via_client = RedisStore(client, prefix=prefix, keep_connections=False)
        key = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
        name = store._names.of(key)
        now = time.time()
        store.create(key, Record(dict(FIELDS), now, now, now + 3600, permanent=True, user="42"))
        patch = Patch(set={"cart": b"[101,205,333,412]"}, last_seen=now,
                      expires_at=now + 3600)
        via_client.update(key, patch)  # loads the script: the captured call is one EVALSHA
        evalsha = _capture_evalsha(client, lambda: via_client.update(key, patch))
        raw_key = prefix + "raw"
        client.set(raw_key, b"x" * 64)
        calls: dict[str, Callable[[], Any]] = {
            "raw GET": lambda: client.get(raw_key),
            "raw SET": lambda: client.set(raw_key, b"x" * 64),
            "raw GET key": lambda: client.get(name),
            "store.load": lambda: store.load(key),
            "  via client": lambda: via_client.load(key),
            "raw EVALSHA": lambda: client.evalsha(*evalsha),
            "store.update": lambda: store.update(key, patch),
            "  via client ": lambda: via_client.update(key, patch),
        }
        assert store.load(key) is not None and store.update(key, patch)
        best = fastest_interleaved(calls, seconds=seconds, repeats=repeats)
        conn = client.connection_pool.get_connection()
        parser_name = type(conn._parser).__name__  # hiredis or not
        client.connection_pool.release(conn)
    finally:
        for stale in list(client.scan_iter(match=prefix + "*", count=1000)):
            client.delete(stale)
        client.close()

    print(f"per-call time in µs (fastest of {repeats} interleaved runs of ~{seconds}s each);"
          f" redis-py {redis.__version__}, parser {parser_name}, {len(FIELDS)}-field session")
    for label, seconds in best.items():
        print(f"  {label:<14} {seconds * 1e6:8.1f}")
    print("ratios (1.00 = no cost beyond the driver's round trip):")
    for store_call, raw in (("store.load", "raw GET key"), ("  via client", "raw GET key"),
                            ("store.update", "raw EVALSHA"), ("  via client ", "raw EVALSHA")):
        print(f"  {store_call:<12} / {raw:<11} {best[store_call] / best[raw]:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
