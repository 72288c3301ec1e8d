"""``flask satchel check``: lint the app's session configuration.

Each rule names its source. Reads the config only (no store call), so it works in every
mode, cookie mode included, and with the store down. Never prints a key, only its name and
length.
"""

from __future__ import annotations

import difflib
from datetime import timedelta
from typing import NamedTuple

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from satchel.errors import ConfigError
from satchel.flask.opening import no_key
from satchel.keys import MIN_KEY_BYTES, fallback_tuple, ring_bytes, short_keys
from satchel.lifetime import seconds
from satchel.settings import KNOWN_KEYS, PREFIX

MAX_IDLE = 86400.0  # seconds: longer idle timeouts are a finding
_RANDOM_KEY = "python -c 'import secrets; print(secrets.token_hex(32))'"
_OWASP = "OWASP Session Management Cheat Sheet"


class Finding(NamedTuple):
    """One problem in a config: what it is, why it matters (with its source), and the fix."""

    what: str
    why: str
    fix: str

    def line(self) -> str:
        """The finding on one line: ``what: why; fix: fix``."""
        return f"{self.what}: {self.why}; fix: {self.fix}"


@click.command("check")
@with_appcontext
def check() -> None:
    """Lint the session config: print each finding (what, why, the fix) on a line.

    Exits with status 1 if there is any, 0 with "no findings". Works in every mode.
    """
    found = findings(current_app)
    for finding in found:
        click.echo(finding.line())
    if found:
        raise click.exceptions.Exit(1)
    click.echo("no findings")


def findings(app: Flask) -> list[Finding]:
    """Every finding on ``app``'s config, in a set order: cookie, keys, timeouts, keys'
    names. An empty list for a clean config."""
    return [*_cookie(app), *_keys(app), *_timeouts(app), *_unknown_keys(app)]


def _cookie(app: Flask) -> list[Finding]:
    """The cookie's attributes, as the app's session interface sets them."""
    interface = app.session_interface
    secure = bool(interface.get_cookie_secure(app))
    found = []
    # OWASP, "Cookies: Secure Attribute"; Flask docs, "Security Considerations: Set-Cookie
    # options". Excused in debug mode, for http://localhost.
    if not secure and not app.debug:
        found.append(Finding(
            "SESSION_COOKIE_SECURE is off", "browsers send the session cookie over plain HTTP"
            " too, where anyone on the network path can read it and take the session over"
            f" ({_OWASP}, 'Secure Attribute')", "set SESSION_COOKIE_SECURE = True and serve"
            " the app over HTTPS (under --debug this is not reported)"))
    # OWASP, "Cookies: HttpOnly Attribute".
    if not interface.get_cookie_httponly(app):
        found.append(Finding(
            "SESSION_COOKIE_HTTPONLY is off", "a script on the page (an XSS) can read the"
            f" session cookie and send it away ({_OWASP}, 'HttpOnly Attribute')",
            "set SESSION_COOKIE_HTTPONLY = True (Flask's default)"))
    # RFC 6265bis, storage model (section 5.7): "If the cookie's same-site-flag is None,
    # abort these steps and ignore the cookie entirely unless the cookie's secure-only-flag
    # is true".
    samesite = interface.get_cookie_samesite(app)
    if samesite is not None and str(samesite).lower() == "none" and not secure:
        found.append(Finding(
            f"SESSION_COOKIE_SAMESITE {samesite!r} without SESSION_COOKIE_SECURE", "browsers"
            " ignore a SameSite=None cookie that is not Secure, so no session outlives its"
            " request (RFC 6265bis, storage model)", "set SESSION_COOKIE_SECURE = True, or"
            " SESSION_COOKIE_SAMESITE = 'Lax' unless the app is used across sites"))
    # Flask docs, SESSION_COOKIE_PARTITIONED: "Browsers will refuse cookies with this set
    # unless it is also Secure" (CHIPS, draft-cutler-httpbis-partitioned-cookies).
    if interface.get_cookie_partitioned(app) and not secure:
        found.append(Finding(
            "SESSION_COOKIE_PARTITIONED without SESSION_COOKIE_SECURE", "browsers ignore a"
            " Partitioned cookie that is not Secure, so no session outlives its request (Flask"
            " docs, SESSION_COOKIE_PARTITIONED; CHIPS)", "set SESSION_COOKIE_SECURE = True"))
    found.extend(_prefix(app, secure))
    return found


def _prefix(app: Flask, secure: bool) -> list[Finding]:
    """RFC 6265bis section 4.1.3, cookie name prefixes: browsers ignore a ``__Secure-``
    cookie without Secure, and a ``__Host-`` one unless it is Secure, has no Domain and has
    Path=/. Matched case-insensitively, as browsers now do (RFC 6265bis storage model, after
    httpwg/http-extensions issue 2231)."""
    interface = app.session_interface
    name = interface.get_cookie_name(app)
    prefix = name[:7].lower()
    if prefix == "__host-":
        problems = [] if secure else ["without SESSION_COOKIE_SECURE"]
        domain = interface.get_cookie_domain(app)
        if domain:
            problems.append(f"with SESSION_COOKIE_DOMAIN {domain!r}")
        path = interface.get_cookie_path(app)
        if path != "/":
            problems.append(f"with path {path!r} (SESSION_COOKIE_PATH, else APPLICATION_ROOT)")
        fix = ("set SESSION_COOKIE_SECURE = True, SESSION_COOKIE_DOMAIN = None and"
               " SESSION_COOKIE_PATH = '/', or drop the prefix")
    elif name[:9].lower() == "__secure-":
        problems = [] if secure else ["without SESSION_COOKIE_SECURE"]
        fix = "set SESSION_COOKIE_SECURE = True, or drop the prefix"
    else:
        return []
    if not problems:
        return []
    what = f"cookie name {name!r} {' and '.join(problems)}"
    return [Finding(what, f"browsers ignore a {name[:name.index('-') + 1]} cookie that breaks"
                    " the prefix's rules, so no session outlives its request (RFC 6265bis,"
                    " section 4.1.3, cookie name prefixes)", fix)]


def _keys(app: Flask) -> list[Finding]:
    """``SECRET_KEY`` and its fallbacks: set, usable, and at least 32 bytes (256 bits,
    HMAC-SHA256's key size, RFC 2104 section 3; OWASP asks 64 bits of entropy of session
    ids, which a guessable key voids: every cookie can be forged offline)."""
    secret = app.config.get("SECRET_KEY")
    if secret is None or no_key(secret):
        return [Finding("SECRET_KEY is not set", "sessions are disabled: flask.session is"
                        " Flask's null session, which refuses writes (Flask docs, SECRET_KEY)",
                        f"set SECRET_KEY to a random string of 32 bytes or more, e.g. from"
                        f" {_RANDOM_KEY}")]
    try:
        ring = ring_bytes(secret, fallback_tuple(app.config.get("SECRET_KEY_FALLBACKS")))
    except ConfigError as err:
        return [Finding("unusable secret key", f"each request that uses the session fails: {err}",
                        "give each key as a str or bytes, as the message says")]
    found = []
    for entry in short_keys(ring):
        fix = (f"set a random key of {MIN_KEY_BYTES} bytes or more, e.g. from {_RANDOM_KEY}"
               f" (keep the old one in SECRET_KEY_FALLBACKS meanwhile)"
               if entry.startswith("SECRET_KEY ") else
               "remove it from SECRET_KEY_FALLBACKS once the sessions signed with it have"
               " expired: it still verifies cookies")
        found.append(Finding(f"{entry} is shorter than {MIN_KEY_BYTES} bytes", "a short key"
                             " can be guessed offline from one cookie, and then any session"
                             " forged (RFC 2104 section 3; Flask docs, SECRET_KEY)", fix))
    return found


def _timeouts(app: Flask) -> list[Finding]:
    """The idle timeout is a day or less, and an absolute timeout is set (OWASP Session
    Management Cheat Sheet, "Session Expiration": idle and absolute timeouts).

    The idle timeout (``SATCHEL_IDLE_TIMEOUT``, by default ``PERMANENT_SESSION_LIFETIME``)
    applies to browser-session cookies too, and browsers that restore the last session keep
    those for weeks, so it is checked whether sessions are made permanent or not. The
    absolute timeout is asked for whenever it is unset: any session can be made permanent
    (``session.permanent = True``, in code), and a permanent session's cookie outlives the
    browser; without one, a session in use never ends.
    """
    found = []
    try:
        idle = seconds(app.config.get("SATCHEL_IDLE_TIMEOUT"), name="SATCHEL_IDLE_TIMEOUT")
    except (TypeError, ValueError) as err:
        found.append(_unusable("SATCHEL_IDLE_TIMEOUT", err, "timedelta(hours=2)"))
    else:
        source = "SATCHEL_IDLE_TIMEOUT"
        if idle is None:
            idle = app.permanent_session_lifetime.total_seconds()
            source = "PERMANENT_SESSION_LIFETIME, as SATCHEL_IDLE_TIMEOUT is not set"
        if idle > MAX_IDLE:
            found.append(Finding(
                f"an idle timeout of {_duration(idle)} ({source})", "a session"
                " left unused that long still logs its browser in, browser-session cookies"
                " too (browsers that restore the last session keep them for weeks); OWASP"
                " suggests 2-5 minutes for high-value apps, 15-30 for low-risk ones"
                f" ({_OWASP}, 'Idle Timeout')", "set SATCHEL_IDLE_TIMEOUT to a day or less,"
                " e.g. timedelta(hours=2)"))
    try:
        absolute = seconds(app.config.get("SATCHEL_ABSOLUTE_TIMEOUT"),
                           name="SATCHEL_ABSOLUTE_TIMEOUT")
    except (TypeError, ValueError) as err:
        found.append(_unusable("SATCHEL_ABSOLUTE_TIMEOUT", err, "timedelta(hours=12)"))
    else:
        if absolute is None:
            found.append(Finding(
                "SATCHEL_ABSOLUTE_TIMEOUT is not set", "a session in use never ends, and a"
                " permanent session's cookie outlives the browser: a stolen cookie works for as"
                f" long as the thief keeps using it ({_OWASP}, 'Absolute Timeout')",
                "set SATCHEL_ABSOLUTE_TIMEOUT to the longest a login may last, e.g."
                " timedelta(hours=12) (OWASP: 4-8 hours for office use)"))
    return found


def _unusable(name: str, err: Exception, example: str) -> Finding:
    return Finding(f"{name} is unusable", f"each request that uses the session fails: {err}",
                   f"give a timedelta or a number of seconds above 0, e.g. {example}")


def _duration(value: float) -> str:
    """``2 days``, ``1 day, 1:00:00``: a duration as ``timedelta`` prints it, minus zeros."""
    return str(timedelta(seconds=value)).removesuffix(", 0:00:00")


def _unknown_keys(app: Flask) -> list[Finding]:
    """``SATCHEL_*`` keys satchel does not read (any case: config keys are case-sensitive),
    with the known key each is closest to (difflib), if any. A typo is silently ignored
    otherwise, and the setting it meant keeps its default."""
    suffixes = [known[len(PREFIX):] for known in KNOWN_KEYS]
    found = []
    for key in sorted(k for k in app.config if isinstance(k, str)):
        if not key.upper().startswith(PREFIX) or key in KNOWN_KEYS:
            continue
        close = difflib.get_close_matches(key.upper()[len(PREFIX):], suffixes, n=1)
        why = "satchel ignores it, so the setting it was meant for keeps its default"
        if key.upper() in KNOWN_KEYS:
            why += " (config keys are case-sensitive)"
        fix = (f"rename it to {PREFIX}{close[0]}" if close else
               f"remove it; satchel reads {', '.join(KNOWN_KEYS)}")
        found.append(Finding(f"{key} is not a key satchel reads", why, fix))
    return found
