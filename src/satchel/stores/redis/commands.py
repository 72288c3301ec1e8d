"""How :class:`~satchel.stores.redis.RedisStore` sends its commands: the steps its
session, user-set and listing code share.

A command goes through the store's breaker (fail fast while the server is down, one
call at a time probing whether it is back), a script is sent by its SHA and loaded on
NOSCRIPT, and a driver error that means the server cannot serve now is raised as
:class:`~satchel.errors.StoreUnavailable` (see :mod:`~satchel.stores.redis.errors`).
A cluster whose nodes did not answer at start is built by the first command.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NoReturn

import redis
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

from satchel.breaker import Breaker
from satchel.errors import StoreUnavailable
from satchel.redact import chainable, scrub
from satchel.stores.redis.clients import LazyCluster
from satchel.stores.redis.errors import (
    DRIVER_ERRORS,
    client_secrets,
    is_unavailable,
    is_unreachable,
)
from satchel.stores.redis.names import Names
from satchel.stores.redis.user_scripts import MAX_TTL_MS


class Commands:
    """The command steps of ``RedisStore``; its constructor sets the attributes."""

    prefix: str
    client: redis.Redis | RedisCluster
    _names: Names
    _clock: Callable[[], float]
    _breaker: Breaker
    _command: Callable[..., Any]

    @property
    def _cluster(self) -> bool:
        return isinstance(self.client, RedisCluster | LazyCluster)

    def _call(self, *args: Any) -> Any:
        """Send command ``args`` through the breaker; its reply."""
        if self._breaker.down:
            self._breaker.enter(self._probe)
        try:
            reply = self._command(*args)
        except DRIVER_ERRORS as err:
            self._fail(err)
        self._answered()
        return reply

    def _answered(self) -> None:
        """After a reply: if another call tripped the breaker meanwhile, the server answers
        after all (see :meth:`~satchel.breaker.Breaker.reached`)."""
        if self._breaker.down:
            self._breaker.reached()

    def _eval(self, script: str, command: list[Any]) -> Any:
        """Run ``EVALSHA`` ``command``; on NOSCRIPT (a new or flushed server), load ``script``
        and run it again. Floats and ints are sent as their ``repr``, as redis-py does."""
        if self._breaker.down:
            self._breaker.enter(self._probe)
        try:
            try:
                reply = self._command(*command)
            except NoScriptError:
                self.client.script_load(script)
                reply = self._command(*command)
        except DRIVER_ERRORS as err:
            self._fail(err)
        self._answered()
        return reply

    def _build_cluster(self, *args: Any) -> Any:
        """The first command of a store whose cluster was down at start: build the client
        (the driver's error if no node answers yet), then send ``args`` through it."""
        client: Any = self.client
        if isinstance(client, LazyCluster):
            self.client = client.cluster()
        self._command = self._through_client
        return self._through_client(*args)

    def _through_client(self, *args: Any) -> Any:
        """``client.execute_command``, looked up per call: hooks added later still see it."""
        return self.client.execute_command(*args)  # type: ignore[no-untyped-call]

    def _probe(self) -> None:
        """The breaker's check that the server is back: a PING (to the first node named in
        the URL, for a cluster client not built yet: building it takes longer than a probe
        may hold a request; the request that follows builds it)."""
        client: Any = self.client
        try:
            if isinstance(client, LazyCluster) and client.built is None:
                client.ping_first_node()
            else:
                self._command("PING")
        except DRIVER_ERRORS as err:
            self._fail(err)

    def _fail(self, err: Exception) -> NoReturn:
        """Raise :class:`StoreUnavailable` from ``err`` if it means the store cannot serve now
        (the repr is built only then), tripping the breaker if the server could not be
        reached; re-raise any other driver error as it is."""
        if is_unavailable(err):
            secrets = client_secrets(self.client)
            why = f"{type(err).__name__}: {scrub(str(err), secrets)}"
            cause = chainable(err, secrets)
            if is_unreachable(err):
                self._breaker.trip(why, cause)
            raise StoreUnavailable(f"{self!r} unavailable: {why}") from cause
        raise err

    @staticmethod
    def _ttl(expires_at: float, now: float) -> int:
        """Milliseconds until ``expires_at`` by the store's clock (which may not be real time)."""
        return max(1, math.ceil(min((expires_at - now) * 1000, MAX_TTL_MS)))
