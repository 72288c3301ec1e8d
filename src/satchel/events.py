"""Lifecycle events: each one sends its :mod:`satchel.signals` signal and writes one log line.

The engines hold an :class:`Events` and call it where a session is created,
rotated, destroyed, found expired or rejected, where the store fails, and
(the revoking API) where a session is revoked. Each call names the session
by :func:`satchel.ids.fingerprint` only, in the signal's ``fingerprint``
argument and on the ``satchel.security`` logger (``store_error`` logs on
``satchel``); the raw value it is given (an id, a cookie) goes nowhere else.

Cost: nothing is hashed, formatted or sent unless a receiver is connected to
the signal or the logger would write the line (``satchel.security`` logs
rejections at WARNING, the rest at INFO), so with Python's default logging
level and no receivers an event costs a look at the signal's receivers and at
the logger's level. A request that only reads or changes its session sends
no event.

Receivers run in the request, and an exception a receiver raises propagates,
as it does from Flask's own signals: the request fails (HTTP 500, logged by
Flask). Commit-time events are sent after the store was written, so a failing
``session_created`` or ``session_rotated`` receiver also loses the response's
cookie. This module imports no web framework.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from blinker import Signal

from satchel import signals
from satchel.errors import StoreUnavailable
from satchel.ids import fingerprint
from satchel.lifetime import ExpiryReason

security_log = logging.getLogger("satchel.security")
log = logging.getLogger("satchel")

RotateReason = Literal["regenerate", "user-changed"]
DestroyReason = Literal["destroy", "emptied"]
RejectReason = Literal["bad-signature", "unknown", "bad-seal", "bad-flask-cookie"]
RevokeReason = Literal["revoke", "revoke-user", "max-sessions"]
Operation = Literal["load", "save", "request"]

_INFO, _WARNING = logging.INFO, logging.WARNING
_REJECTED = {
    "bad-signature": (_WARNING, "rejected session cookie %s: bad shape or signature"),
    "unknown": (_INFO, "session %s not found or expired (or ended: a logout, a revocation);"
                       " starting a new one"),
    "bad-seal": (_WARNING, "rejected session cookie %s: not sealed for this cookie name with"
                           " the current or a fallback key, or its payload is malformed"),
    "bad-flask-cookie": (_WARNING, "rejected session cookie %s: not a valid Flask session"
                                   " cookie"),
}
_STORE_ERRORS = {
    ("load", False): "session store unavailable while loading the session; the request fails"
                     " (HTTP 503 unless the app handles StoreUnavailable): %s",
    ("load", True): "session store unavailable while loading; serving an empty session that"
                    " will not be saved (SATCHEL_ON_STORE_ERROR='anonymous'): %s",
    ("save", False): "session store unavailable while saving; responding 503: %s",
    ("save", True): "session store unavailable while saving; the response goes out without"
                    " the session cookie and the session's changes are lost"
                    " (SATCHEL_ON_STORE_ERROR='anonymous'): %s",
    ("request", False): "session store unavailable; responding 503: %s",
    ("request", True): "session store unavailable; responding 503: %s",
}


def _wanted(signal: Signal, level: int, logger: logging.Logger = security_log) -> bool:
    """True if anyone would see this event: a receiver, or a logger enabled for ``level``."""
    return bool(signal.receivers) or logger.isEnabledFor(level)


class Events:
    """Sends satchel's lifecycle signals with ``sender`` (the Flask app), and logs them.

    ``handle_of`` turns a storage key into the session's public handle
    (:mod:`satchel.handles`) for :meth:`revoked`; without it, revocations
    carry no handle. Every method takes the raw value that names the session
    (an id, a cookie in cookie mode, a storage key: never logged or sent, only
    fingerprinted or made a handle) and returns None. Exceptions raised by
    receivers propagate (see the module).
    """

    __slots__ = ("handle_of", "sender")

    def __init__(self, sender: object = None, *,
                 handle_of: Callable[[str], str] | None = None) -> None:
        self.sender = sender
        self.handle_of = handle_of

    def created(self, sid: str) -> None:
        """A new session was stored under ``sid`` (or sealed into cookie ``sid``)."""
        signal = signals.session_created
        if _wanted(signal, _INFO):
            tag = fingerprint(sid)
            security_log.info("session %s created", tag)
            signal.send(self.sender, fingerprint=tag)

    def rotated(self, old_sid: str, new_sid: str, reason: RotateReason = "regenerate") -> None:
        """The session under ``old_sid`` now lives under ``new_sid``; the old id is dead."""
        signal = signals.session_rotated
        if _wanted(signal, _INFO):
            old, new = fingerprint(old_sid), fingerprint(new_sid)
            security_log.info("session %s rotated to %s (%s)", old, new, reason)
            signal.send(self.sender, fingerprint=new, old_fingerprint=old, reason=reason)

    def destroyed(self, sid: str, reason: DestroyReason) -> None:
        """The stored session ``sid`` ended: ``destroy()``, or its last key was removed."""
        signal = signals.session_destroyed
        if _wanted(signal, _INFO):
            tag = fingerprint(sid)
            security_log.info("session %s ended (%s)", tag, reason)
            signal.send(self.sender, fingerprint=tag, reason=reason)

    def expired(self, sid: str, reason: ExpiryReason) -> None:
        """Session ``sid`` was found past its ``reason`` timeout and opened empty."""
        signal = signals.session_expired
        if _wanted(signal, _INFO):
            tag = fingerprint(sid)
            security_log.info("session %s expired: past its %s timeout", tag, reason)
            signal.send(self.sender, fingerprint=tag, reason=reason)

    def rejected(self, value: str, reason: RejectReason) -> None:
        """A cookie (``value``: an id the store does not hold, or a cookie that does not
        verify, cut to its length limit by the caller) opened no session."""
        signal = signals.session_rejected
        level, message = _REJECTED[reason]
        if _wanted(signal, level):
            tag = fingerprint(value)
            security_log.log(level, message, tag)
            signal.send(self.sender, fingerprint=tag, reason=reason)

    def revoked(self, storage_key: str, reason: RevokeReason, user: str | None = None) -> None:
        """The live session stored under ``storage_key`` (of ``user``, if known) was ended
        by :meth:`Satchel.revoke` (``"revoke"``), ``revoke_user`` (``"revoke-user"``) or
        the cap on a user's sessions (``"max-sessions"``). It is named by its public
        handle (None without :attr:`handle_of`), never by the storage key."""
        signal = signals.session_revoked
        if _wanted(signal, _INFO):
            handle = None if self.handle_of is None else self.handle_of(storage_key)
            security_log.info("session with handle %s (user %r) revoked (%s)",
                              handle or "-", user, reason)
            signal.send(self.sender, handle=handle, reason=reason, user=user)

    def store_error(self, error: StoreUnavailable, operation: Operation,
                    sid: str | None = None, *, anonymous: bool = False) -> None:
        """The store failed during ``operation`` of the session ``sid`` (None: no id yet).

        ``anonymous``: the request goes on without its session
        (``SATCHEL_ON_STORE_ERROR="anonymous"``) rather than failing with 503;
        it chooses the log line. Logged on ``satchel`` at ERROR, with the error's
        message (which holds no secrets).
        """
        signal = signals.store_error
        if _wanted(signal, logging.ERROR, log):
            tag = None if sid is None else fingerprint(sid)
            log.error(_STORE_ERRORS[operation, anonymous], error)
            signal.send(self.sender, fingerprint=tag, error=error, operation=operation)
