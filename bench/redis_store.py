"""RedisStore's own cost: ``load`` and ``update`` next to one raw redis-py round trip each.

Each store call is one round trip, so the floor under it is the bare driver
call that carries the same bytes (the store is timed on its kept connections,
the default, and through ``client.execute_command``, as the raw calls are):

- ``store.load``   vs ``client.hgetall`` of the same hash (what ``load`` sends);
- ``store.update`` vs ``client.evalsha`` of the same script with the same
  arguments, captured from one ``store.update`` call and replayed as the bytes
  that went on the wire (so formatting the timestamps counts as the store's work).

A raw ``GET`` and ``SET`` of a 64-byte value are shown for scale. Calls are
timed in batches; the batches of all contenders are interleaved and each
contender's fastest batch is reported (noise only adds time). The keys live
under a random prefix and are deleted at the end.

    python bench/redis_store.py                 # about half a minute
    python bench/redis_store.py --quick         # a smoke run, figures not meaningful
    SATCHEL_TEST_REDIS_URL=redis://127.0.0.1:6380/0 python bench/redis_store.py
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

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


def _batch(call: Callable[[], Any], count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        call()
    return (time.perf_counter() - start) / count


def measure(calls: dict[str, Callable[[], Any]], *, batch: int, rounds: int) -> dict[str, float]:
    """Fastest per-call seconds of each call over ``rounds`` interleaved batches."""
    best = {name: float("inf") for name in calls}
    names = list(calls)
    for call in calls.values():  # warm up connections, script cache, code paths
        _batch(call, max(10, batch // 10))
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(rounds):
            order = names[i % len(names):] + names[:i % len(names)]  # rotate who goes first
            for name in order:
                best[name] = min(best[name], _batch(calls[name], batch))
    finally:
        if gc_was_enabled:
            gc.enable()
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few calls")
    parser.add_argument("--batch", type=int, default=300, help="calls per timed batch")
    parser.add_argument("--rounds", type=int, default=25, help="interleaved batches per call")
    args = parser.parse_args(argv)
    batch, rounds = (20, 3) if args.quick else (args.batch, args.rounds)

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
        name = f"{prefix}{{{key}}}".encode()
        now = time.time()
        store.create(key, Record(dict(FIELDS), now, now, now + 3600, permanent=True, user="42"))
        patch = Patch(set={"cart": b"[101,205,333,412]"}, last_seen=now,
                      expires_at=now + 3600)
        evalsha = _capture_evalsha(client, lambda: via_client.update(key, patch))
        raw_key = prefix + "raw"
        client.set(raw_key, b"x" * 64)
        calls: dict[str, Callable[[], Any]] = {
            "raw GET": lambda: client.get(raw_key),
            "raw SET": lambda: client.set(raw_key, b"x" * 64),
            "raw HGETALL": lambda: client.hgetall(name),
            "store.load": lambda: store.load(key),
            "  via client": lambda: via_client.load(key),
            "raw EVALSHA": lambda: client.evalsha(*evalsha),
            "store.update": lambda: store.update(key, patch),
            "  via client ": lambda: via_client.update(key, patch),
        }
        assert store.load(key) is not None and store.update(key, patch)
        best = measure(calls, batch=batch, rounds=rounds)
        conn = client.connection_pool.get_connection()
        parser_name = type(conn._parser).__name__  # hiredis or not
        client.connection_pool.release(conn)
    finally:
        for stale in list(client.scan_iter(match=prefix + "*", count=1000)):
            client.delete(stale)
        client.close()

    print(f"per-call time in µs (fastest of {rounds} interleaved batches of {batch});"
          f" redis-py {redis.__version__}, parser {parser_name}, {len(FIELDS)}-field session")
    for label, seconds in best.items():
        print(f"  {label:<14} {seconds * 1e6:8.1f}")
    print("ratios (1.00 = no cost beyond the driver's round trip):")
    for store_call, raw in (("store.load", "raw HGETALL"), ("  via client", "raw HGETALL"),
                            ("store.update", "raw EVALSHA"), ("  via client ", "raw EVALSHA")):
        print(f"  {store_call:<12} / {raw:<11} {best[store_call] / best[raw]:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
