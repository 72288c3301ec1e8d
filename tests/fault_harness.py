"""Long store faults under a real threaded server, with the library's own timeout: the bounds.

``tests/test_store_faults.py`` (in ``make test``) checks the behaviour in short faults with a
short timeout. This harness checks the timing goals of issue 11 as they are stated, with
``SATCHEL_STORE_TIMEOUT`` left at its default (3 s) unless ``--timeout`` says otherwise, each
fault lasting ``--seconds`` (30): Redis SIGSTOPped, stalled by a proxy, killed; PostgreSQL
stalled by a proxy, refusing connections; every node of a Redis Cluster SIGSTOPped;
SQLite's folder moved away. Twelve clients, each
logged in before the fault, keep sending requests that read and write their session. For each
fault it prints, and checks (the app runs in a process of its own, a threaded werkzeug server,
so the clients' timing is not the server's interpreter lock's; both processes keep what they
made before the clients start out of the cycle collector's full passes, ``gc.freeze()``, so
that a pass over every module's objects, 25-35 ms here, is not counted as a slow 503):

- every answer is 200 or 503 (never a 500), and none takes longer than the bound plus 1 s;
- once a first request has failed, the 503s to requests sent after it come back in under
  100 ms, 99 % of them, and every one in under half the bound (1.5 s): the breaker's
  patience is 40 ms, and a busy machine's scheduler holds a few of some 6,000 past 100 ms,
  none near the 3 s a request waiting out the timeout would take (requests already
  waiting on the store when it fell wait for the bound: counted apart, as "in flight");
- the first request sent after the fault ends succeeds (it ends once the store answers a
  new client again, as a restarted Redis answering PING);
- no session and no acknowledged write is lost: each client's ``hits`` afterwards is at least
  the number of its requests that got a 200 (a write that timed out may still land: more is
  fine).

Then, for each store, the app starts while the store is down: ``Satchel(app)`` returns, a
session route answers 503, and the first request once the store is up succeeds.

    .venv/bin/python -m tests.fault_harness                  # every fault (about 5 minutes)
    .venv/bin/python -m tests.fault_harness --only redis     # the Redis ones
    PYTHONPATH=.ci-redis-5.3 .venv/bin/python -m tests.fault_harness --only redis  # redis-py 5.3

It exits 1 if a check fails. Run by ``make faults`` and ``.ci/run``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from satchel import Satchel
from satchel.urls import DEFAULT_STORE_TIMEOUT
from tests.fault_apps import (
    build_app,
    call,
    fetch,
    postgres_target,
    proxied_postgres_url,
    serving,
    serving_apart,
)
from tests.faults import FaultProxy, Load, OwnRedis

CLIENTS = 12
FAST = 0.1  # seconds: a 503 once the store is known to be down...
FAST_SHARE = 0.99  # ...for this share of them; the scheduler of a busy 2-core machine holds a
# few of some 6,000 past it (a CI run: 18, the slowest 0.188 s), none near the bound
# No 503 after the first failure takes half the bound: none waited out the timeout (one did
# 0.645 s on a machine busy with other tests: a probe of its own, slowed down)
NEVER_503_SHARE_OF_BOUND = 0.5
SLACK = 1.0  # seconds past the bound a request may take (the "bound plus 1 s")

# A fault: a context manager yielding (store URL, begin the fault, end it).
Fault = Callable[[], Any]


@contextmanager
def redis_sigstop() -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    server = OwnRedis()
    try:
        yield server.url, server.pause, server.go_on
    finally:
        server.close()


@contextmanager
def redis_killed() -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    server = OwnRedis()
    try:
        yield server.url, server.kill, server.start
    finally:
        server.close()


@contextmanager
def redis_proxy_stall() -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    server = OwnRedis()
    try:
        with FaultProxy(("127.0.0.1", server.port)) as proxy:
            yield f"redis://127.0.0.1:{proxy.port}/0", proxy.stall, proxy.resume
    finally:
        server.close()


@contextmanager
def redis_cluster_all_stopped() -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """A three-primary cluster the harness starts, every node SIGSTOPped at once."""
    from tests.stores.redis_cluster import cluster_nodes

    with cluster_nodes(3) as nodes:
        def pause() -> None:
            for node in nodes:
                node.pause()

        def go_on() -> None:
            for node in nodes:
                node.go_on()

        yield f"redis+cluster://127.0.0.1:{nodes[0].port}", pause, go_on


@contextmanager
def postgres_proxy(fault: str) -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    with FaultProxy(postgres_target()) as proxy:
        begin, end = {"stall": (proxy.stall, proxy.resume),
                      "refuse": (proxy.refuse, proxy.accept)}[fault]
        yield proxied_postgres_url(proxy.port), begin, end


@contextmanager
def sqlite_folder_moved() -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """The database's folder moved away (an unmounted volume, a mistaken ``mv``) and back."""
    top = Path(tempfile.mkdtemp(prefix="satchel-harness-"))
    folder, away = top / "sessions", top / "away"
    folder.mkdir()
    try:
        yield (f"sqlite:///{folder}/sessions.sqlite3", lambda: folder.rename(away),
               lambda: away.rename(folder))
    finally:
        shutil.rmtree(top, ignore_errors=True)


FAULTS: dict[str, Fault] = {
    "redis SIGSTOP": redis_sigstop,
    "redis proxy stall": redis_proxy_stall,
    "redis killed": redis_killed,
    "redis cluster, every node SIGSTOPped": redis_cluster_all_stopped,
    "postgres proxy stall": lambda: postgres_proxy("stall"),
    "postgres proxy refuse": lambda: postgres_proxy("refuse"),
    "sqlite folder moved away": sqlite_folder_moved,
}


@dataclass
class Figures:
    fault: str
    requests: int
    statuses: dict[int, int]
    slowest_s: float
    after_first_503s: int
    after_first_slow: int
    after_first_slowest_s: float
    in_flight: int
    first_after_end: int | None
    recovered_after_s: float | None
    sessions_lost: int
    writes_lost: int
    failures: list[str]


def answering(url: str, end: Callable[[], None]) -> Callable[[], None]:
    """``end``, then a wait (at most 10 s) until a new client of ``url`` gets an answer: the
    fault is over when the store answers again, as a restarted Redis is back once it answers
    PING. After a stall, the bytes a proxy or a stopped server held arrive all at once, and
    the store's own probe, already connecting, answers within the same moment."""
    def ended() -> None:
        end()
        deadline = time.monotonic() + 10
        while not store_answers(url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the store at {url} did not answer within 10 s of the end")
            time.sleep(0.005)
    return ended


def store_answers(url: str) -> bool:
    if url.startswith("postgresql"):
        import psycopg
        try:
            with psycopg.connect(url, connect_timeout=2, autocommit=True) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True
    import redis
    client = redis.Redis.from_url(url.replace("redis+cluster://", "redis://"),
                                  socket_timeout=2, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def run(name: str, fault: Fault, seconds: float, timeout: float | None) -> Figures:
    bound = timeout if timeout is not None else DEFAULT_STORE_TIMEOUT
    with fault() as (url, begin, end), serving_apart(url, timeout) as port:
        if not url.startswith("sqlite"):
            end = answering(url, end)
        cookies = []
        for number in range(CLIENTS):
            status, cookie = call(port, "POST", f"/login/{number}", None)
            if status != 200 or not cookie:
                raise RuntimeError(f"{name}: login {number} got {status}")
            cookies.append(cookie)
        load = Load(lambda n: call(port, "GET", f"/me/{n}", cookies[n])[0], CLIENTS)
        with load.running():
            time.sleep(1.0)
            fault_start = time.monotonic()
            begin()
            time.sleep(seconds)
            end()  # returns once the store answers a new client (see answering)
            fault_end = time.monotonic()
            time.sleep(bound + 2.0)  # what was in flight ends, then normal service
        finals = [fetch(port, "GET", f"/hits/{n}", cookies[n]) for n in range(CLIENTS)]
    during = load.between(fault_start, fault_end)
    failed = [o for o in load.outcomes if o.started >= fault_start and o.status != 200]
    first_failure = min((o.started + o.seconds for o in failed), default=fault_end)
    after_first = [o for o in during if o.started >= first_failure and o.status == 503]
    in_flight = [o for o in load.outcomes
                 if o.started < first_failure < o.started + o.seconds]
    after = sorted((o for o in load.outcomes if o.started >= fault_end), key=lambda o: o.started)
    first_ok = min((o.started + o.seconds for o in after if o.status == 200), default=None)
    acked = Counter(o.client for o in load.outcomes if o.status == 200)
    lost_writes = sum(1 for n, (status, _, body) in enumerate(finals)
                      if status == 200 and int(body) < acked[n])
    figures = Figures(
        fault=name, requests=len(during),
        statuses=dict(Counter(o.status for o in during)),
        slowest_s=round(max(o.seconds for o in load.outcomes), 3),
        after_first_503s=len(after_first),
        after_first_slow=sum(1 for o in after_first if o.seconds >= FAST),
        after_first_slowest_s=round(max((o.seconds for o in after_first), default=0.0), 3),
        in_flight=len(in_flight),
        first_after_end=after[0].status if after else None,
        recovered_after_s=None if first_ok is None else round(first_ok - fault_end, 3),
        sessions_lost=sum(1 for status, _, _ in finals if status != 200),
        writes_lost=lost_writes, failures=[])
    bad = figures.failures
    if set(figures.statuses) - {200, 503}:
        bad.append(f"statuses other than 200 and 503: {figures.statuses}")
    if 503 not in figures.statuses:
        bad.append("the fault was not felt (no 503)")
    if figures.slowest_s > bound + SLACK:
        bad.append(f"a request took {figures.slowest_s} s > {bound} + {SLACK} s")
    if figures.after_first_slow > (1 - FAST_SHARE) * figures.after_first_503s:
        bad.append(f"{figures.after_first_slow} of {figures.after_first_503s} 503s after the"
                   f" first failure took >= {FAST} s (more than {1 - FAST_SHARE:.0%})")
    if figures.after_first_slowest_s >= bound * NEVER_503_SHARE_OF_BOUND:
        bad.append(f"a 503 after the first failure took {figures.after_first_slowest_s} s"
                   f" >= {bound * NEVER_503_SHARE_OF_BOUND:g} s, half the bound")
    if figures.first_after_end != 200:
        bad.append(f"the first request after the fault got {figures.first_after_end}")
    if figures.sessions_lost or figures.writes_lost:
        bad.append(f"lost: {figures.sessions_lost} sessions, {figures.writes_lost} writes")
    return figures


@dataclass
class Start:
    store: str
    started_s: float  # Satchel(app) with the store down
    down_status: int
    down_s: float
    up_status: int  # the first request once the store is up
    failures: list[str]


@contextmanager
def down_redis() -> Iterator[tuple[str, Callable[[], None]]]:
    server = OwnRedis()
    server.kill()
    try:
        yield server.url, server.start
    finally:
        server.close()


@contextmanager
def down_cluster() -> Iterator[tuple[str, Callable[[], None]]]:
    from contextlib import ExitStack

    from tests.stores.redis_cluster import free_ports, redis_cluster

    ports = free_ports(3)
    with ExitStack() as stack:
        yield (f"redis+cluster://127.0.0.1:{ports[0]}",
               lambda: stack.enter_context(redis_cluster(ports=ports)) and None)


@contextmanager
def down_postgres() -> Iterator[tuple[str, Callable[[], None]]]:
    with FaultProxy(postgres_target()) as proxy:
        proxy.refuse()
        yield proxied_postgres_url(proxy.port), proxy.accept


@contextmanager
def down_sqlite() -> Iterator[tuple[str, Callable[[], None]]]:
    folder = Path(tempfile.mkdtemp(prefix="satchel-harness-"))
    missing = folder / "not-mounted-yet"
    try:
        yield f"sqlite:///{missing}/sessions.sqlite3", missing.mkdir
    finally:
        shutil.rmtree(folder, ignore_errors=True)


STARTS: dict[str, Fault] = {
    "redis": down_redis, "redis cluster": down_cluster, "postgres": down_postgres,
    "sqlite (folder missing)": down_sqlite,
}


def start_while_down(name: str, down: Fault, timeout: float | None) -> Start:
    bound = timeout if timeout is not None else DEFAULT_STORE_TIMEOUT
    with down() as (url, bring_up):
        began = time.monotonic()
        try:
            app = build_app(url, timeout)
        except Exception as err:  # the check: it must not raise
            return Start(name, round(time.monotonic() - began, 3), 0, 0.0, 0,
                         [f"start raised {err!r}"])
        started = time.monotonic() - began
        try:
            with serving(app) as port:
                began = time.monotonic()
                down_status = call(port, "POST", "/login/1", None)[0]
                down_s = time.monotonic() - began
                bring_up()
                up_status = call(port, "POST", "/login/1", None)[0]
        finally:
            Satchel.store_of(app).close()  # type: ignore[attr-defined]
    result = Start(name, round(started, 3), down_status, round(down_s, 3), up_status, [])
    if started > bound + SLACK:
        result.failures.append(f"Satchel(app) took {started:.3f} s")
    if down_status != 503:
        result.failures.append(f"a session route got {down_status} while down, not 503")
    if up_status != 200:
        result.failures.append(f"the first request once up got {up_status}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="each fault's length")
    parser.add_argument("--timeout", type=float, default=None,
                        help="SATCHEL_STORE_TIMEOUT (default: the library's, 3 s)")
    parser.add_argument("--only", default="", help="only the cases whose name contains this")
    args = parser.parse_args(argv)
    import redis

    # The tables are the output: not werkzeug's line per request, nor the store's 503 logs.
    for noisy in ("werkzeug", "satchel", "psycopg", "psycopg.pool"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)

    print(f"redis-py {redis.__version__}; each fault {args.seconds:g} s; "
          f"SATCHEL_STORE_TIMEOUT {args.timeout or DEFAULT_STORE_TIMEOUT:g} s; {CLIENTS} clients")
    print("| fault | requests | statuses | slowest | 503s after the first failure (>= 0.1 s;"
          " slowest) | in flight | first after | recovered | sessions / writes lost |")
    print("|---|---|---|---|---|---|---|---|---|")
    failed = []
    for name, fault in FAULTS.items():
        if args.only not in name:
            continue
        f = run(name, fault, args.seconds, args.timeout)
        statuses = ", ".join(f"{k} x{v}" for k, v in sorted(f.statuses.items()))
        print(f"| {f.fault} | {f.requests} | {statuses} | {f.slowest_s} s |"
              f" {f.after_first_503s} ({f.after_first_slow}; {f.after_first_slowest_s} s) |"
              f" {f.in_flight} | {f.first_after_end} | {f.recovered_after_s} s |"
              f" {f.sessions_lost} / {f.writes_lost} |", flush=True)
        failed += [f"{name}: {why}" for why in f.failures]
    print("\n| store down at start | Satchel(app) | while down | first request once up |")
    print("|---|---|---|---|")
    for name, down in STARTS.items():
        if args.only not in name:
            continue
        s = start_while_down(name, down, args.timeout)
        print(f"| {s.store} | {s.started_s} s | {s.down_status} in {s.down_s} s |"
              f" {s.up_status} |", flush=True)
        failed += [f"{name} at start: {why}" for why in s.failures]
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
