"""Flask's ``SessionInterface``, delegated to the framework-free engines.

A request that never touches its session costs next to nothing: ``open_session``
reads the config and makes a :class:`~satchel.flask.flask_session.FlaskSession`
that keeps the request, looking for its cookie only when the session is first
used; ``is_null_session``, which Flask asks before ``save_session``, answers True
for such a session when its save would do nothing (a cookie that does not look
permanent), so Flask skips that call too.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin

from satchel.cookie_action import CookieAction
from satchel.cookie_header import CookieTemplate, check_samesite
from satchel.cookie_mode import CookieEngine
from satchel.engine import Engine
from satchel.errors import SessionTooLarge, StoreUnavailable
from satchel.flask.flask_session import FlaskSession, OpeningSteps, open_deferred
from satchel.flask.lock import release_held_lock
from satchel.flask.opening import (
    BY_PATH,
    NO_COOKIE,
    PERMANENT_COOKIE,
    Opening,
    Openings,
    add_defaults,
    no_key,
    read_open_keys,
)
from satchel.flask.responses import (
    GETTERS,
    add_session_headers,
    become_unavailable,
    cookie_template,
)
from satchel.sealed import looks_permanent as sealed_looks_permanent
from satchel.session import Session
from satchel.session_use import SessionUse
from satchel.signed_id import looks_permanent

_BROWSER_COOKIE_LIMIT = 4093  # Flask's MAX_COOKIE_SIZE default
log = logging.getLogger("satchel")
# What is_null_session answers for a session never opened nor used depends on its engine
_SERVER_SIDE, _SEALED = "server-side", "sealed"


class SatchelSessionInterface(OpeningSteps):
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
        # The same for the seven getters a Set-Cookie is built from (see cookie_template).
        self._flask_cookie_getters = all(
            getattr(cls, getter) is getattr(SessionInterface, getter) for getter in GETTERS)
        # The engines whose commit of a never used session save_session does itself
        self._server_side = type(engine) is Engine
        self._sealed = type(engine) is CookieEngine
        # ...and, unless a subclass overrides save_session or is_null_session, the kind
        # of a session is_null_session may answer True for (None: none)
        unchanged = (cls.save_session is SatchelSessionInterface.save_session
                     and cls.is_null_session is SatchelSessionInterface.is_null_session)
        self._unused_saves = (None if not unchanged else _SERVER_SIDE if self._server_side
                              else _SEALED if self._sealed else None)
        self._openings = Openings(
            engine, can_prefetch=engine.can_prefetch,
            name_needs_app=not self._flask_cookie_config, open_later=self._open_deferred,
            looks_permanent=(looks_permanent if self._server_side
                             else sealed_looks_permanent if self._sealed else None))

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
        """The request's session, opened lazily: it keeps the request and the config's
        :class:`~satchel.flask.opening.Opening`, and looks for its cookie only when first
        used (:meth:`_open_deferred`) or saved. A request expected to use its session, on a
        store that can prefetch, is opened at once (its load is sent now)."""
        # Openings.opening, its usual case inline (every request comes here): the config
        # values of the last request, and what they made
        try:
            values = read_open_keys(app.config)
        except KeyError:
            values = None
        last, opening = self._openings.last
        if values != last or values is None:
            opening = self._openings.opening(app, values)
            if opening is None:  # no SECRET_KEY: Flask's null session
                return None
        # What FlaskSession(deferred=True) makes, without running __init__; its loader is
        # FlaskSession's own, _open_deferred, until it is opened
        session: FlaskSession = dict.__new__(FlaskSession)
        session.opened_with = opening
        session._request = request
        how = opening.how  # type: ignore[union-attr]
        if how:
            if how == BY_PATH:  # a prefetching store's: use.expected(path), inline
                try:
                    session.path = path = request.environ["PATH_INFO"]
                except KeyError:  # none (PEP 3333: an empty one may be left out)
                    session.path = path = ""
                use: SessionUse = self.session_use  # type: ignore[assignment]
                try:
                    expected = use.paths[path]
                except KeyError:
                    expected = use.last_used
                if not expected:
                    return session  # not expected to be used: deferred
            self._open_undeferred(session, app, request, how)
        return session

    def is_null_session(self, obj: object) -> bool:
        """Flask's test (``isinstance`` of its null session class), which Flask asks before
        it calls :meth:`save_session`: satchel's own sessions are not null, except that a
        session the request never opened nor used, whose save would do nothing (a cookie
        that does not look permanent, so nothing to refresh), answers True, so that Flask
        skips that call. What that save does besides (prefetching's record of the path)
        is done here. (``flask.session`` marks its session accessed: asked about it, this
        answers False.) A subclass that overrides this or :meth:`save_session` has every
        session saved, as before."""
        if type(obj) is not FlaskSession:
            return super().is_null_session(obj)
        kind = self._unused_saves
        if not kind or obj._loader is not open_deferred or obj.accessed:
            return False
        opening: Opening = obj.opened_with  # type: ignore[assignment]
        states = opening.cookie_states  # states.of(obj._request), its usual case inline
        entry = states.get(obj._request.environ.get("HTTP_COOKIE"))  # type: ignore[union-attr]
        if entry is None:
            entry = states.of(obj._request)  # type: ignore[arg-type]
        state = entry[0]
        if kind is _SERVER_SIDE:
            use = self.session_use
            if use is not None and opening.how & BY_PATH:
                path = obj.path  # set when BY_PATH (else it was opened at once)
                if path is not None:  # use.record(path, used=False, had_cookie=...), inline
                    if state:
                        use.last_used = False
                    try:
                        known = use.paths[path] is False
                    except KeyError:
                        known = False
                    if not known:
                        use.record(path, used=False, had_cookie=state != NO_COOKIE)
        # PERMANENT_COOKIE: save_session sends Vary: Cookie (server-side) or may re-seal it
        return state != PERMANENT_COOKIE

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if type(session) is FlaskSession and session._loader is open_deferred:
            # Never opened (open_session deferred it and nothing loaded it since)
            if not session.accessed and self._server_side:
                # Never used either: what the commit of an opened, never used session does
                # (here when is_null_session found a cookie that looks permanent, or for
                # a caller that did not ask it), without opening it. (A sealed session
                # is opened: if its cookie is one to re-seal, the commit needs it open.)
                opening: Opening = session.opened_with  # type: ignore[assignment]
                state = opening.cookie_states.of(session._request)[0]  # type: ignore[arg-type]
                use = self.session_use
                path = getattr(session, "path", None)
                if use is not None and path is not None:
                    use.record(path, used=False, had_cookie=state != NO_COOKIE)
                # No store call, no cookie (see Engine.commit), only the Vary header Flask
                # sends when it would re-send a permanent cookie.
                if state == PERMANENT_COOKIE and app.config["SESSION_REFRESH_EACH_REQUEST"]:
                    add_session_headers(response, None)
                return
            session._loader = None
            self._open_now(session, app)  # as open_session would have: saved as before
        elif session is None:
            # open_session raised: Flask still finalizes the error response and calls this
            # with no session. Nothing to save, and no second error to bury the first.
            return
        elif type(session) is not FlaskSession and not isinstance(session, Session):
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
            header = cookie_template(self, app, self._templates, self._flask_cookie_getters).header(
                action.value, action.expires)
            limit = config.get("MAX_COOKIE_SIZE", _BROWSER_COOKIE_LIMIT)
            if limit and len(header) > limit:
                raise SessionTooLarge(len(header), limit)
            add_session_headers(response, header)
