"""The session object a Flask view sees (``flask.session``), and what opens it lazily.

:meth:`SatchelSessionInterface.open_session
<satchel.flask.interface.SatchelSessionInterface.open_session>` makes a
:class:`FlaskSession` without looking at the request's cookie: the session
keeps the request and the config's :class:`~satchel.flask.opening.Opening`,
and its loader, until first used, is :func:`open_deferred`, which has the
interface open it (find the cookie, hand it to the engine) and then load it. A
request that never touches its session pays for no more than that. The
interface's steps of opening are here too (:class:`OpeningSteps`, a base of it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, Request, current_app, has_request_context, request
from flask.sessions import SecureCookieSessionInterface, SessionInterface, SessionMixin
from itsdangerous import BadSignature

from satchel.cookie_mode import CookieEngine
from satchel.engine import Engine
from satchel.flask import lock
from satchel.flask.lock import locked_view_gate
from satchel.flask.opening import AT_ONCE, BY_PATH, Opening, session_cookie
from satchel.foreign import ForeignReader
from satchel.session import Session
from satchel.session_use import SessionUse
from satchel.users import describe_device


def open_deferred(session: FlaskSession) -> None:
    """The loader of a session :meth:`SatchelSessionInterface.open_session` deferred:
    open it (its Opening's interface looks up its cookie and hands it to the engine,
    which gives it its loader), then load it."""
    session.opened_with.open_later(session)  # type: ignore[union-attr]


class FlaskSession(Session, SessionMixin):  # type: ignore[override]
    """A :class:`~satchel.session.Session` that Flask recognises as its own kind."""

    # Slots, not the instance dict, for what open_session sets on every request: a session
    # never used makes no dict. open_session sets _request and opened_with; "path" only when the
    # interface learns which paths use their session (read it with getattr).
    __slots__ = ("_request", "opened_with", "path")
    # The config the request was opened with ([0] policy, [1] PERMANENT_SESSION_LIFETIME in s)
    opened_with: Opening | tuple[Any, float] | None
    _request: Request | None  # the request it was opened for (its cookie: _open_now)
    path: str | None  # the request's path, when the interface learns which use sessions
    # A session open_session made and deferred (dict.__new__: no __init__) has this loader
    # until first used; one made by FlaskSession() gets its own (None: nothing to load).
    _loader: Callable[[Any], None] | None = staticmethod(open_deferred)
    # @session_lock views lock before the load: open_session gives each session the gate
    # (locked_view_gate) once some view has the decorator (lock.views_locked)
    records_device = True  # SATCHEL_RECORD_DEVICE

    def __init__(self, loader: Callable[[Any], None] | None = None, *,
                 deferred: bool = False) -> None:
        """A session not opened by the interface: see :class:`~satchel.session.Session`."""
        super().__init__(loader, deferred=deferred)
        self.opened_with = self._request = self.path = None

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


class OpeningSteps(SessionInterface):
    """What :class:`~satchel.flask.interface.SatchelSessionInterface` opens a session with,
    past ``open_session``'s own first step (its base; it sets the attributes below)."""

    engine: Engine | CookieEngine
    session_use: SessionUse | None
    anonymous_on_store_error: bool
    record_device: bool
    _flask_cookie_config: bool

    def _open_undeferred(self, session: FlaskSession, app: Flask, request: Request,
                         how: int) -> None:
        """:meth:`open_session` of a session it does not defer (see
        :attr:`Opening.how <satchel.flask.opening.Opening>`)."""
        use = self.session_use
        if how & BY_PATH and use is not None:
            path = getattr(session, "path", None)
            if path is None:
                session.path = path = request.environ.get("PATH_INFO", "")
            if use.expected(path):
                self._open_now(session, app, prefetch=True)
                return
        if how & AT_ONCE:
            self._open_now(session, app)  # what the cookie is looked up by needs the app

    def _configure(self, session: FlaskSession) -> None:
        """Give ``session`` what the interface's settings say, before the engine opens it."""
        if self.anonymous_on_store_error:
            session.empty_on_store_error = True
        if not self.record_device:
            session.records_device = False
        if lock.views_locked and session.lock_gate is None:  # @session_lock may have set one
            session.lock_gate = locked_view_gate

    def _open_deferred(self, session: FlaskSession) -> None:
        """Open a session :meth:`open_session` deferred, then load it: its first use (see
        :func:`~satchel.flask.flask_session.open_deferred`). What :meth:`_open_now` does
        for it (the config's cookie name, no reader of Flask's cookies, no prefetch)."""
        opening: Opening = session.opened_with  # type: ignore[assignment]
        self._configure(session)
        cookie = opening.cookie_states.of(session._request)[1]  # type: ignore[arg-type]
        self.engine.open(cookie, opening.policy, session, cookie_name=opening.cookie_name)
        loader = session._loader
        if loader is not None:
            session._loader = None
            loader(session)

    def _open_now(self, session: FlaskSession, app: Flask | None, *,
                  prefetch: bool = False) -> None:
        """Find ``session``'s cookie in its request and hand it to the engine, which gives
        the session its loader (and with ``prefetch``, sends its load if it has a cookie).
        ``app``: None for a session :meth:`open_session` deferred (one whose cookie name
        and reader do not need the app: Flask's ``get_cookie_name``, no
        ``SATCHEL_READ_FLASK_COOKIES``)."""
        opening: Opening = session.opened_with  # type: ignore[assignment]
        request = session._request
        assert request is not None
        self._configure(session)
        if app is not None and not self._flask_cookie_config:
            name, prefix = self.get_cookie_name(app), None
        else:
            name, prefix = opening.cookie_name, opening.cookie_prefix
        foreign = (flask_cookie_reader(app) if app is not None and opening.read_flask_cookies
                   else None)
        cookie = (opening.cookie_states.of(request)[1] if name == opening.cookie_name
                  else session_cookie(request, name, prefix))
        self.engine.open(cookie, opening.policy, session, cookie_name=name, foreign=foreign,
                         prefetch=prefetch and cookie is not None)
