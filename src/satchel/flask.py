"""The Flask face: the ``Satchel`` extension and its ``SessionInterface``.

The only module that imports Flask. Config is read per request wherever
Flask reads it per request, so tests may change it after the app is built;
``SATCHEL_STORE`` is read once, by ``init_app``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SecureCookieSessionInterface, SessionInterface, SessionMixin
from itsdangerous import BadSignature

from satchel.codec import TaggedCodec, default_codec
from satchel.cookie_header import CookieTemplate, check_samesite
from satchel.cookie_mode import CookieEngine, SealedCookies
from satchel.engine import Engine
from satchel.errors import ConfigError, SessionTooLarge, StoreUnavailable
from satchel.foreign import ForeignReader
from satchel.keys import ShortKeyLog, as_bytes, fallback_bytes, fallback_tuple, ring_bytes
from satchel.lifetime import Clock, Lifetime, seconds, system_clock
from satchel.session import Session
from satchel.session_use import SessionUse
from satchel.store import Store
from satchel.tombstone import DEFAULT_GRACE
from satchel.urls import DEFAULT_SQLITE_NAME, store_from_url

_POLICY_CACHE_SIZE = 32
_BROWSER_COOKIE_LIMIT = 4093  # Flask's MAX_COOKIE_SIZE default
_UNAVAILABLE_BODY = b"Service Unavailable: the session store cannot be reached. Try again shortly."
_RETRY_AFTER = "5"
log = logging.getLogger("satchel")


class FlaskSession(Session, SessionMixin):  # type: ignore[override]
    """A :class:`~satchel.session.Session` that Flask recognises as its own kind."""

    policy: Any = None  # the keys and timeouts the request was opened with
    permanent_lifetime = 0.0  # PERMANENT_SESSION_LIFETIME then, in seconds
    path: str | None = None  # the request's path, when the interface learns which use sessions


class SatchelSessionInterface(SessionInterface):
    """Flask's two-method contract, delegated to the framework-free engine."""

    def __init__(self, engine: Engine | CookieEngine) -> None:
        self.engine = engine
        self._policies: dict[tuple[Any, ...], tuple[Any, float]] = {}
        self._templates: dict[tuple[Any, ...], CookieTemplate] = {}
        self._short_keys = ShortKeyLog()
        # What requests to each path did with their session: a request expected to use it
        # prefetches it (for a store that can prefetch).
        self.session_use = SessionUse() if engine.can_prefetch else None

    def policy(self, app: Flask) -> Any:
        """The key ring and timeouts the app's config names now (cached by value)."""
        return self._policy_and_lifetime(app)[0]

    def _policy_and_lifetime(self, app: Flask) -> tuple[Any, float]:
        """:meth:`policy`, and ``PERMANENT_SESSION_LIFETIME`` in seconds (cached together).

        The keys are checked where the cache misses, so a config changed after
        ``init_app`` is refused (ConfigError) on its first request at no cost to
        the others; a ring with a key shorter than 32 bytes is logged once.
        """
        config = app.config
        secret = config["SECRET_KEY"]
        fallbacks = config.get("SECRET_KEY_FALLBACKS")
        if type(fallbacks) is not tuple:
            fallbacks = (() if fallbacks is None else tuple(fallbacks) if type(fallbacks) is list
                         else fallback_tuple(fallbacks))  # ConfigError for a str
        idle = config.get("SATCHEL_IDLE_TIMEOUT")
        absolute = config.get("SATCHEL_ABSOLUTE_TIMEOUT")
        lifetime = config["PERMANENT_SESSION_LIFETIME"]  # a timedelta or seconds, as Flask allows
        cache_key = (secret, fallbacks, idle, absolute, lifetime)
        try:
            cached = self._policies.get(cache_key)
        except TypeError:  # unhashable: a bytearray key, a list among the fallbacks
            cached = None
        if cached is None:
            ring = ring_bytes(secret, fallbacks)  # ConfigError for an unusable key
            lifetime_default = app.permanent_session_lifetime
            idle_s = seconds(idle if idle is not None else lifetime_default,
                             name="SATCHEL_IDLE_TIMEOUT")
            assert idle_s is not None
            timeouts = Lifetime(idle_s, seconds(absolute, name="SATCHEL_ABSOLUTE_TIMEOUT"))
            policy = self.engine.build_policy(secret, fallbacks, timeouts)
            self._short_keys.log(ring)
            if len(self._policies) >= _POLICY_CACHE_SIZE:
                self._policies.clear()
            cached = self._policies[cache_key] = (policy, lifetime_default.total_seconds())
        return cached

    def check_config(self, app: Flask) -> None:
        """Build the policy ``app``'s config names now (ConfigError for an unusable key),
        logging short keys; or log that sessions are disabled while ``SECRET_KEY`` is
        not set (they stay Flask's null session, as without satchel)."""
        if _no_key(app.config["SECRET_KEY"]):
            log.warning("SECRET_KEY is not set: sessions are disabled (flask.session is Flask's"
                        " null session, which refuses writes) until app.config['SECRET_KEY']"
                        " is set")
            return
        self._policy_and_lifetime(app)

    def open_session(self, app: Flask, request: Request) -> FlaskSession | None:
        if not app.secret_key and _no_key(app.secret_key):  # False or 0: refused below
            return None
        name = self.get_cookie_name(app)
        session = FlaskSession()
        foreign = (_flask_cookie_reader(app) if app.config.get("SATCHEL_READ_FLASK_COOKIES")
                   else None)
        session.policy, session.permanent_lifetime = self._policy_and_lifetime(app)
        cookie = _request_cookie(request, name)
        prefetch = False
        use = self.session_use
        if use is not None and app.config.get("SATCHEL_PREFETCH", True):
            session.path = path = request.environ.get("PATH_INFO", "")
            prefetch = cookie is not None and use.expected(path)
        self.engine.open(cookie, session.policy, session, cookie_name=name, foreign=foreign,
                         prefetch=prefetch)
        return session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if type(session) is not FlaskSession and not isinstance(session, Session):
            raise TypeError(f"satchel cannot save a {type(session).__name__}; was the session"
                            " interface swapped during the request?")
        path = getattr(session, "path", None)
        if path is not None and self.session_use is not None:
            self.session_use.record(path, used=session.accessed,
                                    had_cookie=session.request_cookie is not None)
        check_samesite(self.get_cookie_samesite(app))  # before the store is written
        name = self.get_cookie_name(app)
        policy = getattr(session, "policy", None)
        if policy is not None:  # opened by this interface: its config of that moment
            permanent_lifetime: float = getattr(session, "permanent_lifetime", 0.0)
        else:
            policy, permanent_lifetime = self._policy_and_lifetime(app)
        try:
            action = self.engine.commit(
                session, policy, cookie_name=name,
                refresh_each_request=app.config["SESSION_REFRESH_EACH_REQUEST"],
                permanent_lifetime=permanent_lifetime)
        except StoreUnavailable as err:
            log.error("session store unavailable while saving; responding 503: %s", err)
            _become_unavailable(response)
            return
        if action is None:
            if session.accessed or (
                    not session.loaded and app.config["SESSION_REFRESH_EACH_REQUEST"]
                    and isinstance(self.engine, Engine)
                    and self.engine.looks_permanent(session.request_cookie)):
                # Flask re-sends a permanent cookie here, with Vary: Cookie. satchel sends no
                # cookie for a session the request never used (it could be a rotated id, see
                # Engine.commit), but keeps the Vary header a cache may rely on.
                _add_session_headers(response, None)
        elif action.value is None:
            response.delete_cookie(name, domain=self.get_cookie_domain(app),
                                   path=self.get_cookie_path(app),
                                   secure=self.get_cookie_secure(app),
                                   partitioned=self.get_cookie_partitioned(app),
                                   samesite=self.get_cookie_samesite(app),
                                   httponly=self.get_cookie_httponly(app))
            _add_session_headers(response, None)
        else:
            header = self._cookie_template(app).header(action.value, action.expires)
            limit = app.config.get("MAX_COOKIE_SIZE", _BROWSER_COOKIE_LIMIT)
            if limit and len(header) > limit:
                raise SessionTooLarge(len(header), limit)
            _add_session_headers(response, header)

    def _cookie_template(self, app: Flask) -> CookieTemplate:
        """The Set-Cookie template for the cookie attributes the config names now."""
        attributes = (self.get_cookie_name(app), self.get_cookie_domain(app),
                      self.get_cookie_path(app), self.get_cookie_secure(app),
                      self.get_cookie_httponly(app), self.get_cookie_samesite(app),
                      self.get_cookie_partitioned(app))
        template = self._templates.get(attributes)
        if template is None:
            name, domain, path, secure, httponly, samesite, partitioned = attributes
            template = CookieTemplate(name, domain=domain, path=path, secure=secure,
                                      httponly=httponly, samesite=samesite,
                                      partitioned=partitioned)
            if len(self._templates) >= _POLICY_CACHE_SIZE:
                self._templates.clear()
            self._templates[attributes] = template
        return template


def _check_keys(app: Flask) -> None:
    """ConfigError for an unusable ``SECRET_KEY`` (an unset one is allowed) or fallback."""
    fallback_bytes(app.config.get("SECRET_KEY_FALLBACKS"))
    if not _no_key(app.config["SECRET_KEY"]):
        as_bytes(app.config["SECRET_KEY"])


def _no_key(secret: object) -> bool:
    """True for a ``SECRET_KEY`` that is not set (None, "" or b""): Flask's null session."""
    return secret is None or (type(secret) in (str, bytes) and not secret)


def _request_cookie(request: Request, name: str) -> str | None:
    """``request.cookies.get(name)``, without parsing every cookie when none is quoted."""
    header: str | None = request.environ.get("HTTP_COOKIE")
    if not header or name not in header:
        return None
    if '"' in header or "\\" in header:  # quoting and escapes: Werkzeug's full parser
        return request.cookies.get(name)
    for pair in header.split(";"):
        key, _, value = pair.partition("=")
        if key.strip() == name:
            return value.strip()
    return None


def _become_unavailable(response: Response) -> None:
    """Turn ``response`` into a 503: the session change it reports was not saved."""
    response.status_code = 503
    response.set_data(_UNAVAILABLE_BODY)
    response.mimetype = "text/plain"
    response.headers["Retry-After"] = _RETRY_AFTER
    response.headers.pop("Location", None)


def store_unavailable(error: StoreUnavailable) -> tuple[str, int, dict[str, str]]:
    """The default handler ``Satchel`` registers: HTTP 503, nothing written.

    Register your own handler for ``StoreUnavailable`` to replace it.
    """
    log.error("session store unavailable; responding 503: %s", error)
    return _UNAVAILABLE_BODY.decode(), 503, {"Retry-After": _RETRY_AFTER,
                                            "Content-Type": "text/plain; charset=utf-8"}


def _add_session_headers(response: Response, set_cookie: str | None) -> None:
    """``Vary: Cookie``; with ``set_cookie``, that header and ``Cache-Control: private``.

    What ``response.vary.add``, ``set_cookie`` and ``cache_control.private``
    do, in one pass over the headers instead of a parse per header.
    """
    headers = response.headers
    vary = cache_control = None
    for key, value in headers:
        lowered = key.lower()
        if lowered == "vary":
            vary = value
        elif lowered == "cache-control":
            cache_control = value
    if vary is None:
        headers.add("Vary", "Cookie")
    elif vary != "Cookie":
        response.vary.add("Cookie")
    if set_cookie is None:
        return
    headers.add("Set-Cookie", set_cookie)
    if cache_control is None:
        headers.add("Cache-Control", "private")
    else:
        response.cache_control.private = True


def _flask_cookie_reader(app: Flask) -> ForeignReader:
    """Reads a cookie Flask's own SecureCookieSessionInterface wrote (migration)."""

    def read(cookie: str) -> dict[str, Any] | None:
        serializer = SecureCookieSessionInterface().get_signing_serializer(app)
        if serializer is None:
            return None
        max_age = int(app.permanent_session_lifetime.total_seconds())
        try:
            data = serializer.loads(cookie, max_age=max_age)
        except BadSignature:
            return None
        return data if isinstance(data, dict) else None

    return read


def _serialize_sessions(app: Flask) -> None:
    """Let Flask's JSON provider serialize the session (``return session``, ``jsonify(session)``).

    ``flask.session`` is a proxy, which ``json.dumps`` does not take for a
    dict; the provider's ``default`` hook gets it, and turns a satchel session
    (or a proxy to one) into a plain dict. Other values go to the hook it
    had. An app with a provider without that hook is left alone.
    """
    provider = app.json
    previous = getattr(provider, "default", None)
    if not callable(previous) or getattr(previous, "satchel_sessions", False):
        return

    def default(value: Any) -> Any:
        if isinstance(value, Session):
            return dict(value)
        return previous(value)

    default.satchel_sessions = True  # type: ignore[attr-defined]
    provider.default = default  # type: ignore[attr-defined]


class Satchel:
    """Server-side sessions for Flask apps.

    >>> app = Flask(__name__)
    >>> Satchel(app)  # doctest: +SKIP

    ``store`` is a Store object or a ``SATCHEL_STORE``-style URL; without one
    the app's ``SATCHEL_STORE`` config is used, and without that an SQLite
    file in the instance folder. One ``Satchel`` may serve several apps; each
    app gets its own store resolved from its own config.
    """

    def __init__(self, app: Flask | None = None, *, store: Store | str | None = None,
                 codec: TaggedCodec = default_codec, clock: Clock = system_clock) -> None:
        self.store = store
        self.codec = codec
        self.clock = clock
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Install satchel's session interface on ``app`` and its CLI commands.

        Raises :class:`ConfigError` for an unusable config: a store URL, a
        timeout, or a key (``SECRET_KEY`` or ``SECRET_KEY_FALLBACKS`` not
        ``str``/``bytes``, empty, or fallbacks given as one ``str``). Logs, on
        ``satchel``, that sessions are disabled while ``SECRET_KEY`` is not set,
        and, on ``satchel.security``, keys shorter than 32 bytes.
        """
        for name in ("SATCHEL_IDLE_TIMEOUT", "SATCHEL_ABSOLUTE_TIMEOUT", "SATCHEL_GRACE_PERIOD"):
            try:
                seconds(app.config.get(name), name=name)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"{name}: {err}") from err
        _check_keys(app)  # before a store is opened for nothing
        store = self._resolve_store(app)
        engine: Engine | CookieEngine
        if isinstance(store, SealedCookies):
            engine = CookieEngine(store, codec=self.codec, clock=self.clock)
        else:
            grace = seconds(app.config.get("SATCHEL_GRACE_PERIOD"), name="SATCHEL_GRACE_PERIOD")
            engine = Engine(store, codec=self.codec, clock=self.clock,
                            grace=DEFAULT_GRACE if grace is None else grace)
        interface = SatchelSessionInterface(engine)
        interface.check_config(app)
        app.session_interface = interface
        _serialize_sessions(app)
        app.extensions["satchel"] = self
        if StoreUnavailable not in app.error_handler_spec[None][None]:
            app.register_error_handler(StoreUnavailable, store_unavailable)
        from satchel.cli import satchel_cli

        if "satchel" not in app.cli.commands:
            app.cli.add_command(satchel_cli)

    def _resolve_store(self, app: Flask) -> Store | SealedCookies:
        configured = self.store if self.store is not None else app.config.get("SATCHEL_STORE")
        if configured is None:
            return store_from_url(f"sqlite:///{DEFAULT_SQLITE_NAME}", base_dir=app.instance_path,
                                  clock=self.clock)
        if isinstance(configured, str):
            return store_from_url(configured, base_dir=app.instance_path, clock=self.clock)
        if isinstance(configured, os.PathLike):
            raise ConfigError(f"SATCHEL_STORE {configured!r}: give a URL such as "
                              f"'sqlite:///{os.fspath(configured)}' or a store object")
        if isinstance(configured, SealedCookies):
            return configured
        for method in ("load", "create", "update", "delete"):
            if not callable(getattr(configured, method, None)):
                raise ConfigError(f"SATCHEL_STORE {configured!r}: not a store (it has no "
                                  f"{method}() method); give a URL or a satchel store object")
        return configured

    @staticmethod
    def store_of(app: Flask) -> Store:
        """The store ``app``'s sessions live in."""
        interface = app.session_interface
        if not isinstance(interface, SatchelSessionInterface):
            raise RuntimeError("satchel is not installed on this app; call Satchel(app) first")
        if not isinstance(interface.engine, Engine):
            raise RuntimeError("this app keeps its sessions sealed in cookies (SATCHEL_STORE"
                               " 'cookie://'); it has no store")
        return interface.engine.store
