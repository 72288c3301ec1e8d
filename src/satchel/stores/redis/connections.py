"""Commands on a redis-py pool's connections, without a checkout per command.

``client.execute_command`` takes a connection out of the pool and puts it
back for every command (a readiness poll, locks, events, metrics, a retry
wrapper). Inside a web request that costs about as much as the round trip to
Redis itself. :class:`KeptConnections` takes connections from the same pool
once and keeps the idle ones for its next commands, so the pool's settings
(host, TLS, auth, Sentinel, health checks, timeouts) still apply.

What it does not do that ``execute_command`` does: response callbacks (the
caller gets RESP replies as the parser returns them), the client's retry
policy, and client-level hooks and metrics (tracing that wraps
``execute_command`` does not see these commands).

It also bounds a kept plain TCP or Unix socket's sends and reads in the
kernel (``SO_SNDTIMEO``, ``SO_RCVTIMEO``: the client's ``socket_timeout``)
instead of in Python: a Python socket with a timeout polls before every send
and every read, two more system calls per command and two more hand-overs of
the GIL, which a threaded server pays in CPU under load. A kernel timeout
is raised as redis-py's ``TimeoutError``, as Python's would be. A TLS socket
keeps Python's timeout; a connection given back to the pool gets it back too.
"""

from __future__ import annotations

import os
import socket
import struct
import weakref
from collections.abc import Callable
from typing import Any

from redis.connection import ConnectionPool
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

Arg = bytes | str | int | float  # what a command's arguments may be


def _pack_in_python(args: tuple[Arg, ...]) -> bytes:
    """``args`` as a RESP array of bulk strings, as redis-py packs them (str as UTF-8,
    numbers as their ``repr``)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if type(arg) is bytes else (
            arg.encode() if isinstance(arg, str) else repr(arg).encode())
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


pack_command: Callable[[tuple[Arg, ...]], bytes] = _pack_in_python
"""One command's bytes. ``connection.send_packed_command`` sends them without redis-py's
packer, which checks and re-tuples every argument (about as costly as the send)."""
try:  # hiredis packs in C, with the same output
    from hiredis import pack_command as _pack_in_c
except ImportError:  # pragma: no cover - hiredis comes with satchel[redis]
    pass
else:
    pack_command = _pack_in_c  # type: ignore[assignment]


_TIMEVAL = struct.Struct("@ll")  # struct timeval: seconds, microseconds (Linux, BSD)


def bound_in_kernel(connection: Any) -> None:
    """Bound ``connection``'s plain socket by kernel timeouts instead of Python's (see the
    module's docstring); a socket without a timeout, a TLS one, or none, is left alone."""
    sock = connection._sock
    if type(sock) is not socket.socket:  # None, or TLS (its reads need Python's timeout)
        return
    timeout = sock.gettimeout()
    if not timeout:  # None: blocking already; 0: non-blocking on purpose
        return
    seconds = int(timeout)
    bound = _TIMEVAL.pack(seconds, max(1, int((timeout - seconds) * 1e6)))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, bound)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, bound)
    except OSError:  # pragma: no cover - a platform without them keeps Python's timeout
        return
    sock.settimeout(None)  # blocking: no poll before each send and read


def bound_in_python(connection: Any) -> None:
    """Undo :func:`bound_in_kernel`: the socket polls with the client's timeout again, as
    redis-py expects of a connection in its pool."""
    sock = connection._sock
    if type(sock) is socket.socket and sock.gettimeout() is None:
        sock.settimeout(connection.socket_timeout)


def timed_out(err: BaseException) -> bool:
    """True if redis-py's ConnectionError ``err`` reports a kernel timeout (EAGAIN on a
    blocking socket: see :func:`bound_in_kernel`)."""
    return isinstance(err, ConnectionError) and isinstance(err.__context__, BlockingIOError)


def _timeout(err: ConnectionError) -> TimeoutError:
    return TimeoutError(f"Timeout on the connection to Redis ({err})")


class KeptConnections:
    """Send commands over connections taken from ``pool`` and kept between commands.

    At most ``keep`` idle connections are kept; one more is returned to the
    pool. Thread-safe: a connection is used by one command at a time. After a
    fork the child drops the parent's connections (the pool resets itself), also after
    a fork that ran no at-fork hook (each command checks the process id, as redis-py's
    pool does).

    A kept connection may have been closed by the server since its last use
    (a restart, an idle timeout): a ``ConnectionError`` on it sends the
    command once more on a connection fresh from the pool. Errors on a fresh
    connection, and timeouts, are raised as they are.
    """

    def __init__(self, pool: ConnectionPool, *, keep: int = 16) -> None:
        self.pool = pool
        self.keep = keep
        self._idle: list[Any] = []  # list.pop/append are atomic: no lock needed
        self._pid = os.getpid()  # the process whose connections _idle holds
        # redis-py 6+ marks a connection to reconnect when the server announces a move
        # (maintenance notifications); older ones have no such mark to look at.
        self._marks_moves = hasattr(pool.connection_class, "should_reconnect")
        _all.add(self)
        # A store dropped without close() still gives its connections back.
        weakref.finalize(self, _release_all, pool, self._idle, self._pid)

    def command(self, *args: Arg) -> Any:
        """Send one command and return its reply; a Redis error reply is raised."""
        return self.command_packed(pack_command(args))

    def command_packed(self, packed: bytes) -> Any:
        """:meth:`command` of a command already packed (``pack_command``)."""
        if self._pid != os.getpid():
            self._forget()
        try:
            connection = self._idle.pop()
        except IndexError:
            return self._send(self.pool.get_connection(), packed)
        try:
            return self._send(connection, packed)
        except ConnectionError:
            return self._send(self.pool.get_connection(), packed)

    def start(self, *args: Arg) -> PendingReply | None:
        """Send one command now and read its reply later, from the returned handle.

        None if a kept connection's socket turned out dead at the send (the server
        closed it): the caller then sends the command with :meth:`command`, on
        another. A failure to get a fresh connection from the pool (refused,
        timed out) is raised: it has already cost its wait, which the caller
        must not spend again. Only for commands that may be sent twice (a read):
        a kept connection the server closed is found out at the read, which then
        retries.
        """
        packed = pack_command(args)
        if self._pid != os.getpid():
            self._forget()
        try:
            connection, kept = self._idle.pop(), True
        except IndexError:
            connection, kept = self.pool.get_connection(), False
        bound_in_kernel(connection)
        try:
            connection.send_packed_command((packed,))  # a sequence of chunks
        except ConnectionError as err:
            self._discard(connection)
            if timed_out(err):
                raise _timeout(err) from err
            if not kept:
                raise
            return None
        except BaseException:
            self._discard(connection)
            raise
        return PendingReply(self, connection, packed, retry=kept)

    def _forget(self) -> None:
        """In a forked child: drop the parent's idle connections (redis-py closes only the
        child's copy of a socket it did not open: the parent's stay connected)."""
        self._idle.clear()
        self._pid = os.getpid()

    def _discard(self, connection: Any) -> None:
        """Close ``connection``'s socket (a reply may be half read) and give it back."""
        connection.disconnect()
        self.pool.release(connection)

    def _send(self, connection: Any, packed: bytes) -> Any:
        bound_in_kernel(connection)
        try:
            connection.send_packed_command((packed,))  # a sequence of chunks
            reply = connection.read_response()
        except ResponseError:
            self._put_back(connection)  # the whole error reply was read: still in step
            raise
        except ConnectionError as err:
            self._discard(connection)
            if timed_out(err):
                raise _timeout(err) from err
            raise
        except BaseException:
            self._discard(connection)  # a reply may be half read: never reuse the socket
            raise
        self._put_back(connection)
        return reply

    def _put_back(self, connection: Any) -> None:
        if self._marks_moves and connection.should_reconnect():
            # As execute_command does: drop the socket; the next command connects again.
            connection.disconnect()
        if len(self._idle) < self.keep:
            self._idle.append(connection)
        else:
            bound_in_python(connection)
            self.pool.release(connection)

    def close(self) -> None:
        """Return the idle connections to the pool (in a forked child, drop the parent's)."""
        if self._pid != os.getpid():
            self._forget()
        _release_all(self.pool, self._idle)

    def __repr__(self) -> str:
        return f"<KeptConnections idle={len(self._idle)} keep={self.keep}>"


class PendingReply:
    """The reply to a command :meth:`KeptConnections.start` sent; it holds the connection.

    :meth:`wait` reads the reply (a kept connection the server had closed
    sends the command again on a fresh one); :meth:`cancel` reads it and
    drops it, so the connection goes back in step. A handle dropped with
    neither closes the connection's socket. In a process forked while the reply was on its
    way, the connection is the parent's: it is left alone, and :meth:`wait` sends the
    command again on a connection of the child's own.
    """

    __slots__ = ("_connection", "_kept", "_packed", "_pid", "_retry")

    def __init__(self, kept: KeptConnections, connection: Any, packed: bytes, *,
                 retry: bool) -> None:
        self._kept = kept
        self._connection: Any = connection
        self._packed = packed
        self._retry = retry
        self._pid = os.getpid()

    def wait(self) -> Any:
        """The reply; a Redis error reply is raised. Call at most once."""
        connection, self._connection = self._connection, None
        if connection is None:
            raise RuntimeError("this reply was already read or cancelled")
        kept = self._kept
        if self._pid != os.getpid():  # forked meanwhile: the parent reads that reply
            return kept.command_packed(self._packed)
        try:
            reply = connection.read_response()
        except ResponseError:
            kept._put_back(connection)  # the whole error reply was read: still in step
            raise
        except ConnectionError as err:
            kept._discard(connection)
            if timed_out(err):
                raise _timeout(err) from err
            if not self._retry:
                raise
            return kept._send(kept.pool.get_connection(), self._packed)
        except BaseException:
            kept._discard(connection)
            raise
        kept._put_back(connection)
        return reply

    def cancel(self) -> None:
        """Read the reply and drop it; errors are dropped too."""
        if self._connection is None:
            return
        if self._pid != os.getpid():  # the parent's connection: left alone
            self._connection = None
            return
        try:
            self.wait()
        except Exception:  # noqa: S110 - nobody wants this reply, nor its failure
            pass

    def __del__(self) -> None:
        connection, self._connection = self._connection, None
        # never read: its reply would answer the next command (a forked child's: left alone)
        if connection is not None and self._pid == os.getpid():
            try:
                self._kept._discard(connection)
            except Exception:  # noqa: S110 - nothing to report to at collection time
                pass


_all: weakref.WeakSet[KeptConnections] = weakref.WeakSet()


def _release_all(pool: ConnectionPool, idle: list[Any], pid: int | None = None) -> None:
    if pid is not None and pid != os.getpid():
        return  # a forked child's copies of the parent's: left alone (their sockets are shared)
    while idle:
        try:
            connection = idle.pop()
        except IndexError:  # another thread took the last one
            return
        bound_in_python(connection)
        pool.release(connection)


def _forget_in_child() -> None:
    """In a forked child, drop the parent's connections: their sockets are the parent's."""
    for kept in list(_all):
        kept._idle.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
