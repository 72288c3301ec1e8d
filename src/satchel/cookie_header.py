"""``Set-Cookie`` headers for the session cookie, byte for byte what Werkzeug writes.

Werkzeug's ``dump_cookie`` re-validates and re-quotes every attribute on
every call. The attributes of a session cookie only change with the config,
so :class:`CookieTemplate` asks ``dump_cookie`` once, with placeholders for
the value and the expiry, and fills them in per response. A value that would
need quoting, which satchel's tokens never do, goes through ``dump_cookie``.
"""

from __future__ import annotations

import math
import re
from email.utils import formatdate

from werkzeug.http import dump_cookie

_VALUE_MARK = "satchel-value-mark"  # sent unquoted, like the tokens it stands for
_EXPIRES_MARK = "EXPIRES\x1fMARK"
# The characters Werkzeug sends unquoted (its _cookie_no_quote_re).
_UNQUOTED = re.compile(r"[\w!#$%&'()*+\-./:<=>?@\[\]^`{|}~]*", re.ASCII)
_SAMESITE = ("Strict", "Lax", "None")


def check_samesite(samesite: str | None) -> None:
    """Raise ``ValueError`` unless ``samesite`` is Strict, Lax, None (any case) or ``None``."""
    if samesite is not None and samesite not in _SAMESITE and samesite.title() not in _SAMESITE:
        raise ValueError(f"SESSION_COOKIE_SAMESITE {samesite!r}: expected 'Strict', 'Lax',"
                         " 'None' or None; nothing was saved")


class CookieTemplate:
    """The ``Set-Cookie`` header of one cookie name and set of attributes.

    Raises ``ValueError`` for a ``samesite`` other than Strict, Lax, None
    (any case) or ``None``, as Werkzeug would when the cookie is set.
    """

    __slots__ = (
        "_dated_head",
        "_dated_tail",
        "_domain",
        "_fast",
        "_head",
        "_httponly",
        "_last_date",
        "_partitioned",
        "_path",
        "_samesite",
        "_secure",
        "_session_tail",
        "name",
    )

    def __init__(self, name: str, *, domain: str | None, path: str | None, secure: bool,
                 httponly: bool, samesite: str | None, partitioned: bool) -> None:
        check_samesite(samesite)
        self.name = name
        self._domain, self._path, self._secure = domain, path, secure
        self._httponly, self._samesite, self._partitioned = httponly, samesite, partitioned
        session = self._dump(_VALUE_MARK, None)
        dated = self._dump(_VALUE_MARK, _EXPIRES_MARK)
        self._head = session.partition("=")[0] + "="  # the name as Werkzeug encodes it
        # Should the name itself hold '=' (no browser takes that), dump_cookie does it all.
        self._fast = (session.startswith(self._head + _VALUE_MARK)
                      and dated.startswith(self._head + _VALUE_MARK))
        self._session_tail = session.removeprefix(self._head + _VALUE_MARK)
        self._dated_head, _, self._dated_tail = (
            dated.removeprefix(self._head + _VALUE_MARK).partition(_EXPIRES_MARK))
        self._last_date: tuple[int, str] = (-1, "")  # (second, its HTTP date), swapped whole

    def header(self, value: str, expires: float | None) -> str:
        """The header value setting the cookie to ``value``, a session cookie if
        ``expires`` (seconds since the epoch) is None."""
        if not (self._fast and _UNQUOTED.fullmatch(value)):
            return self._dump(value, expires)
        if expires is None:
            return f"{self._head}{value}{self._session_tail}"
        return f"{self._head}{value}{self._dated_head}{self._http_date(expires)}{self._dated_tail}"

    def _dump(self, value: str, expires: str | float | None) -> str:
        return dump_cookie(self.name, value, expires=expires, domain=self._domain,
                           path=self._path, secure=self._secure, httponly=self._httponly,
                           samesite=self._samesite, partitioned=self._partitioned, max_size=0)

    def _http_date(self, when: float) -> str:
        if when < 0:
            return formatdate(when, usegmt=True)
        fraction, whole = math.modf(when)  # rounded to microseconds first, as datetime does
        second = int(whole) + (round(fraction * 1e6) >= 1_000_000)
        last = self._last_date
        if last[0] == second:  # one formatting per second is plenty
            return last[1]
        date = formatdate(second, usegmt=True)
        self._last_date = (second, date)
        return date
