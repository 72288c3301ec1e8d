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

security_log = logging.getLogger("satchel.security")
log = logging.getLogger("satchel")

MAX_FOREIGN_COOKIE_LENGTH = 8192

ForeignReader = Callable[[str], "dict[str, Any] | None"]
"""Reads a cookie Flask's own session interface wrote: its data, or None if not valid."""


def is_foreign_cookie(cookie: str) -> bool:
    """True for a value shaped like Flask's own session cookie (``payload.time.sig``).

    satchel's id cookies hold one dot and its sealed tokens none.
    """
    return cookie.count(".") >= 2


def load_foreign(session: Session, cookie: str, reader: ForeignReader) -> None:
    """Fill ``session`` from a Flask session cookie, or log why not."""
    data = reader(cookie)
    if data is None:
        security_log.warning("rejected session cookie %s: not a valid Flask session cookie",
                             ids.fingerprint(cookie[:MAX_FOREIGN_COOKIE_LENGTH]))
        return
    permanent = bool(data.pop("_permanent", False))
    session.adopt_foreign(data, permanent=permanent)
    log.info("read Flask session cookie %s; re-issuing it in satchel's form",
             ids.fingerprint(cookie))


