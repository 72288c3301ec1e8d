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


CALLS = {
    "load": lambda store: store.load("k"),
    "update": lambda store: store.update("k", Patch(set={"n": b"1"})),
    "delete": lambda store: store.delete("k"),
    "sessions_of": lambda store: store.sessions_of("alice"),
    "delete_user": lambda store: store.delete_user("alice"),
    "all_sessions": lambda store: list(store.all_sessions()),
    "acquire_lock": lambda store: store.acquire_lock("k", "token", 5.0),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_every_call_answered_while_another_tripped_the_breaker_closes_it(call: str) -> None:
    """Each kind of call (a session's, a user's, a listing's, a lock's) that gets the server's
    answer after another call tripped the breaker proves the server answers: the calls after
    it are served, not refused until a probe passes."""
    from tests.services import drop_keys, random_prefix
    from tests.services import redis_client as shared_redis_client

    with shared_redis_client() as client:
        prefix = random_prefix()
        store = RedisStore(client, prefix=prefix, keep_connections=False)
        try:
            now = time.time()
            store.create("k", Record({"n": b"0"}, now, now, now + 3600, user="alice"))
            command, pipeline = store._command, client.pipeline

            def trip() -> None:
                store._breaker.trip("another call timed out")

            def command_then_trip(*args: Any) -> Any:
                reply = command(*args)
                trip()
                return reply

            def pipeline_then_trip(*args: Any, **kwargs: Any) -> Any:
                pipe = pipeline(*args, **kwargs)
                execute = pipe.execute

                def execute_then_trip(*args: Any, **kwargs: Any) -> Any:
                    replies = execute(*args, **kwargs)
                    trip()
                    return replies

                pipe.execute = execute_then_trip
                return pipe

            store._command = command_then_trip  # type: ignore[method-assign]
            client.pipeline = pipeline_then_trip  # type: ignore[method-assign]
            try:
                CALLS[call](store)
            finally:
                store._command = command  # type: ignore[method-assign]
                del client.pipeline
            assert not store._breaker.down
        finally:
            store.close()
            drop_keys(client, prefix)
