"""The server-side session cookie: a session id, signed.

The cookie holds ``<id>.<flag><mac>``: the 43-character session id, ``p``
(permanent) or ``b`` (browser session), and the first 16 bytes of an
HMAC-SHA256 of both (RFC 2104), unpadded base64url, under a key derived from
the secret key for this purpose only (:class:`~satchel.keys.KeyRing`). The
MAC is checked, in constant time, before any store call; a match is an id
this library issued, so its shape needs no other check. The flag tells a
permanent cookie from a browser-session one without a store call.
"""

from __future__ import annotations

import base64
import hmac
from typing import NamedTuple

from satchel import ids
from satchel.keys import KeyRing

COOKIE_PURPOSE = "satchel/v1/session-id-cookie"
MAX_COOKIE_LENGTH = 128  # a well-formed value is 67 characters; longer ones are reported cut
_MAC_CHARS = 22  # 16 bytes of HMAC-SHA256, unpadded base64
_BODY_LENGTH = ids.ID_LENGTH + 2  # "<id>.<flag>"
COOKIE_LENGTH = _BODY_LENGTH + _MAC_CHARS
_FLAG_AT = _BODY_LENGTH - 1


class Token(NamedTuple):
    """A verified cookie: the id, its permanence flag, the key that signed it (0 = current)."""

    sid: str
    permanent: bool
    key_index: int


def _mac_text(mac: bytes) -> str:
    """The cookie's spelling of a MAC: its first 16 bytes, unpadded base64url."""
    return base64.urlsafe_b64encode(mac[:16])[:_MAC_CHARS].decode("ascii")


def sign(sid: str, permanent: bool, keys: KeyRing) -> str:
    """The cookie value for ``sid``, signed with the current key of ``keys``."""
    body = f"{sid}.{'p' if permanent else 'b'}"
    return body + _mac_text(keys.mac(body.encode("ascii")))


def verify(cookie: str | None, keys: KeyRing) -> Token | None:
    """The token ``cookie`` carries, or None if it is not one ``keys`` signed (or is empty).

    Logs nothing: the engine reports a rejected cookie (:mod:`satchel.events`).
    """
    if not cookie:
        return None
    return _parse(cookie, keys)


def _parse(cookie: str, keys: KeyRing) -> Token | None:
    if len(cookie) != COOKIE_LENGTH or not cookie.isascii():
        return None
    body, flag, mac = cookie[:_BODY_LENGTH], cookie[_BODY_LENGTH - 1], cookie[_BODY_LENGTH:]
    if cookie[ids.ID_LENGTH] != "." or flag not in "pb":
        return None
    # The MAC is compared in its one canonical spelling, in constant time. It covers the
    # id, so a match is an id we issued: well-formed (never re-checked here).
    message = body.encode("ascii")
    for index in range(len(keys)):
        if hmac.compare_digest(_mac_text(keys.mac(message, index)), mac):
            return Token(cookie[:ids.ID_LENGTH], flag == "p", index)
    return None


def carries(cookie: str | None, sid: str, permanent: bool) -> bool:
    """True if ``cookie``, already verified under the current key, is what :func:`sign`
    gives for ``sid`` and ``permanent``: signing is deterministic, so it can be sent again
    as it is (an HMAC saved per write)."""
    return (cookie is not None and len(cookie) == COOKIE_LENGTH and cookie.startswith(sid)
            and cookie[_BODY_LENGTH - 1] == ("p" if permanent else "b"))


def looks_permanent(cookie: str | None) -> bool:
    """True if ``cookie`` is shaped like a permanent session's (unverified: a cheap test)."""
    return cookie is not None and len(cookie) == COOKIE_LENGTH and cookie[_FLAG_AT] == "p"
