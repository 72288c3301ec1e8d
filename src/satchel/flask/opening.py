"""What ``open_session`` derives from the config, once per set of config values.

Flask's config may change between requests (tests do), so every request reads
the keys it depends on; what they make (the key ring and timeouts of a
:class:`~satchel.engine.Policy`, the cookie name's prefix) is built once per
distinct set of values and looked up by them afterwards. The keys are checked
where the cache misses, so a config changed after ``init_app`` is refused
(ConfigError) on its first request at no cost to the others; a ring with a key
shorter than 32 bytes is logged once.

Every request pays for this read, used or not, so it is one C call:
:func:`add_defaults` gives each key ``init_app`` finds absent its default value
(``config.setdefault``, as Flask extensions do), and an ``itemgetter`` then
reads them all at once. A key deleted later makes it fall back to one
``config.get`` per key, with the same results.

Also here: the session cookie's value in a request's ``Cookie`` header.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, NamedTuple, Protocol

from flask import Flask, Request

from satchel.keys import Secret, ShortKeyLog, fallback_tuple, ring_bytes
from satchel.lifetime import Lifetime, seconds

_CACHE_SIZE = 32  # distinct configs remembered (cleared when full)

# What open_session reads, in Opening's order of making: a config change of any re-opens.
OPEN_KEYS = ("SECRET_KEY", "SECRET_KEY_FALLBACKS", "SATCHEL_IDLE_TIMEOUT",
             "SATCHEL_ABSOLUTE_TIMEOUT", "PERMANENT_SESSION_LIFETIME", "SESSION_COOKIE_NAME",
             "SATCHEL_READ_FLASK_COOKIES", "SATCHEL_PREFETCH")
# The value each key of OPEN_KEYS means when absent (Flask's own keys: Flask always has them)
_ABSENT = {"SECRET_KEY_FALLBACKS": None, "SATCHEL_IDLE_TIMEOUT": None,
           "SATCHEL_ABSOLUTE_TIMEOUT": None, "SATCHEL_READ_FLASK_COOKIES": None,
           "SATCHEL_PREFETCH": True}
# Reads every key of OPEN_KEYS at once (open_session's first step; see add_defaults)
read_open_keys = itemgetter(*OPEN_KEYS)


def add_defaults(config: Any) -> None:
    """Give each key of :data:`OPEN_KEYS` that ``config`` lacks the value its absence means,
    so that :meth:`Openings.opening` reads them all in one call (Flask's own keys are left
    alone: Flask sets them). Changes no value the config holds."""
    for key, value in _ABSENT.items():
        config.setdefault(key, value)


class PolicyBuilder(Protocol):
    """An engine's ``build_policy``."""

    def build_policy(self, secret: Secret, fallbacks: Any, lifetime: Lifetime) -> Any: ...


# How open_session opens a session (Opening.how): bits
DEFER = 0  # only remember the request: its cookie is looked up on first use, or at save
BY_PATH = 1  # learn which paths use their session, open at once (prefetching) those that do
AT_ONCE = 2  # open at once (the cookie's name or reader needs the app)


# What a request's Cookie header holds for a session never used (CookieStates' answers)
NO_COOKIE = 0  # no session cookie
PLAIN_COOKIE = 1  # one whose save does nothing (a browser-session cookie)
PERMANENT_COOKIE = 2  # one that looks permanent: Flask would re-send it

_STATES_SIZE = 2048  # headers remembered (cleared when full)
_STATES_MAX_HEADER = 1024  # longer headers are looked at each time, never remembered


class CookieStates(dict[str | None, tuple[int, str | None]]):
    """What a ``Cookie`` header holds, by header: the session cookie's state
    (:data:`NO_COOKIE`, :data:`PLAIN_COOKIE` or :data:`PERMANENT_COOKIE`: whether the save
    of a session the request never used has anything to do) and value
    (:func:`session_cookie`).

    A browser sends the same header on each request, so the answer for the last
    :data:`_STATES_SIZE` headers up to :data:`_STATES_MAX_HEADER` characters is kept: a
    dict lookup (``states.get(header)``, None if not kept) instead of a parse. The header
    holds the raw cookie: never shown in ``repr``. Thread-safe enough: a lost update is
    a parse done again.
    """

    def __init__(self, name: str, prefix: str | None, looks_permanent: Any) -> None:
        """``name``, ``prefix``: see :func:`session_cookie`; ``looks_permanent(cookie)``:
        the engine's cheap test of a cookie value's permanence."""
        super().__init__()
        self[None] = _NO_HEADER
        self.name, self.prefix, self.looks_permanent = name, prefix, looks_permanent

    def of(self, request: Request) -> tuple[int, str | None]:
        """The state and value of ``request``'s session cookie (kept for the next
        request)."""
        header = request.environ.get("HTTP_COOKIE")
        entry = self.get(header)
        if entry is None:
            cookie = session_cookie(request, self.name, self.prefix)
            entry = ((NO_COOKIE if cookie is None
                      else PERMANENT_COOKIE if cookie and self.looks_permanent(cookie)
                      else PLAIN_COOKIE), cookie)
            if type(header) is str and len(header) <= _STATES_MAX_HEADER:
                if len(self) >= _STATES_SIZE:
                    self.clear()
                    self[None] = _NO_HEADER
                self[header] = entry
        return entry

    def __repr__(self) -> str:
        return f"<CookieStates of {len(self)} headers>"


_NO_HEADER: tuple[int, str | None] = (NO_COOKIE, None)


class Opening(NamedTuple):
    """What a request's session is opened with; ``[0]``, ``[1]``: the policy and lifetime."""

    policy: Any
    permanent_lifetime: float  # PERMANENT_SESSION_LIFETIME, in seconds
    cookie_name: str  # SESSION_COOKIE_NAME
    cookie_prefix: str | None  # cookie_name + "=" (None for a name the fast parse can't take)
    read_flask_cookies: bool  # SATCHEL_READ_FLASK_COOKIES
    prefetch: bool  # SATCHEL_PREFETCH (default True)
    how: int  # DEFER, or the bits BY_PATH, AT_ONCE
    open_later: Any  # opens a session open_session deferred, then loads it (the interface's)
    cookie_states: CookieStates  # for this cookie name


class Openings:
    """The policies and openings of one session interface, cached by config values."""

    def __init__(self, engine: PolicyBuilder, *, can_prefetch: bool = False,
                 name_needs_app: bool = False, open_later: Any = None,
                 looks_permanent: Any = None) -> None:
        """``can_prefetch``: the engine can send a load ahead (sessions are opened by path,
        see :data:`BY_PATH`); ``name_needs_app``: the cookie's name is not the config's
        (a subclass's ``get_cookie_name``: every session is opened at once);
        ``open_later``: :attr:`Opening.open_later`; ``looks_permanent``: see
        :class:`CookieStates` (None: no cookie looks permanent)."""
        self.engine = engine
        self._looks_permanent = looks_permanent or (lambda cookie: False)
        self._can_prefetch = can_prefetch
        self._name_needs_app = name_needs_app
        self._open_later = open_later
        self._policies: dict[tuple[Any, ...], tuple[Any, float]] = {}
        self._openings: dict[tuple[Any, ...], Opening] = {}
        # The config values of the last request, and its Opening (open_session reads it)
        self.last: tuple[tuple[Any, ...] | None, Opening | None] = (None, None)
        self._short_keys = ShortKeyLog()

    def opening(self, app: Flask, values: tuple[Any, ...] | None = None) -> Opening | None:
        """What ``app``'s config says now; None while ``SECRET_KEY`` is not set (Flask's
        null session). ``values``: what ``read_open_keys(app.config)`` gave, if the caller
        read it (None: read here). Raises ConfigError for an unusable key or timeout,
        KeyError for a config key Flask always has (``SECRET_KEY``,
        ``PERMANENT_SESSION_LIFETIME``, ``SESSION_COOKIE_NAME``) that was deleted."""
        config = app.config
        if values is None:
            try:
                values = read_open_keys(config)  # every key of OPEN_KEYS: see add_defaults
            except KeyError:  # one was deleted (or add_defaults never saw this config)
                values = (*_policy_values(config), config.get("SESSION_COOKIE_NAME"),
                          config.get("SATCHEL_READ_FLASK_COOKIES"),
                          config.get("SATCHEL_PREFETCH", True))
        if type(values[1]) is list:  # SECRET_KEY_FALLBACKS as Flask documents it
            values = (values[0], tuple(values[1]), *values[2:])
        last, found = self.last  # the usual case: the config of the last request
        if values == last:
            return found
        try:
            found = self._openings.get(values)
        except TypeError:  # unhashable (a bytearray key, a list among the fallbacks): built
            return self._build_opening(app, values)  # again on each request, never "last"
        if found is None:
            found = self._build_opening(app, values)
        if found is not None:
            self.last = (values, found)
        return found

    def _build_opening(self, app: Flask, values: tuple[Any, ...]) -> Opening | None:
        if no_key(values[0]):
            return None
        policy, lifetime = self._policy(app, values[:5])
        name = app.config["SESSION_COOKIE_NAME"]
        plain = type(name) is str and "=" not in name and name == name.strip()
        prefix = name + "=" if plain else None
        read_flask_cookies, prefetch = bool(values[6]), bool(values[7])
        how = ((BY_PATH if prefetch and self._can_prefetch else DEFER)
               | (AT_ONCE if read_flask_cookies or self._name_needs_app else DEFER))
        found = Opening(policy, lifetime, name, prefix, read_flask_cookies, prefetch, how,
                        self._open_later, CookieStates(name, prefix, self._looks_permanent))
        self._remember(self._openings, values, found)
        return found

    def policy_and_lifetime(self, app: Flask) -> tuple[Any, float]:
        """The policy ``app``'s config names now, and ``PERMANENT_SESSION_LIFETIME`` in
        seconds. Raises ConfigError for an unusable key or timeout."""
        return self._policy(app, _policy_values(app.config))

    def _policy(self, app: Flask, cache_key: tuple[Any, ...]) -> tuple[Any, float]:
        """:meth:`policy_and_lifetime` for the config values ``cache_key``
        (:func:`_policy_values`), from the cache or built."""
        try:
            cached = self._policies.get(cache_key)
        except TypeError:  # unhashable: a bytearray key, a list among the fallbacks
            cached = None
        if cached is None:
            cached = self._build_policy(app, cache_key)
        return cached

    def _build_policy(self, app: Flask, cache_key: tuple[Any, ...]) -> tuple[Any, float]:
        secret, fallbacks, idle, absolute, _ = cache_key
        if type(fallbacks) is not tuple:
            fallbacks = () if fallbacks is None else fallback_tuple(fallbacks)  # ConfigError: a str
        ring = ring_bytes(secret, fallbacks)  # ConfigError for an unusable key
        lifetime_default = app.permanent_session_lifetime
        idle_s = seconds(idle if idle is not None else lifetime_default,
                         name="SATCHEL_IDLE_TIMEOUT")
        assert idle_s is not None
        timeouts = Lifetime(idle_s, seconds(absolute, name="SATCHEL_ABSOLUTE_TIMEOUT"))
        policy = self.engine.build_policy(secret, fallbacks, timeouts)
        self._short_keys.log(ring)
        built = (policy, lifetime_default.total_seconds())
        self._remember(self._policies, cache_key, built)
        return built

    @staticmethod
    def _remember(cache: dict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any) -> None:
        try:
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            cache[key] = value
        except TypeError:  # unhashable: built again on each request
            pass


def _policy_values(config: Any) -> tuple[Any, ...]:
    """The config values a policy is built from, as its cache key: ``SECRET_KEY``,
    ``SECRET_KEY_FALLBACKS`` (a list, as Flask documents it, keyed by its items as a tuple),
    the idle and absolute timeouts, ``PERMANENT_SESSION_LIFETIME``. KeyError if
    ``SECRET_KEY`` or ``PERMANENT_SESSION_LIFETIME``, which Flask always has, was deleted."""
    fallbacks = config.get("SECRET_KEY_FALLBACKS")
    if type(fallbacks) is list:
        fallbacks = tuple(fallbacks)
    return (config["SECRET_KEY"], fallbacks, config.get("SATCHEL_IDLE_TIMEOUT"),
            config.get("SATCHEL_ABSOLUTE_TIMEOUT"), config["PERMANENT_SESSION_LIFETIME"])


def no_key(secret: object) -> bool:
    """True for a ``SECRET_KEY`` that is not set (None, "" or b""): Flask's null session."""
    return secret is None or (type(secret) in (str, bytes) and not secret)


def session_cookie(request: Request, name: str, prefix: str | None = None) -> str | None:
    """``request.cookies.get(name)``, without parsing every cookie when none is quoted.

    ``prefix`` (``name + "="``, for a name without "=" or surrounding spaces) takes the
    common case, a header that starts with the session cookie, without a split.
    """
    header: str | None = request.environ.get("HTTP_COOKIE")
    if not header:
        return None
    if prefix is not None and header.startswith(prefix):  # the first pair is ours
        if '"' in header or "\\" in header:  # quoting and escapes: Werkzeug's full parser
            return request.cookies.get(name)
        end = header.find(";")
        return (header[len(prefix):] if end < 0 else header[len(prefix):end]).strip()
    if name not in header:
        return None
    if '"' in header or "\\" in header:
        return request.cookies.get(name)
    for pair in header.split(";"):
        key, _, value = pair.partition("=")
        if key.strip() == name:
            return value.strip()
    return None
