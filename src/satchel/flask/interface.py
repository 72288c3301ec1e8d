"""Flask's ``SessionInterface``, delegated to the framework-free engines."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Request, Response, current_app, has_request_context, request
from flask.sessions import SecureCookieSessionInterface, SessionInterface, SessionMixin
from itsdangerous import BadSignature

from satchel.cookie_action import CookieAction
from satchel.cookie_header import CookieTemplate, check_samesite
from satchel.cookie_mode import CookieEngine
from satchel.engine import Engine
from satchel.errors import SessionTooLarge, StoreUnavailable
from satchel.flask import lock
from satchel.flask.lock import locked_view_gate, release_held_lock
from satchel.flask.opening import Opening, Openings, add_defaults, no_key, session_cookie
from satchel.flask.responses import add_session_headers, become_unavailable
from satchel.foreign import ForeignReader
from satchel.session import Session
from satchel.session_use import SessionUse
from satchel.signed_id import looks_permanent
from satchel.users import describe_device

_POLICY_CACHE_SIZE = 32
_BROWSER_COOKIE_LIMIT = 4093  # Flask's MAX_COOKIE_SIZE default
# Flask's getters of the Set-Cookie attributes, each a read of the config (Flask 3.1)
_GETTERS = ("get_cookie_name", "get_cookie_domain", "get_cookie_path", "get_cookie_secure",
            "get_cookie_httponly", "get_cookie_samesite", "get_cookie_partitioned")
log = logging.getLogger("satchel")


class FlaskSession(Session, SessionMixin):  # type: ignore[override]
    """A :class:`~satchel.session.Session` that Flask recognises as its own kind."""

    # The config the request was opened with ([0] policy, [1] PERMANENT_SESSION_LIFETIME in s)
    opened_with: Opening | tuple[Any, float] | None = None
    path: str | None = None  # the request's path, when the interface learns which use sessions
    # @session_lock views lock before the load: open_session gives each session the gate
    # (locked_view_gate) once some view has the decorator (lock.views_locked)
    records_device = True  # SATCHEL_RECORD_DEVICE

    def device(self) -> str | None:
        """The request's user agent and client address (``request.remote_addr``: behind a
        proxy, what ``ProxyFix`` makes of it), for the record of a new session."""
        if not self.records_device or not has_request_context():
            return None
        return describe_device(request.user_agent.string, request.remote_addr)

    @property
    def handle(self) -> str | None:
        """This session's public handle (see :mod:`satchel.handles`): what
        ``Satchel.sessions_of`` lists it by and ``Satchel.revoke`` takes. None while the
        session is not stored (a new one, or one given a new id in this request, until the
        response is sent)."""
        satchel = current_app.extensions.get("satchel")
        if satchel is None:
            return None
        handle: str | None = satchel.handle_of(self)
        return handle


class SatchelSessionInterface(SessionInterface):
    """Flask's two-method contract, delegated to the framework-free engine."""

    def __init__(self, engine: Engine | CookieEngine, *, on_store_error: str = "fail",
                 record_device: bool = True) -> None:
        """``on_store_error``: "fail" (StoreUnavailable: HTTP 503) or "anonymous" (a load the
        store fails gives an empty session never saved; a save it fails sends the response
        without the session's cookie). See ``SATCHEL_ON_STORE_ERROR``. ``record_device``:
        ``SATCHEL_RECORD_DEVICE``."""
        self.engine = engine
        self.record_device = record_device
        self.anonymous_on_store_error = on_store_error == "anonymous"
        self._openings = Openings(engine)
        self._templates: dict[tuple[Any, ...], CookieTemplate] = {}
        # What requests to each path did with their session: a request expected to use it
        # prefetches it (for a store that can prefetch).
        self.session_use = SessionUse() if engine.can_prefetch else None
        # Flask's get_cookie_name and get_cookie_samesite read one config key each: read them
        # directly, unless a subclass overrides either.
        cls = type(self)
        self._flask_cookie_config = (
            cls.get_cookie_name is SessionInterface.get_cookie_name
            and cls.get_cookie_samesite is SessionInterface.get_cookie_samesite)
        # The same for the seven getters a Set-Cookie is built from (see _cookie_template).
        self._flask_cookie_getters = all(
            getattr(cls, getter) is getattr(SessionInterface, getter) for getter in _GETTERS)

    def policy(self, app: Flask) -> Any:
        """The key ring and timeouts the app's config names now (cached by value)."""
        return self._openings.policy_and_lifetime(app)[0]

    def _policy_and_lifetime(self, app: Flask) -> tuple[Any, float]:
        """:meth:`policy`, and ``PERMANENT_SESSION_LIFETIME`` in seconds (see
        :mod:`satchel.flask.opening`)."""
        return self._openings.policy_and_lifetime(app)

    def check_config(self, app: Flask) -> None:
        """Build the policy ``app``'s config names now (ConfigError for an unusable key),
        logging short keys; or log that sessions are disabled while ``SECRET_KEY`` is
        not set (they stay Flask's null session, as without satchel). Gives the config keys
        each request reads their defaults (see :func:`~satchel.flask.opening.add_defaults`)."""
        add_defaults(app.config)
        if no_key(app.config["SECRET_KEY"]):
            log.warning("SECRET_KEY is not set: sessions are disabled (flask.session is Flask's"
                        " null session, which refuses writes) until app.config['SECRET_KEY']"
                        " is set")
            return
        self._policy_and_lifetime(app)

    def open_session(self, app: Flask, request: Request) -> FlaskSession | None:
        opening = self._openings.opening(app)
        if opening is None:  # no SECRET_KEY: Flask's null session
            return None
        if self._flask_cookie_config:
            name, prefix = opening.cookie_name, opening.cookie_prefix
        else:
            name, prefix = self.get_cookie_name(app), None
        # What FlaskSession(deferred=True) makes, without running __init__ (engine.open
        # gives the loader).
        session: FlaskSession = dict.__new__(FlaskSession)
        session.opened_with = opening
        if self.anonymous_on_store_error:
            session.empty_on_store_error = True
        if not self.record_device:
            session.records_device = False
        if lock.views_locked:
            session.lock_gate = locked_view_gate
        foreign = flask_cookie_reader(app) if opening.read_flask_cookies else None
        cookie = session_cookie(request, name, prefix)
        prefetch = False
        use = self.session_use
        if use is not None and opening.prefetch:
            session.path = path = request.environ.get("PATH_INFO", "")
            prefetch = cookie is not None and use.expected(path)
        self.engine.open(cookie, opening.policy, session, cookie_name=name, foreign=foreign,
                         prefetch=prefetch)
        return session

    def is_null_session(self, obj: object) -> bool:
        """Flask's test (``isinstance`` of its null session class), answered at once for
        satchel's own sessions, which Flask asks about on every response."""
        return type(obj) is not FlaskSession and super().is_null_session(obj)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if session is None:
            # open_session raised: Flask still finalizes the error response and calls this
            # with no session. Nothing to save, and no second error to bury the first.
            return
        if type(session) is not FlaskSession and not isinstance(session, Session):
            raise TypeError(f"satchel cannot save a {type(session).__name__}; was the session"
                            " interface swapped during the request?")
        engine = self.engine
        config = app.config
        if self.session_use is not None:
            path = getattr(session, "path", None)
            if path is not None:
                # A locked request's load must wait for its lock: never prefetch its path.
                self.session_use.record(path, used=session.accessed and not session.was_locked,
                                        had_cookie=session.request_cookie is not None)
        # Never used (not accessed, nothing loaded: ``not session.loaded`` without its
        # property call, as every request that never touches its session comes here)
        if not session.accessed and session._loader is not None:  # it holds no lock
            if type(engine) is Engine:
                # Never used: no store call, no cookie (see Engine.commit), only the Vary
                # header Flask sends when it would re-send a permanent cookie.
                if session.pending_load is not None:
                    engine.commit_unused(session)
                if (looks_permanent(session.request_cookie)
                        and config["SESSION_REFRESH_EACH_REQUEST"]):
                    add_session_headers(response, None)
                return
            if type(engine) is CookieEngine and not engine.refreshes_unused(
                    session, config["SESSION_REFRESH_EACH_REQUEST"]):
                return  # never used, and its cookie is not one to re-seal: nothing to send
        try:
            self._save(app, session, response)
        finally:  # @session_lock: released once the commit is done (or failed)
            if session.held_lock is not None:
                release_held_lock(session)

    def _save(self, app: Flask, session: Session, response: Response) -> None:
        """Commit a session the request used (or a sealed one to re-seal); send its headers."""
        engine = self.engine
        config = app.config
        if self._flask_cookie_config:
            name, samesite = config["SESSION_COOKIE_NAME"], config["SESSION_COOKIE_SAMESITE"]
        else:
            name, samesite = self.get_cookie_name(app), self.get_cookie_samesite(app)
        if samesite is not None:
            check_samesite(samesite)  # before the store is written
        opened = (session.opened_with if type(session) is FlaskSession
                  else getattr(session, "opened_with", None))
        if opened is None:  # not opened by this interface: the config of now
            opened = self._openings.policy_and_lifetime(app)
        refresh_each_request = config["SESSION_REFRESH_EACH_REQUEST"]
        try:
            action = engine.commit(session, opened[0], cookie_name=name,
                                   refresh_each_request=refresh_each_request,
                                   permanent_lifetime=opened[1])
        except StoreUnavailable as err:
            engine.events.store_error(err, "save", session.sid,
                                      anonymous=self.anonymous_on_store_error)
            if not self.anonymous_on_store_error:
                become_unavailable(response, app, err)
                return
            if not session.destroyed:
                return
            action = CookieAction(None)  # a logout still logs the browser out
        if action is None:
            if session.accessed or (
                    not session.loaded and refresh_each_request
                    and isinstance(engine, Engine)
                    and engine.looks_permanent(session.request_cookie)):
                # Flask re-sends a permanent cookie here, with Vary: Cookie. satchel sends no
                # cookie for a session the request never used (it could be a rotated id, see
                # Engine.commit), but keeps the Vary header a cache may rely on.
                add_session_headers(response, None)
        elif action.value is None:
            response.delete_cookie(name, domain=self.get_cookie_domain(app),
                                   path=self.get_cookie_path(app),
                                   secure=self.get_cookie_secure(app),
                                   partitioned=self.get_cookie_partitioned(app),
                                   samesite=self.get_cookie_samesite(app),
                                   httponly=self.get_cookie_httponly(app))
            add_session_headers(response, None)
        else:
            header = self._cookie_template(app).header(action.value, action.expires)
            limit = config.get("MAX_COOKIE_SIZE", _BROWSER_COOKIE_LIMIT)
            if limit and len(header) > limit:
                raise SessionTooLarge(len(header), limit)
            add_session_headers(response, header)

    def _cookie_template(self, app: Flask) -> CookieTemplate:
        """The Set-Cookie template for the cookie attributes the config names now.

        The attributes are what the ``get_cookie_*`` getters return; unless a subclass
        overrides one, they are read from the config as Flask's own getters read them
        (seven method calls fewer per cookie sent).
        """
        if self._flask_cookie_getters:
            config = app.config
            attributes = (config["SESSION_COOKIE_NAME"], config["SESSION_COOKIE_DOMAIN"],
                          config["SESSION_COOKIE_PATH"] or config["APPLICATION_ROOT"],
                          config["SESSION_COOKIE_SECURE"], config["SESSION_COOKIE_HTTPONLY"],
                          config["SESSION_COOKIE_SAMESITE"], config["SESSION_COOKIE_PARTITIONED"])
        else:
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


def flask_cookie_reader(app: Flask) -> ForeignReader:
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
