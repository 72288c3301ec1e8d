"""KeptConnections on a real Redis: reuse, recovery from dead sockets, replies never mixed up."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.services import REDIS_URL, cannot_test, closed_port
from tests.services import redis_client as shared_redis_client

try:
    import redis
except ImportError:
    cannot_test("the Redis store tests need redis-py: pip install -e '.[redis]'")

from redis.backoff import NoBackoff
from redis.connection import Encoder, PythonRespSerializer
from redis.retry import Retry

from satchel.stores.redis.connections import KeptConnections, _pack_in_python, pack_command


@pytest.fixture
def admin() -> Iterator[redis.Redis]:
    """A separate client, to kill the connections under test."""
    with shared_redis_client() as client:
        yield client


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    yield client
    client.close()


def test_commands_reuse_one_connection(client: redis.Redis) -> None:
    kept = KeptConnections(client.connection_pool)
    first = kept.command("CLIENT", "ID")
    assert [kept.command("CLIENT", "ID") for _ in range(5)] == [first] * 5


def test_a_connection_the_server_closed_is_replaced_once(client: redis.Redis,
                                                         admin: redis.Redis) -> None:
    kept = KeptConnections(client.connection_pool)
    first = kept.command("CLIENT", "ID")
    admin.execute_command("CLIENT", "KILL", "ID", first)
    assert kept.command("ECHO", "still here") == b"still here"
    assert kept.command("CLIENT", "ID") != first


def test_an_unreachable_server_raises_connection_error() -> None:
    client = redis.Redis(host="127.0.0.1", port=closed_port(), socket_connect_timeout=1)
    kept = KeptConnections(client.connection_pool)
    with pytest.raises(redis.exceptions.ConnectionError):
        kept.command("PING")


def test_an_error_reply_keeps_the_connection_in_step(client: redis.Redis) -> None:
    kept = KeptConnections(client.connection_pool)
    first = kept.command("CLIENT", "ID")
    with pytest.raises(redis.exceptions.ResponseError, match="unknown command"):
        kept.command("NO-SUCH-COMMAND")
    assert kept.command("ECHO", "next") == b"next"
    assert kept.command("CLIENT", "ID") == first


def test_a_late_reply_is_never_read_by_the_next_command(admin: redis.Redis) -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=0.2)
    kept = KeptConnections(client.connection_pool)
    empty = f"satchel-test:empty:{os.urandom(8).hex()}"
    try:
        with pytest.raises(redis.exceptions.TimeoutError):
            kept.command("BLPOP", empty, 1)  # Redis answers after 1 s: too late
        admin.rpush(empty, b"x")  # had that socket been kept, BLPOP's reply would come next
        assert kept.command("ECHO", "mine") == b"mine"
    finally:
        admin.delete(empty)
        client.close()


def test_a_kept_connection_times_out_once_without_a_retry(admin: redis.Redis) -> None:
    """A kept socket is bounded by kernel timeouts: the wait ends as redis-py's TimeoutError
    (not a ConnectionError, which would be sent again and wait twice), after one timeout."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=0.3)
    kept = KeptConnections(client.connection_pool)
    empty = f"satchel-test:empty:{os.urandom(8).hex()}"
    try:
        assert kept.command("PING") == b"PONG"
        started = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            kept.command("BLPOP", empty, 2)  # Redis answers after 2 s
        assert 0.25 < time.monotonic() - started < 1.0
        admin.rpush(empty, b"x")  # a kept late socket would read BLPOP's reply next
        assert kept.command("ECHO", "mine") == b"mine"
        pending = kept.start("BLPOP", empty + ":other", 2)
        assert pending is not None
        with pytest.raises(redis.exceptions.TimeoutError):
            pending.wait()
        assert kept.command("ECHO", "again") == b"again"
    finally:
        admin.delete(empty)
        client.close()


def test_threads_get_their_own_replies(client: redis.Redis) -> None:
    kept = KeptConnections(client.connection_pool, keep=3)
    wrong: list[tuple[bytes, bytes]] = []

    def work(thread: int) -> None:
        for call in range(200):
            sent = f"{thread}:{call}".encode()
            if (got := kept.command("ECHO", sent)) != sent:
                wrong.append((sent, got))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    assert "idle=" in repr(kept) and int(repr(kept).split("idle=")[1].split()[0]) <= 3


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_share_the_parents_socket(client: redis.Redis) -> None:
    kept = KeptConnections(client.connection_pool)
    parent_id = kept.command("CLIENT", "ID")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its connection's id, never return into pytest
        try:
            os.write(write_end, str(kept.command("CLIENT", "ID")).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    child_id = int(os.read(read_end, 64) or b"0")
    os.waitpid(pid, 0)
    os.close(read_end)
    assert child_id not in (0, parent_id)
    assert kept.command("CLIENT", "ID") == parent_id


def test_close_returns_the_connections_to_the_pool(client: redis.Redis) -> None:
    kept = KeptConnections(client.connection_pool)
    kept_id = kept.command("CLIENT", "ID")
    kept.close()
    assert client.client_id() == kept_id  # the pool hands out the connection it got back


def test_a_dropped_store_gives_its_connections_back(client: redis.Redis) -> None:
    kept = KeptConnections(client.connection_pool)
    kept_id = kept.command("CLIENT", "ID")
    del kept
    gc.collect()
    assert client.client_id() == kept_id


def test_a_closed_pool_reconnects_on_the_next_command(client: redis.Redis) -> None:
    kept = KeptConnections(client.connection_pool)
    first = kept.command("CLIENT", "ID")
    client.connection_pool.disconnect()  # what client.close() does to every connection
    assert kept.command("ECHO", "again") == b"again"
    assert kept.command("CLIENT", "ID") != first


def test_a_connection_marked_for_reconnect_reconnects(client: redis.Redis) -> None:
    kept = KeptConnections(client.connection_pool)
    first = kept.command("CLIENT", "ID")
    (connection,) = kept._idle
    if not hasattr(connection, "mark_for_reconnect"):
        pytest.skip("this redis-py has no maintenance notifications")
    connection.mark_for_reconnect()  # what a MOVING notification does
    kept.command("PING")  # the command in flight finishes on the old socket
    assert kept.command("CLIENT", "ID") != first


# -- commands started now, answered later (prefetch) ---------------------------------------


def test_a_started_command_is_answered_on_the_kept_connection(client: redis.Redis) -> None:
    kept = KeptConnections(client.connection_pool)
    first = kept.command("CLIENT", "ID")
    pending = kept.start("ECHO", "later")
    assert pending is not None and pending.wait() == b"later"
    assert kept.command("CLIENT", "ID") == first
    with pytest.raises(RuntimeError, match="already read"):
        pending.wait()


def test_two_started_commands_get_their_own_replies(client: redis.Redis) -> None:
    kept = KeptConnections(client.connection_pool)
    one, two = kept.start("ECHO", "1"), kept.start("ECHO", "2")
    assert one is not None and two is not None
    assert (two.wait(), one.wait()) == (b"2", b"1")


def test_a_cancelled_reply_is_read_off_the_connection(client: redis.Redis) -> None:
    kept = KeptConnections(client.connection_pool)
    first = kept.command("CLIENT", "ID")
    pending = kept.start("ECHO", "unwanted")
    assert pending is not None
    pending.cancel()
    pending.cancel()  # a second cancel is harmless
    assert kept.command("ECHO", "mine") == b"mine"
    assert kept.command("CLIENT", "ID") == first  # kept, in step


def test_a_reply_never_read_closes_its_connection(client: redis.Redis) -> None:
    kept = KeptConnections(client.connection_pool)
    first = kept.command("CLIENT", "ID")
    pending = kept.start("ECHO", "unwanted")
    del pending
    gc.collect()
    assert kept.command("ECHO", "mine") == b"mine"
    assert kept.command("CLIENT", "ID") != first  # that socket was closed, not kept


def test_a_started_command_is_sent_again_if_the_server_had_closed_the_connection(
        client: redis.Redis, admin: redis.Redis) -> None:
    kept = KeptConnections(client.connection_pool)
    first = kept.command("CLIENT", "ID")
    admin.execute_command("CLIENT", "KILL", "ID", first)
    pending = kept.start("ECHO", "again")
    assert pending is not None and pending.wait() == b"again"
    assert kept.command("CLIENT", "ID") != first


def test_an_error_reply_to_a_started_command_keeps_the_connection(client: redis.Redis) -> None:
    kept = KeptConnections(client.connection_pool)
    first = kept.command("CLIENT", "ID")
    pending = kept.start("NO-SUCH-COMMAND")
    assert pending is not None
    with pytest.raises(redis.exceptions.ResponseError, match="unknown command"):
        pending.wait()
    assert kept.command("CLIENT", "ID") == first


def test_a_command_cannot_be_started_without_a_server() -> None:
    """The failure to connect is raised: it has cost its wait, which the caller (a prefetch,
    then the load) must not spend a second time."""
    client = redis.Redis(host="127.0.0.1", port=closed_port(), socket_connect_timeout=1,
                         retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.exceptions.ConnectionError):
        KeptConnections(client.connection_pool).start("PING")


# -- packing: the bytes redis-py would send -------------------------------------------------

_ARGS = st.lists(st.one_of(st.binary(max_size=40), st.text(max_size=20),
                           st.integers(-2**63, 2**63), st.floats(allow_nan=False,
                                                                  allow_infinity=False)),
                 min_size=1, max_size=12)


@given(_ARGS)
def test_commands_are_packed_as_redis_py_packs_them(args: list[object]) -> None:
    command = (b"ECHO", *args)  # a first argument without spaces, as the store's are
    packed = b"".join(PythonRespSerializer(6000, Encoder("utf-8", "strict", False).encode)
                      .pack(*command))
    assert _pack_in_python(command) == packed  # type: ignore[arg-type]
    assert pack_command(command) == packed  # type: ignore[arg-type]


def test_a_packed_command_is_answered(client: redis.Redis) -> None:
    kept = KeptConnections(client.connection_pool)
    assert kept.command("ECHO", "é ✓") == "é ✓".encode()
    assert kept.command("ECHO", 1.5) == b"1.5"
    assert kept.command("ECHO", 2**40) == str(2**40).encode()
