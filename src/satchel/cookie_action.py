"""What a commit tells the response to do with the session cookie, in either mode."""

from __future__ import annotations

from typing import NamedTuple

from satchel.lifetime import Lifetime


def cookie_expiry(permanent: bool, created_at: float, lifetime: Lifetime,
                  permanent_lifetime: float | None, now: float) -> float | None:
    """When the browser should drop the cookie: None (browser session) unless permanent.

    ``permanent_lifetime`` (Flask's ``PERMANENT_SESSION_LIFETIME``; default the
    idle timeout) from now, never past the absolute deadline.
    """
    if not permanent:
        return None
    expiry = now + (lifetime.idle if permanent_lifetime is None else permanent_lifetime)
    if lifetime.absolute is not None:
        expiry = min(expiry, created_at + lifetime.absolute)
    return expiry


class CookieAction(NamedTuple):
    """What the response must do with the session cookie.

    ``value`` is None to expire the cookie; ``expires`` is None for a
    browser-session cookie.
    """

    value: str | None
    expires: float | None = None
