"""Who is logged in: the user key, the device, and the cap on one user's sessions.

``SATCHEL_USER_KEY`` names the session key that holds the logged-in user (``"_user_id"``
by default, the key Flask-Login writes). When a request changes its value (a login, a
logout, a switch of user), the engine rotates the session id at commit, as
``session.regenerate()`` does, against session fixation (OWASP Session Management Cheat
Sheet, "Renew the Session ID After Any Privilege Level Change"), and files the new record
under that user, so a :class:`~satchel.store.UserIndex` store can list and end them. Users
compare as strings (Flask-Login stores ``str(id)``); a missing key, or ``None``, is no user.

``SATCHEL_MAX_SESSIONS_PER_USER`` caps one user's sessions: at a login past the cap, the
oldest (by creation) of that user's other sessions are ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from satchel.store import DEVICE_MAX, Store, UserIndex

DEFAULT_USER_KEY = "_user_id"

log = logging.getLogger("satchel")


def user_value(value: Any) -> str | None:
    """The user a session key's value names: its ``str``, or None for None (no user).

    An empty string names no one either (Flask-Login never writes one): None.
    """
    if value is None:
        return None
    user = value if isinstance(value, str) else str(value)
    return user or None


def describe_device(user_agent: str | None, address: str | None) -> str | None:
    """A short description of a browser for a session list: its user agent and address,
    at most :data:`~satchel.store.DEVICE_MAX` characters (the user agent is cut, never the
    address). None if neither is known."""
    # Printable characters only: a user agent is the client's to choose, and a device is
    # shown in pages, terminals (flask satchel list) and logs, where ESC or BEL would act.
    agent = " ".join("".join(c if c.isprintable() else " " for c in user_agent or "").split())
    where = f" ({address})" if address else ""
    if not agent and not where:
        return None
    room = DEVICE_MAX - len(where)
    if len(agent) > room:
        agent = agent[: max(room - 1, 0)] + "…"
    return (agent + where).strip()[:DEVICE_MAX]


@dataclass(frozen=True)
class UserRules:
    """What the config says about users: read once, by ``init_app``.

    ``key``: the session key naming the user (``SATCHEL_USER_KEY``), or None to turn the
    feature off. ``max_sessions``: ``SATCHEL_MAX_SESSIONS_PER_USER`` (None: no cap).
    """

    key: str | None = DEFAULT_USER_KEY
    max_sessions: int | None = None

    def user_of(self, data: dict[str, Any]) -> str | None:
        """The user a session's data names (see :func:`user_value`)."""
        if self.key is None:
            return None
        return user_value(dict.get(data, self.key))

    def evict_past_cap(self, store: Store, user: str, current: str,
                       end: Callable[[str], None]) -> list[str]:
        """After a login of ``user`` into the session stored under ``current``: end, with
        ``end(storage_key)``, the oldest of the user's other sessions past the cap; return
        their storage keys. Nothing without a cap, or on a store that cannot list a user's
        sessions (logged once per call: the cap cannot hold there)."""
        cap = self.max_sessions
        if cap is None:
            return []
        if not isinstance(store, UserIndex):
            log.warning("SATCHEL_MAX_SESSIONS_PER_USER is set, but %r cannot list a user's"
                        " sessions; the cap is not applied", store)
            return []
        others = [info for info in store.sessions_of(user) if info.key != current]
        excess = len(others) + 1 - cap
        if excess <= 0:
            return []
        gone = [info.key for info in sorted(others, key=lambda info: info.created_at)[:excess]]
        for key in gone:
            end(key)
        return gone
