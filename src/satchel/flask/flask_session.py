"""The session object a Flask view sees (``flask.session``), and what opens it lazily.

:meth:`SatchelSessionInterface.open_session
<satchel.flask.interface.SatchelSessionInterface.open_session>` makes a
:class:`FlaskSession` without looking at the request's cookie: the session
keeps the request and the config's :class:`~satchel.flask.opening.Opening`,
and its loader, until first used, is :func:`open_deferred`, which has the
interface open it (find the cookie, hand it to the engine) and then load it. A
request that never touches its session pays for no more than that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, Request, current_app, has_request_context, request
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from itsdangerous import BadSignature

from satchel.flask.opening import Opening
from satchel.foreign import ForeignReader
from satchel.session import Session
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
