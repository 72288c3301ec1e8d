"""The breaker, SATCHEL_STORE_TIMEOUT, the client-side wait bound, and starting while down."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask, session

from satchel import Satchel
from satchel.breaker import Breaker
from satchel.errors import ConfigError, StoreUnavailable
from tests.services import closed_port, need_module


def _enter(breaker: Breaker, probe: Callable[[], None], outcomes: list[str]) -> None:
    """A call through ``breaker``: "through" or "503" appended to ``outcomes``."""
    try:
        breaker.enter(probe)
    except StoreUnavailable:
        outcomes.append("503")
    else:
        outcomes.append("through")


def test_a_healthy_breaker_lets_calls_through_without_probing() -> None:
    breaker = Breaker("store")
    assert not breaker.down


def test_a_probe_that_passes_at_once_closes_it_and_the_call_goes_on() -> None:
    """The first request after the store is back succeeds: its own probe passes."""
    breaker = Breaker("store")
    breaker.trip("ConnectionError: refused")
    probes: list[str] = []
    breaker.enter(lambda: probes.append("ping"))
    assert probes == ["ping"] and not breaker.down
    breaker.enter(lambda: probes.append("none"))  # up: nothing runs
    assert probes == ["ping"]


def test_a_failed_probe_gives_the_caller_its_error_and_the_next_caller_probes_again() -> None:
    breaker = Breaker("store")
    breaker.trip("down")

    def failing() -> None:
        breaker.trip("still down")
        raise StoreUnavailable("still down")

    with pytest.raises(StoreUnavailable, match="still down"):
        breaker.enter(failing)
    assert breaker.down
    breaker.enter(lambda: None)
    assert not breaker.down


def test_a_stalled_probe_does_not_hold_the_caller_and_closes_the_breaker_when_it_passes() -> None:
    """A stalled store: the caller that starts the probe gets its 503 without waiting for it,
    every caller meanwhile fails without starting another, and the probe, once it passes,
    lets the next call through."""
    breaker = Breaker("<Store x>")
    breaker.trip("TimeoutError: timed out")
    inside, release = threading.Event(), threading.Event()
    probes: list[str] = []

    def stalled_probe() -> None:
        probes.append("stalled")
        inside.set()
        assert release.wait(30)

    with pytest.raises(StoreUnavailable, match=r"<Store x> unavailable .*timed out"):
        breaker.enter(stalled_probe)  # returns while the probe is still held
    assert inside.wait(10) and not release.is_set()
    for _ in range(3):
        with pytest.raises(StoreUnavailable, match="checking whether it is back"):
            breaker.enter(lambda: probes.append("second"))
    assert probes == ["stalled"] and breaker.down
    release.set()
    for _ in range(1000):  # the probe's thread closes the breaker
        if not breaker.down:
            break
        threading.Event().wait(0.01)
    assert not breaker.down
    breaker.enter(lambda: probes.append("none"))
    assert probes == ["stalled"]


def test_a_probe_past_its_lease_no_longer_blocks_another() -> None:
    breaker = Breaker("store", lease=0.0)
    breaker.trip("down")
    release = threading.Event()

    def held() -> None:
        release.wait(30)

    with pytest.raises(StoreUnavailable):
        breaker.enter(held)
    breaker.enter(lambda: None)  # lease over: this call probes, and passes
    assert not breaker.down
    release.set()


@pytest.mark.parametrize("value", [0, -1, "3", float("nan"), float("inf"), timedelta(0)])
def test_store_timeout_must_be_a_positive_duration(value: object) -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k" * 32, SATCHEL_STORE="memory://",
                      SATCHEL_STORE_TIMEOUT=value)
    with pytest.raises(ConfigError, match="SATCHEL_STORE_TIMEOUT"):
        Satchel(app)


def test_wait_bounded_gives_up_when_the_server_never_answers() -> None:
    need_module("psycopg")
    from satchel.stores.postgres.timed import WaitTimeout, wait_bounded

    def wants_to_read() -> object:  # a psycopg generator: wait for readable, then done
        yield 1
        return "answered"

    left, right = socket.socketpair()
    with left, right:
        with pytest.raises(WaitTimeout, match=r"0\.05 s"):
            wait_bounded(wants_to_read(), left.fileno(), 0.05)
        right.sendall(b"x")
        assert wait_bounded(wants_to_read(), left.fileno(), 5) == "answered"


@pytest.mark.parametrize("scheme", ["postgresql://postgres@127.0.0.1:{port}/test",
                                    "redis://127.0.0.1:{port}/0"])
def test_the_app_starts_while_its_store_is_down_and_answers_503(
        scheme: str, caplog: pytest.LogCaptureFixture) -> None:
    need_module("psycopg" if scheme.startswith("postgresql") else "redis")
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k" * 32, SATCHEL_STORE=scheme.format(port=closed_port()),
                      SATCHEL_STORE_TIMEOUT=0.5)
    Satchel(app)

    @app.get("/")
    def index() -> str:
        session["x"] = 1
        return "ok"

    @app.get("/plain")
    def plain() -> str:
        return "plain"

    try:
        client = app.test_client()
        assert client.get("/").status_code == 503
        assert client.get("/plain").status_code == 200
    finally:
        Satchel.store_of(app).close()  # type: ignore[attr-defined]


def test_postgres_started_while_down_creates_its_table_when_the_server_is_back() -> None:
    need_module("psycopg")
    import uuid

    from satchel.store import Record
    from satchel.stores.postgres import PostgresStore
    from tests.fault_apps import postgres_target, proxied_postgres_url
    from tests.faults import FaultProxy

    table = f"satchel_started_down_{uuid.uuid4().hex[:12]}"
    with FaultProxy(postgres_target()) as proxy:
        proxy.refuse()
        store = PostgresStore.from_url(proxied_postgres_url(proxy.port), table=table,
                                       timeout=0.5)
        try:
            with pytest.raises(StoreUnavailable):
                store.load("k" * 64)
            proxy.accept()
            store.create("k" * 64, Record({"a": b"1"}, 1.0, 1.0, 4e9))
            loaded = store.load("k" * 64)
            assert loaded is not None and loaded.fields == {"a": b"1"}
        finally:
            with store.pool.connection() as conn:
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            store.close()


def test_a_fast_failure_while_down_says_why_the_store_fell() -> None:
    """The 503 a call gets without probing carries the driver's error that tripped the breaker
    (scrubbed by the store), for the log."""
    breaker = Breaker("store")
    cause = ConnectionRefusedError("refused")
    breaker.trip("ConnectionRefusedError: refused", cause)
    release = threading.Event()

    def held() -> None:
        release.wait(30)

    try:
        with pytest.raises(StoreUnavailable, match="refused") as info:
            breaker.enter(held)  # still probing when its patience ends
        assert info.value.__cause__ is cause
    finally:
        release.set()


def test_a_probe_whose_server_answered_is_waited_for_to_the_end() -> None:
    """PostgreSQL back with its table still to create: the probe takes longer than a call's
    patience, but the server answered, so the first call after it is back succeeds."""
    breaker = Breaker("store", patience=0.01)
    breaker.trip("down")

    def answered_then_slow() -> None:
        breaker.answered()
        threading.Event().wait(0.2)  # creating the table

    breaker.enter(answered_then_slow)
    assert not breaker.down


def test_a_probe_started_after_a_call_arrived_answers_it_without_another() -> None:
    """While the store refuses, a call gets its 503 from the first probe that started after
    it arrived, whoever started it: it does not go on probing until its patience runs out (a
    probe per request and a convoy of probe threads, each waiting its turn for the
    interpreter, made 503s take tens of milliseconds under load). A call that arrived while
    an older probe ran does not trust that one's failure: the store may have come back
    between that probe's attempt and the call's arrival."""
    breaker = Breaker("store", patience=2.0)
    breaker.trip("refused")
    gates = [threading.Event(), threading.Event()]
    started: list[int] = []
    outcomes: list[str] = []

    def probe() -> None:
        number = len(started)
        started.append(number)
        if number < len(gates):
            assert gates[number].wait(10)
        raise StoreUnavailable(f"probe {number}: refused")

    def call() -> None:
        _enter(breaker, probe, outcomes)

    first = threading.Thread(target=call)
    first.start()  # starts probe 0, held at its gate
    for _ in range(1000):
        if started:
            break
        threading.Event().wait(0.001)
    later = [threading.Thread(target=call) for _ in range(2)]
    for thread in later:
        thread.start()  # arrived after probe 0 started: they wait for the next one
    threading.Event().wait(0.2)
    gates[0].set()  # probe 0 fails: the first call's answer; one of the others starts probe 1
    for _ in range(1000):
        if len(started) == 2:
            break
        threading.Event().wait(0.001)
    gates[1].set()  # probe 1 started after both arrived: its failure answers both
    for thread in [first, *later]:
        thread.join(10)
    assert outcomes == ["503"] * 3
    assert started == [0, 1]


def test_after_a_refused_probe_the_next_runs_in_the_callers_thread() -> None:
    """A store that refuses at once costs no thread per probe: after a probe that failed
    fast, the next runs in the calling thread. One that took long (a stalled server) keeps
    the probes in threads of their own, so no call waits on it past its patience."""
    breaker = Breaker("store", patience=0.05)
    breaker.trip("refused")
    threads: list[threading.Thread] = []

    def refused() -> None:
        threads.append(threading.current_thread())
        raise StoreUnavailable("refused")

    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            breaker.enter(refused)
    assert threads[0] is not threading.current_thread()  # nothing known yet: a thread
    assert threads[1:] == [threading.current_thread()] * 2

    release = threading.Event()

    def slow_then_refused() -> None:
        threads.append(threading.current_thread())
        release.wait(0.2)
        raise StoreUnavailable("refused after a while")

    with pytest.raises(StoreUnavailable):
        breaker.enter(slow_then_refused)  # inline: waits it out (bounded by the store)
    with pytest.raises(StoreUnavailable):
        breaker.enter(slow_then_refused)  # that one took long: a thread again
    assert threads[-1] is not threading.current_thread()
    release.set()


def _refused() -> None:
    raise StoreUnavailable("refused")


def test_a_call_that_meets_a_probe_in_the_callers_thread_waits_for_its_connect() -> None:
    """A refusing store comes back, and the probe that finds it back (in the thread of the
    call that started it, since the one before was refused at once) takes longer than a
    call's patience to connect: a server just started, a loaded machine. The calls that
    arrive meanwhile wait for that probe as its own caller does, so the first requests after
    the store is back are not 503s (seen in CI: PostgreSQL refused, then back, and the first
    request after it got a 503 because the new connection took longer than 40 ms)."""
    breaker = Breaker("store", patience=0.01)
    breaker.trip("refused")
    with pytest.raises(StoreUnavailable):
        breaker.enter(_refused)  # a thread: nothing known yet
    connecting, connected = threading.Event(), threading.Event()

    def slow_connect() -> None:
        connecting.set()
        assert connected.wait(10)

    outcomes: list[str] = []

    def call(probe: Callable[[], None]) -> None:
        _enter(breaker, probe, outcomes)

    owner = threading.Thread(target=call, args=(slow_connect,))
    owner.start()  # refused at once before: this probe runs in the owner's thread
    assert connecting.wait(10)
    bystanders = [threading.Thread(target=call, args=(_refused,)) for _ in range(3)]
    try:
        for thread in bystanders:
            thread.start()
        threading.Event().wait(0.1)  # ten times the patience
        assert outcomes == []  # nobody gave up on a connect in progress
    finally:
        connected.set()
    for thread in [owner, *bystanders]:
        thread.join(10)
    assert outcomes == ["through"] * 4 and not breaker.down


def test_a_refusal_slowed_by_a_loaded_machine_still_counts_as_refused() -> None:
    """A refused connection is answered by the kernel in microseconds, but the probe that
    meets it may take some milliseconds on a loaded machine (the interpreter lock, the
    scheduler). It still says the server refuses, not that it hangs: the next probe runs in
    the caller's thread."""
    breaker = Breaker("store", patience=0.05)
    breaker.trip("refused")
    threads: list[threading.Thread] = []

    def refused_slowly() -> None:
        threads.append(threading.current_thread())
        threading.Event().wait(0.02)
        raise StoreUnavailable("refused")

    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            breaker.enter(refused_slowly)
    assert threads[1] is threading.current_thread()
