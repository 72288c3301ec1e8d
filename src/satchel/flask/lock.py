"""``@session_lock``: the Flask face of :mod:`satchel.locking`.

A view under ``@session_lock`` runs alone among the requests of its session:
the lock is taken before the session is loaded (a load sent ahead by
prefetch is dropped) and released after Flask's ``save_session`` committed
it. Only requests whose cookie names a session take it: a new session has
nothing to race on. The route's view function carries the decorator's
settings, so a session first used by a ``before_request`` handler or an
outer decorator (``@login_required``) of that view is loaded under the lock
too.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any, TypeVar, overload

from flask import Flask, current_app, has_request_context, request
from flask import session as session_proxy
from flask.globals import request_ctx
from flask.signals import request_tearing_down

from satchel import signals
from satchel.cookie_mode import CookieEngine
from satchel.engine import Engine
from satchel.errors import ConfigError, SessionLocked
from satchel.ids import fingerprint
from satchel.locking import DEFAULT_LEASE, DEFAULT_WAIT, HeldLock, LockSpec, acquire
from satchel.session import Session

View = TypeVar("View", bound=Callable[..., Any])
_RETRY_AFTER = "1"
_LOCKED_BODY = ("Service Unavailable: another request on this session is still running."
                " Try again shortly.")


@overload
def session_lock(view: View, /) -> View: ...
@overload
def session_lock(*, wait: float = DEFAULT_WAIT,
                 lease: float = DEFAULT_LEASE) -> Callable[[View], View]: ...


def session_lock(view: Any = None, /, *, wait: float = DEFAULT_WAIT,
                 lease: float = DEFAULT_LEASE) -> Any:
    """Run the decorated view alone among its session's requests (bare or with arguments).

    ``wait``: seconds to wait for the lock (default 10), then
    :class:`~satchel.errors.SessionLocked` (HTTP 503 with ``Retry-After``, and
    :data:`satchel.signals.session_lock_timeout`). ``lease``: seconds the lock
    lives if never released, e.g. by a crashed worker (default 30): longer than
    the view can take. Raises :class:`~satchel.errors.ConfigError` for bad values
    now, and when the view runs with sealed-cookie sessions (``cookie://``),
    which no server holds and so cannot lock.
    """
    spec = LockSpec(wait, lease)

    def decorate(function: View) -> View:
        global views_locked
        views_locked = True
        @functools.wraps(function)
        def locked(*args: Any, **kwargs: Any) -> Any:
            _lock_for(spec, function)
            return current_app.ensure_sync(function)(*args, **kwargs)

        locked.satchel_lock = spec  # type: ignore[attr-defined]
        return locked  # type: ignore[return-value]

    return decorate(view) if view is not None else decorate


def _lock_for(spec: LockSpec, view: Callable[..., Any]) -> None:
    """Make sure this request's session is (or will be) loaded under the lock."""
    engine = getattr(current_app.session_interface, "engine", None)
    if isinstance(engine, CookieEngine):
        raise cookie_mode_error(getattr(view, "__name__", repr(view)))
    session = session_proxy._get_current_object()  # type: ignore[attr-defined]
    if not isinstance(engine, Engine) or not isinstance(session, Session):
        return  # not satchel's session (no SECRET_KEY: Flask's null session)
    if session.held_lock is not None:
        return
    gate = functools.partial(_take, spec)
    if session.loaded:
        if not session.stored:  # no stored session was loaded: nothing to race on
            return
        engine.reopen(session, getattr(session, "policy", None))  # type: ignore[arg-type]
    session.lock_gate = gate


views_locked = False
"""True once ``@session_lock`` has decorated a view: until then no session needs a gate."""


def locked_view_gate(store: object, storage_key: str, sid: str) -> HeldLock | None:
    """The lock gate of a Flask session: the lock, if the request's view wants one."""
    try:
        ctx = request_ctx._get_current_object()  # type: ignore[attr-defined]
    except RuntimeError:  # client.session_transaction(): no view, no lock
        return None
    rule = ctx.request.url_rule
    if rule is None:
        return None
    spec = getattr(ctx.app.view_functions.get(rule.endpoint), "satchel_lock", None)
    if type(spec) is not LockSpec:
        return None
    return _take(spec, store, storage_key, sid)


def _take(spec: LockSpec, store: object, storage_key: str, sid: str) -> HeldLock:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    tag = fingerprint(sid)
    try:
        held = acquire(store, storage_key, spec, tag=tag)
    except SessionLocked:
        signals.session_lock_timeout.send(app, fingerprint=tag, waited=spec.wait,
                                          endpoint=request.endpoint)
        raise
    if app not in _released_at_teardown:
        _released_at_teardown.add(app)
        request_tearing_down.connect(_release_at_teardown, app, weak=False)
    return held


def release_held_lock(session: object) -> None:
    """Release the lock ``session`` holds, if any (after its commit). Never raises."""
    held = getattr(session, "held_lock", None)
    if held is not None:
        session.held_lock = None  # type: ignore[attr-defined]
        held.release()


# The apps whose requests have taken a lock: only those pay for the teardown hook (a
# teardown_request function costs every request of the app about 2 µs, even when unused).
_released_at_teardown: weakref.WeakSet[Flask] = weakref.WeakSet()


def _release_at_teardown(sender: Flask, **extra: object) -> None:
    """A lock still held when the request ends (``save_session`` never ran) is released:
    a receiver of Flask's ``request_tearing_down``, connected for an app when one of its
    requests first takes a lock."""
    if has_request_context():  # _session: the session property would open one
        release_held_lock(getattr(request_ctx, "_session", None))


def session_locked(error: SessionLocked) -> tuple[str, int, dict[str, str]]:
    """The default handler ``Satchel`` registers: HTTP 503 with ``Retry-After: 1``.

    503, not 423 Locked: the client holds no lock (423 is WebDAV's answer to a
    client's own LOCK), did nothing wrong, and a retry will most likely succeed,
    which is what 503 with Retry-After says (RFC 9110, 15.6.4). Register your
    own handler for ``SessionLocked`` to replace it.
    """
    return _LOCKED_BODY, 503, {"Retry-After": _RETRY_AFTER,
                               "Content-Type": "text/plain; charset=utf-8"}


def cookie_mode_error(name: str) -> ConfigError:
    return ConfigError(
        f"@session_lock on view {name!r}: SATCHEL_STORE is 'cookie://', whose sessions live"
        " in the browser's cookie, which no server can lock; keep sessions server-side"
        " (e.g. SATCHEL_STORE='sqlite:///sessions.sqlite3') or remove @session_lock")


def check_locked_views(app: Flask, engine: object) -> None:
    """ConfigError if ``engine`` keeps sessions in cookies and ``app`` has a ``@session_lock``
    view (views added later are refused when they run)."""
    if not isinstance(engine, CookieEngine):
        return
    for endpoint, view in app.view_functions.items():
        if type(getattr(view, "satchel_lock", None)) is LockSpec:
            raise cookie_mode_error(endpoint)
