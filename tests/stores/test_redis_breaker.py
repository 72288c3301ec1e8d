"""RedisStore's breaker under a slow server: a slow answer is not an outage.

The Redis side of tests/stores/test_postgres_breaker.py: a command that waits past the timeout
trips the breaker, but a command in flight beside it that then gets its answer proves the
server answers, and the calls after it are served (not 503 until a probe passes, which on a
loaded machine may take longer than the breaker's patience).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults import OwnRedis
from tests.services import cannot_test, need_module

need_module("redis")

from satchel.errors import StoreUnavailable  # noqa: E402
from satchel.store import Patch, Record  # noqa: E402
from satchel.stores.redis import RedisStore  # noqa: E402


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    try:
        server = OwnRedis()
    except FileNotFoundError:
        cannot_test("these tests need a redis-server binary (apt-get install redis-server)")
    try:
        yield server
    finally:
        server.close()


def _in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as err:  # kept for the test to look at
            outcome.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _slow_probe(store: RedisStore, seconds: float = 0.5) -> None:
    """Make the breaker's probe take ``seconds`` longer, as on a loaded machine."""
    probe = store._probe

    def slow() -> None:
        time.sleep(seconds)
        probe()

    store._probe = slow  # type: ignore[method-assign]


@pytest.mark.parametrize("keep_connections", [True, False])
def test_an_answer_after_another_call_timed_out_lets_the_next_calls_through(
        own_redis: OwnRedis, keep_connections: bool) -> None:
    """The server stops answering (SIGSTOP) past one call's timeout, then answers again
    within a second call's: the first fails and trips the breaker, the second gets its
    answer, and the calls that follow are served."""
    import redis

    timeout = 2.0
    client = redis.Redis.from_url(own_redis.url, socket_timeout=timeout,
                                  socket_connect_timeout=timeout)
    store = RedisStore(client, prefix="breaker:", keep_connections=keep_connections)
    try:
        now = time.time()
        for key in ("first", "second", "free"):
            store.create(key, Record({"n": b"0"}, now, now, now + 3600, False, None, None))
        own_redis.pause()
        try:
            first, first_outcome = _in_thread(lambda: store.load("first"))
            time.sleep(timeout / 2)
            second, second_outcome = _in_thread(
                lambda: store.update("second", Patch(set={"n": b"1"}, last_seen=time.time())))
            first.join(timeout * 3)
            assert first_outcome and isinstance(first_outcome[0], StoreUnavailable)
        finally:
            own_redis.go_on()  # the second call, still within its time, is answered
        second.join(timeout * 3)
        assert second_outcome and not isinstance(second_outcome[0], Exception)
        _slow_probe(store)
        assert store.load("free") is not None  # no 503: the server answered just now
    finally:
        client.close()
