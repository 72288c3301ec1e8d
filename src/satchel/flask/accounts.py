"""Who is logged in where: list a user's sessions, end one, end all of a user's.

The methods of the ``Satchel`` extension object (``Satchel(app)`` returns it; also
``app.extensions["satchel"]``) that act on stored sessions by user and by handle. Each
works on the app in context (``current_app``), or on ``app=`` when given (a script, a
test): the store is that app's, and handles are made under its ``SECRET_KEY``.
Server-side stores only: with ``SATCHEL_STORE = "cookie://"`` every method raises
:class:`~satchel.errors.NotSupported`, since sealed cookies are in the browsers, not in a
store (end them all by rotating ``SECRET_KEY``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from flask import Flask, current_app, has_request_context
from flask import session as request_session

from satchel import ids
from satchel.engine import Engine
from satchel.errors import NotSupported
from satchel.handles import Handles
from satchel.session import Session
from satchel.store import Patch, SessionInfo, UserIndex


@dataclass(frozen=True)
class ListedSession:
    """One live session of a user, as :meth:`Accounts.sessions_of` lists it.

    ``handle`` names it for :meth:`Accounts.revoke` (not a cookie; see
    :mod:`satchel.handles`); times are aware UTC datetimes; ``device`` is what was recorded
    at its login (user agent and client address; None if ``SATCHEL_RECORD_DEVICE`` is
    off); ``current`` is True for the session of the request in context.
    """

    handle: str
    user: str | None
    created_at: datetime
    last_seen: datetime
    expires_at: datetime
    device: str | None
    current: bool


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


class Accounts:
    """The user-facing session controls; mixed into :class:`satchel.Satchel`."""

    def sessions_of(self, user: object, *, app: Flask | None = None) -> list[ListedSession]:
        """The live sessions of ``user`` (compared as ``str(user)``), oldest first.

        Costs a store call plus one per session of that user (never a scan of the
        store). Raises :class:`~satchel.errors.NotSupported` in cookie mode or on a store
        without a user index, :class:`~satchel.errors.StoreUnavailable` if the store
        cannot be reached.
        """
        app, _, index = _indexed(app)
        handles = _handles(app)
        current = _current_key(app)
        return [_listed(info, handles, current) for info in index.sessions_of(_name(user))]

    def revoke(self, handle: str, *, app: Flask | None = None) -> bool:
        """End the session ``handle`` names (and any id it was rotated to meanwhile); True
        if it was live, False if it had ended already.

        Raises ValueError for a string that is not a handle this app made (forged, cut,
        or made under a key no longer in ``SECRET_KEY``/``SECRET_KEY_FALLBACKS``), before
        any store call; NotSupported in cookie mode.
        """
        app, engine = _engine(app)
        key = _handles(app).storage_key(handle)
        if key is None:
            raise ValueError("not a session handle of this app (forged, cut short, or made"
                             " under a SECRET_KEY it no longer has)")
        live = bool(engine.store.update(key, Patch()))  # an empty patch: a liveness check
        engine.graveyard.end(key)  # its rotations in flight end too
        engine.store.delete(key)
        if live:
            engine.events.revoked(key, "revoke")
        return live

    def revoke_user(self, user: object, *, keep_current: bool = False,
                    app: Flask | None = None) -> int:
        """End every live session of ``user``; return how many ended.

        ``keep_current=True`` spares the session of the request in context (the "sign
        out my other devices" button; what to call after a password change). Raises
        RuntimeError if ``keep_current`` is asked outside a request, NotSupported in
        cookie mode or on a store without a user index.
        """
        app, engine, index = _indexed(app)
        keep = None
        if keep_current:
            if not has_request_context():
                raise RuntimeError("revoke_user(keep_current=True) needs a request: it spares"
                                   " the session of the request in context")
            keep = _current_key(app)
        name = _name(user)
        ended = index.delete_user(name, keep)
        for key in ended:
            engine.graveyard.end(key)
            engine.events.revoked(key, "revoke-user", name)
        return len(ended)

    def handle_of(self, session: Session, *, app: Flask | None = None) -> str | None:
        """The handle of ``session`` as stored now; None for a session not stored yet (a new
        one, or one given a new id in this request, until the response is sent). Loads a
        session the request has not used yet (its id is known only once loaded)."""
        len(session)  # loads it, if the request has not yet (a lazy session has no id before)
        sid = session.sid
        if sid is None:
            return None
        return _handles(app or current_app).handle(ids.storage_key(sid))


def _name(user: object) -> str:
    if user is None:
        raise ValueError("user is None: give the user whose sessions to list or end")
    name = str(user)
    if not name:
        raise ValueError("user is empty")
    return name


def _engine(app: Flask | None) -> tuple[Flask, Engine]:
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    engine = getattr(app.session_interface, "engine", None)
    if engine is None:
        raise RuntimeError("satchel is not installed on this app; call Satchel(app) first")
    if not isinstance(engine, Engine):
        raise NotSupported("sessions sealed in cookies (SATCHEL_STORE 'cookie://') live in"
                           " the browsers: they cannot be listed or revoked one by one; rotate"
                           " SECRET_KEY to end them all, or keep sessions server-side")
    return app, engine


def _indexed(app: Flask | None) -> tuple[Flask, Engine, UserIndex]:
    app, engine = _engine(app)
    if not isinstance(engine.store, UserIndex):
        raise NotSupported(f"{engine.store!r} cannot find a user's sessions (it has no"
                           " sessions_of/delete_user; see satchel.store.UserIndex)")
    return app, engine, engine.store


def _handles(app: Flask) -> Handles:
    return Handles(app.config["SECRET_KEY"], app.config.get("SECRET_KEY_FALLBACKS") or ())


def handle_maker(app: Flask) -> Callable[[str], str]:
    """Storage key -> handle, under ``app``'s keys as configured at each call (what
    :class:`satchel.events.Events` names a revoked session by)."""
    return lambda key: _handles(app).handle(key)


def _current_key(app: Flask) -> str | None:
    """The storage key of the session of the request in context, if it has one stored."""
    if not has_request_context() or app is not current_app._get_current_object():  # type: ignore[attr-defined]
        return None
    session = request_session._get_current_object()  # type: ignore[attr-defined]
    len(session)  # loads it, if the request has not yet (a lazy session has no id before)
    sid = getattr(session, "sid", None)
    return None if sid is None else ids.storage_key(sid)


def _listed(info: SessionInfo, handles: Handles, current: str | None) -> ListedSession:
    return ListedSession(handles.handle(info.key), info.user, _when(info.created_at),
                         _when(info.last_seen), _when(info.expires_at), info.device,
                         info.key == current)
