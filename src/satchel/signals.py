"""satchel's blinker signals, in their own namespace (Flask's signals are blinker's too).

Connect with ``signal.connect(receiver, sender=app)``; each is sent with the
Flask app as sender. No signal carries a session id: sessions are named by
``fingerprint``, the short hash satchel's log lines use.

- :data:`session_lock_timeout`: a ``@session_lock`` view waited its whole
  ``wait`` for its session's lock and gets 503; sent with ``fingerprint``,
  ``waited`` (seconds) and ``endpoint``.
"""

from __future__ import annotations

from blinker import Namespace

satchel_signals = Namespace()

session_lock_timeout = satchel_signals.signal("session-lock-timeout")
