"""Passwords out of store URLs, conninfo strings and the driver messages that echo them.

A store URL may carry a password in its user info (``redis://user:pw@host``)
or in its query: redis-py passes every query parameter to the connection
(``?password=``, ``?ssl_password=``), and libpq reads ``?password=`` and
``?sslpassword=``. A PostgreSQL conninfo string (``host=db password=pw``) may
be given where a URL was expected. Every satchel message, log line, exception
and repr that shows such a value shows :func:`redact_url` of it, and driver
text quoted in a message goes through :func:`scrub` first.

Redaction errs on the side of hiding: a raw ``@``, ``/``, ``?`` or ``#`` in a
password (which should be percent-encoded) moves where a parser thinks the
password ends, so everything up to the last ``@`` that has a ``:`` before it
is treated as user info.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, unquote_plus

MASK = "***"
# A parameter whose (percent-decoded) name holds one of these is a secret: password, pass,
# ssl_password, sslpassword, pwd, secret, token, auth_token...
_SECRET_NAME = re.compile(r"pass|pwd|secret|token", re.IGNORECASE)
# libpq's key = value conninfo: a value is a bare word or single-quoted with backslash escapes.
_CONNINFO_PAIR = re.compile(r"([\w.-]+)(\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s']*)")
_QUERY_SEPARATORS = re.compile(r"([&;])")


def redact_url(url: str) -> str:
    """``url`` with every password replaced by ``***``, for messages and logs.

    The password of the user info, the value of every query parameter whose
    name (any case, percent-decoded) contains ``pass``, ``pwd``, ``secret`` or
    ``token``, and, for a ``key=value`` conninfo string, every such key's value.
    A URL without a password is returned unchanged.
    """
    head, userinfo, tail = _split(url)
    if head is None:
        return _CONNINFO_PAIR.sub(_mask_pair, url)
    if userinfo is not None and ":" in userinfo:
        head += userinfo.split(":", 1)[0] + ":" + MASK + "@"
    elif userinfo is not None:
        head += userinfo + "@"
    path, question, query = tail.partition("?")
    if not question:
        return head + tail
    pieces = _QUERY_SEPARATORS.split(query)
    masking = False
    for index in range(0, len(pieces), 2):  # odd indexes hold the separators
        name, equals, _ = pieces[index].partition("=")
        if equals:
            masking = bool(_SECRET_NAME.search(unquote_plus(name)))
            if masking:
                pieces[index] = name + "=" + MASK
        elif masking and pieces[index]:  # a raw '&' inside a password: still the password
            pieces[index] = MASK
    return head + path + "?" + "".join(pieces)


def secrets_of(url: str) -> tuple[str, ...]:
    """The passwords ``url`` carries (as written and percent-decoded), longest first."""
    found: set[str] = set()
    head, userinfo, tail = _split(url)
    if head is None:
        for match in _CONNINFO_PAIR.finditer(url):
            if _SECRET_NAME.search(match.group(1)):
                value = match.group(3)
                found.add(value)
                if value.startswith("'"):
                    found.add(re.sub(r"\\(.)", r"\1", value.strip("'")))
    else:
        if userinfo is not None and ":" in userinfo:
            password = userinfo.split(":", 1)[1]
            found.update((password, unquote(password)))
        query = tail.partition("?")[2]
        masking = False
        for piece in _QUERY_SEPARATORS.split(query)[::2]:
            name, equals, value = piece.partition("=")
            if equals:
                masking = bool(_SECRET_NAME.search(unquote_plus(name)))
            elif masking:
                value = piece
            if masking:
                found.update((value, unquote(value), unquote_plus(value)))
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` (a driver's message) with every secret in ``secrets`` replaced by ``***``.

    A quoted token (``'...'`` or ``"..."``) that is part of a secret is
    replaced too: a parser that stopped inside a password (at a raw ``/``,
    say) quotes the piece it read, e.g. redis-py's "Port could not be cast to
    integer value as 'pa'".
    """
    secrets = tuple(sorted((s for s in secrets if s), key=len, reverse=True))
    if not secrets:
        return text
    for secret in secrets:
        text = text.replace(secret, MASK)
    spans = []
    for start, char in enumerate(text):
        if char in "'\"":
            end = text.find(char, start + 1)
            token = text[start + 1:end]
            if end > start + 1 and token != MASK and any(token in s for s in secrets):
                spans.append((start + 1, end))
    for start, end in reversed(_merged(spans)):
        text = text[:start] + MASK + text[end:]
    return text


def chainable(err: BaseException, secrets: Iterable[str]) -> BaseException | None:
    """``err`` to chain a message-bearing exception from (``raise ... from``), or None
    if ``err``'s own text holds one of ``secrets``: a traceback prints the chain."""
    return err if scrub(str(err), secrets) == str(err) else None


def _split(url: str) -> tuple[str | None, str | None, str]:
    """``(scheme://, user info or None, the rest)``; ``(None, None, url)`` for a non-URL."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None, None, url
    authority_end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, authority_end)
    if at < 0:  # a raw '/', '?' or '#' in the password ends the authority early
        at = rest.rfind("@")
        if at >= 0 and ":" not in rest[:at]:
            at = -1
    if at < 0:
        return scheme + sep, None, rest
    return scheme + sep, rest[:at], rest[at + 1:]


def _mask_pair(match: re.Match[str]) -> str:
    if not _SECRET_NAME.search(match.group(1)):
        return match.group(0)
    return match.group(1) + match.group(2) + MASK


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping ``(start, end)`` spans, sorted, merged into one each."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
