"""A Redis Cluster client whose every command ends by one deadline, slot-map refresh included.

``RedisCluster`` bounds each socket wait by ``socket_timeout``, but one command may wait on
several sockets in turn: when a node does not answer, redis-py rebuilds its slot map before it
raises (``NodesManager.initialize``), asking each known node in turn for ``CLUSTER SLOTS``. With
every node stalled (hung, SIGSTOPped, behind a network that stopped forwarding) one command then
took (1 + nodes) socket timeouts. :class:`BoundedCluster` gives each command a deadline,
``bound`` seconds from its start, shared by every socket wait it makes (connecting, the
handshake, sending, reading, on any node): a wait lasts at most what is left, and none starts
once nothing is left.

A refresh that failed (cut short by the deadline, say) is owed: the client's next command (the
store's breaker probe, say) refreshes first, within its own deadline, then runs, with the old
map if the refresh fails again. The owed refresh takes redis-py's own arguments (6+: ask the node
that failed last only after the others), so one stalled node does not keep the map from being
rebuilt, after a failover say.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from time import monotonic
from typing import Any

from redis.cluster import RedisCluster
from redis.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from satchel.forks import hold_across_forks

_deadline: ContextVar[float | None] = ContextVar("satchel_redis_deadline", default=None)


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Run the block under a deadline ``seconds`` (> 0) from now, or under the enclosing
    block's deadline if that comes sooner. Only :class:`DeadlineConnection` looks at it."""
    deadline = monotonic() + seconds
    outer = _deadline.get()
    if outer is not None and outer <= deadline:
        yield
        return
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def _left() -> float | None:
    """Seconds left before the current deadline (0 or less: none); None without one."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - monotonic()


def _shorter(timeout: float | None, left: float) -> float:
    return left if timeout is None or left < timeout else timeout


class DeadlineConnection(Connection):
    """A TCP connection whose socket waits also end at the deadline of :func:`within`.

    Outside :func:`within` it is a plain ``redis.connection.Connection``. Inside, connecting
    (and the handshake), sending and reading each wait at most ``socket_timeout`` (or
    ``socket_connect_timeout``) and at most what is left; with nothing left they raise
    redis-py's ``TimeoutError`` at once, and the connection is closed, as after a socket
    timeout (a reply may be on its way).
    """

    def _connect(self) -> socket.socket:
        left = _left()
        if left is None:
            return super()._connect()  # type: ignore[no-any-return,no-untyped-call]
        if left <= 0:
            raise TimeoutError("the call's time is up")  # socket.timeout: "Timeout connecting"
        connect_timeout, timeout = self.socket_connect_timeout, self.socket_timeout
        self.socket_connect_timeout = _shorter(connect_timeout, left)
        self.socket_timeout = _shorter(timeout, left)
        try:
            sock: socket.socket = super()._connect()  # type: ignore[no-untyped-call]
        finally:
            self.socket_connect_timeout, self.socket_timeout = connect_timeout, timeout
        return sock  # its timeout is what was left; each later wait sets its own (_arm)

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        # Not connected yet: redis-py connects first (bounded by _connect, which leaves the
        # socket's timeout at what was left then), then sends.
        self._arm("writing to")
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        self._arm("reading from")
        return super().read_response(*args, **kwargs)

    def _arm(self, doing: str) -> None:
        """Set the socket's timeout for the next wait: the configured one, or less."""
        sock = self._sock
        if sock is None:
            return  # redis-py connects (bounded by _connect) or raises
        timeout = self.socket_timeout
        left = _left()
        if left is not None:
            if left <= 0:
                self.disconnect()
                raise RedisTimeoutError(f"Timeout {doing} {self.host}:{self.port}:"
                                        " the call's time is up")
            timeout = _shorter(timeout, left)
        if sock.gettimeout() != timeout:
            sock.settimeout(timeout)


class BoundedCluster(RedisCluster):
    """A ``RedisCluster`` whose every command ends within ``bound`` seconds, whatever the
    number of nodes it waits on (see the module doc).

    Build it as ``BoundedCluster.from_url(url, bound=3)``: it takes ``RedisCluster.from_url``'s
    arguments and ``bound`` (seconds, > 0); its nodes' connections are
    :class:`DeadlineConnection`. Built any other way (``host=``, ``startup_nodes=``) it raises
    ``TypeError``: redis-py hands a cluster's nodes a connection class only when the client is
    built from a URL. Raises what ``RedisCluster`` raises: a command cut
    short by its deadline raises redis-py's ``TimeoutError`` (or, if the slot-map refresh
    redis-py runs after a failure was cut short, ``RedisClusterException``). A pipeline or
    pub/sub does not go through :meth:`execute_command` and has no deadline: each of its
    waits is bounded by the socket timeouts only.
    """

    def __init__(self, *args: Any, bound: float, **kwargs: Any) -> None:
        if not bound > 0:
            raise ValueError(f"bound {bound!r}: must be a number of seconds above 0")
        if kwargs.get("url") is None:
            raise TypeError("BoundedCluster: build it with BoundedCluster.from_url(url,"
                            " bound=...): redis-py hands the nodes of a cluster client the"
                            " connection class that bounds them only when it is built from"
                            " a URL")
        self.bound = bound
        self._owed: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        with within(bound):  # the first slot map, asked of the startup nodes
            super().__init__(*args, connection_class=DeadlineConnection, **kwargs)
        manager = self.nodes_manager
        initialize = manager.initialize
        # One refresh at a time, and a command waits for another's only while its own
        # deadline allows: redis-py's own lock (6+) would make each waiting command wait out
        # the running refresh's deadline, then its own (commands in flight when every node
        # hung took 2 or 3 bounds).
        refreshing = threading.Lock()
        # held while a refresh runs (bounded by its deadline): a fork waits for it, or the
        # child's refreshes would all time out on it and its slot map stay stale
        hold_across_forks(refreshing, "a Redis Cluster slot-map refresh")

        def refresh(*args: Any, **kwargs: Any) -> None:
            left = _left()
            if not refreshing.acquire(timeout=-1 if left is None else max(0.0, left)):
                self._owed = (args, kwargs)
                raise RedisTimeoutError("the cluster's slot map is being refreshed by another"
                                        " command, past this call's time")
            try:
                if not manager.startup_nodes:
                    # redis-py 5 drops each node that fails from the nodes it refreshes from
                    # (and from its nodes cache, the same dict); with all of them gone, no
                    # refresh could ever pass again: start from the nodes the slot map names.
                    # Under the lock: another command's refresh would change the map as it is
                    # read ("dictionary changed size during iteration").
                    manager.startup_nodes = {node.name: node
                                             for nodes in list(manager.slots_cache.values())
                                             for node in nodes}
                initialize(*args, **kwargs)
            except RuntimeError as err:
                # redis-py 5 removes a failed node from the startup nodes while another
                # thread's refresh iterates them ("dictionary changed size during iteration"):
                # a failed refresh, reported as the driver's error (a 503), not a 500.
                self._owed = (args, kwargs)
                raise RedisConnectionError(f"the cluster's slot map could not be refreshed:"
                                           f" {err}") from err
            except BaseException:
                self._owed = (args, kwargs)  # as redis-py asked: its failed node goes last
                raise
            else:
                self._owed = None
            finally:
                refreshing.release()

        manager.initialize = refresh  # type: ignore[method-assign]

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with within(self.bound):
            if self._owed is not None:
                self._refresh_owed()
            return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]

    def _refresh_owed(self) -> None:
        """The slot-map refresh a deadline cut short; if it fails again, the command goes on
        with the old map and what time is left (and the refresh stays owed)."""
        owed = self._owed
        if owed is None:
            return
        manager = self.nodes_manager
        try:
            manager.initialize(*owed[0], **owed[1])
        except Exception:  # noqa: S110 - kept owed; the command reports the cluster's state
            pass
