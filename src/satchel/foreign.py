"""Reading a session cookie that Flask's own session interface wrote (migration).

With ``SATCHEL_READ_FLASK_COOKIES``, such a cookie is read once and the
session re-issued in satchel's form, so switching to satchel logs nobody out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from satchel import ids
from satchel.session import Session

log = logging.getLogger("satchel")

MAX_FOREIGN_COOKIE_LENGTH = 8192

ForeignReader = Callable[[str], "dict[str, Any] | None"]
"""Reads a cookie Flask's own session interface wrote: its data, or None if not valid."""


def is_foreign_cookie(cookie: str) -> bool:
    """True for a value shaped like Flask's own session cookie (``payload.time.sig``).

    satchel's id cookies hold one dot and its sealed tokens none.
    """
    return cookie.count(".") >= 2


def load_foreign(session: Session, cookie: str, reader: ForeignReader) -> bool:
    """Fill ``session`` from a Flask session cookie: True, or False if ``cookie`` is not a
    valid one (the caller reports the rejection; see :mod:`satchel.events`)."""
    data = reader(cookie)
    if data is None:
        return False
    permanent = bool(data.pop("_permanent", False))
    session.adopt_foreign(data, permanent=permanent)
    log.info("read Flask session cookie %s; re-issuing it in satchel's form",
             ids.fingerprint(cookie))
    return True


