"""satchel's own exceptions. Each names the value at fault and the fix."""

from __future__ import annotations

from typing import TypeVar

# The requirements of each extra in pyproject.toml (tests/test_package.py keeps them equal).
# satchel is not on PyPI, so ``pip install`` of 'satchel[redis]' would not resolve: a hint names
# the drivers themselves, and the extra as installed from a checkout.
EXTRAS: dict[str, tuple[str, ...]] = {
    "redis": ("redis[hiredis]>=5.3",),
    "postgres": ("psycopg[binary]>=3.2", "psycopg-pool>=3.2"),
}


def install_hint(extra: str) -> str:
    """The commands that install ``extra`` (``"redis"`` or ``"postgres"``), for a message.

    Raises KeyError for an extra satchel does not have.
    """
    drivers = " ".join(f"'{requirement}'" for requirement in EXTRAS[extra])
    return (f"pip install {drivers} (or, in a satchel checkout, pip install -e '.[{extra}]';"
            " see the README's Installation)")


_Error = TypeVar("_Error", bound="BaseException | None")


def without_tracebacks(err: _Error) -> _Error:
    """``err`` (returned, or None) with the traceback of it and of every exception it chains
    to (``__cause__``, ``__context__``) removed, in place. Types and messages stay.

    For an error kept past the ``except`` that caught it, to raise or show later (a store's
    breaker keeps the error that tripped it and a probe's error; a prefetched load keeps its
    failure). Through its traceback it would keep every frame of the stack it was raised on,
    with their locals (a request's, with its session), and the frame that keeps the error
    then makes a reference cycle: left to the cycle collector, whose full passes pause every
    thread of the process. Re-raised, it gets a traceback from where it is raised again.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [err]
    while pending:
        each = pending.pop()
        if each is None or id(each) in seen:
            continue
        seen.add(id(each))
        each.__traceback__ = None
        pending += (each.__cause__, each.__context__)
    return err


class SatchelError(Exception):
    """Base class of every exception satchel raises on purpose."""


class ConfigError(SatchelError, ValueError):
    """A configuration value is unusable; the message names it and the fix."""


class NotSupported(SatchelError):
    """The operation needs something this mode or store does not have: listing or revoking
    sessions one by one in cookie mode (they live in the browsers), or on a store without
    a user index. The message names what is missing."""


class StoreUnavailable(SatchelError):
    """The store could not be reached; raised from the driver's error."""


class CodecError(SatchelError, TypeError):
    """A session value cannot be encoded, or stored bytes cannot be decoded."""


class SessionTooLarge(SatchelError):
    """A client-side session would not fit in a cookie the browser keeps.

    Raised when the response is saved, instead of sending a cookie the
    browser would silently drop. Store less in the session (ids, not
    objects), or use a server-side store, whose cookie is a fixed 67 bytes.
    """

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"the session cookie would be {size} bytes, over the limit of {limit}"
            " (MAX_COOKIE_SIZE) past which browsers drop it and the session is lost; store"
            " less in the session, or keep sessions server-side"
            " (SATCHEL_STORE='sqlite:///sessions.sqlite3')")


class SessionLocked(SatchelError):
    """A ``@session_lock`` view waited its whole ``wait`` for its session's lock.

    Another request on the same session held it throughout. Nothing of this
    request was loaded or written; the default handler answers HTTP 503 with
    ``Retry-After`` (see :mod:`satchel.locking`). ``waited`` is in seconds.
    """

    def __init__(self, waited: float, fingerprint: str) -> None:
        self.waited = waited
        self.fingerprint = fingerprint
        super().__init__(
            f"session {fingerprint}: its lock stayed held by another request for the whole"
            f" wait of {waited:g} s; retry later, or give @session_lock a longer wait=")
