"""What a RedisStore load reads: a stored session as a :class:`~satchel.store.Record` (a
string, or a hash of the earlier layout), and a load sent ahead of time (prefetch)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from satchel.errors import without_tracebacks
from satchel.store import Record
from satchel.stores.redis.errors import DRIVER_ERRORS
from satchel.stores.redis.record import decode
from satchel.stores.redis.scripts import CREATED, DEVICE, EXPIRES, FIELD, PERM, SEEN, USER

if TYPE_CHECKING:
    from satchel.stores.redis.connections import PendingReply
    from satchel.stores.redis.sessions import Sessions


def is_wrong_type(err: Exception) -> bool:
    """True if ``err`` is Redis's WRONGTYPE reply: a GET met a hash (the earlier layout)."""
    return isinstance(err, ResponseError) and str(err).startswith("WRONGTYPE")


def parse_record(data: Any, now: float) -> Record | str | None:
    """The record a GET reply holds (bytes, see :mod:`~satchel.stores.redis.record`) or, in
    the earlier layout, an HGETALL reply (a dict, or RESP2's flat list); None for a missing
    or expired one (expires <= ``now``); for a malformed one, what is wrong with it."""
    if isinstance(data, bytes):
        return decode(data, now)
    if not data:
        return None
    if isinstance(data, list):  # RESP2 without redis-py's callback: name, value, ...
        data = dict(zip(data[::2], data[1::2], strict=True))
    try:
        expires = float(data[EXPIRES])
        if expires <= now:
            return None
        fields = {}
        for name, value in data.items():  # f:<name>; m:* and anything else is not a field
            if (field := name.removeprefix(FIELD)) != name:
                fields[field.decode()] = value
        user, device = data.get(USER), data.get(DEVICE)
        return Record(fields, float(data[CREATED]), float(data[SEEN]), expires,
                      data.get(PERM) == b"1", None if user is None else user.decode(),
                      None if device is None else device.decode())
    except KeyError as err:
        return f"it has no {err.args[0].decode()}"
    except ValueError:
        return "a timestamp is not a number, or a name, the user or device is not UTF-8"


class PendingGetLoad:
    """A prefetched ``RedisStore.load``: the GET is on its way."""

    __slots__ = ("_key", "_reply", "_store")

    def __init__(self, store: Sessions, reply: PendingReply, key: str) -> None:
        self._store, self._reply, self._key = store, reply, key

    def result(self) -> Record | None:
        store = self._store
        try:
            data = self._reply.wait()
        except DRIVER_ERRORS as err:
            if not is_wrong_type(err):
                store._fail(err)
            data = store.fetch_hash(store._names.of(self._key))
        return store.loaded(data, self._key)  # a miss looks under the earlier name too

    def cancel(self) -> None:
        self._reply.cancel()


class FailedLoad:
    """A prefetched ``RedisStore.load`` that failed before it was sent: ``result`` raises."""

    __slots__ = ("_error",)

    def __init__(self, error: Exception) -> None:
        self._error = without_tracebacks(error)  # kept past its except: no frames held

    def result(self) -> Record | None:
        raise self._error

    def cancel(self) -> None:
        pass
