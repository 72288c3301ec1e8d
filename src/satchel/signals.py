"""satchel's blinker signals, in their own namespace (Flask's signals are blinker's too).

Connect with ``signal.connect(receiver, sender=app)``; each is sent with the
Flask app as sender (``None`` for an engine used without Flask), and only
keyword arguments. No signal carries a session id, a storage key or a cookie:
a session is named by ``fingerprint`` (``handle`` for a revoked one), the short
hash satchel's log lines use (``satchel.ids.fingerprint`` of the id; in cookie
mode, of the cookie value).

- :data:`session_created`: a new session was stored (``fingerprint``).
- :data:`session_rotated`: a session's id was replaced and the old one ended
  (``fingerprint`` of the new id, ``old_fingerprint``, ``reason``:
  ``"regenerate"`` or ``"user-changed"``).
- :data:`session_destroyed`: a stored session ended (``fingerprint``,
  ``reason``: ``"destroy"`` for ``session.destroy()``, ``"emptied"`` for one
  whose last key was removed).
- :data:`session_expired`: a session was found past a timeout (``fingerprint``,
  ``reason``: ``"idle"`` or ``"absolute"``); server-side, only by a store that keeps
  expired records (:class:`~satchel.store.ExpiredLookup`: not Redis) or past timeouts
  lowered since it was stored.
- :data:`session_rejected`: a cookie opened no session (``fingerprint``,
  ``reason``: ``"bad-signature"``, ``"unknown"``, ``"bad-seal"`` or
  ``"bad-flask-cookie"``).
- :data:`session_revoked`: a live session was ended by ``Satchel.revoke``,
  ``revoke_user`` or the cap on a user's sessions (no ``fingerprint``: the
  revoking code knows a session by its storage key only; ``handle``, its public
  handle, ``reason``: ``"revoke"``, ``"revoke-user"`` or ``"max-sessions"``,
  ``user`` or None).
- :data:`store_error`: the store could not be reached (``fingerprint`` or
  None, ``error``: the :class:`~satchel.errors.StoreUnavailable`,
  ``operation``: ``"load"``, ``"save"`` or ``"request"``).
- :data:`session_lock_timeout`: a ``@session_lock`` view waited its whole
  ``wait`` for its session's lock and gets 503; sent with ``fingerprint``,
  ``waited`` (seconds) and ``endpoint``.

:mod:`satchel.events` sends all but the last. A receiver that raises fails
the request (as with Flask's own signals): catch your errors in receivers.
"""

from __future__ import annotations

from blinker import Namespace

satchel_signals = Namespace()

session_created = satchel_signals.signal("session-created")
session_rotated = satchel_signals.signal("session-rotated")
session_destroyed = satchel_signals.signal("session-destroyed")
session_expired = satchel_signals.signal("session-expired")
session_rejected = satchel_signals.signal("session-rejected")
session_revoked = satchel_signals.signal("session-revoked")
store_error = satchel_signals.signal("store-error")
session_lock_timeout = satchel_signals.signal("session-lock-timeout")
