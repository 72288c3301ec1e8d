"""What satchel adds to Flask's responses: session headers, the 503, JSON for sessions."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, has_request_context
from flask.globals import request_ctx
from flask.sessions import SessionInterface
from werkzeug.datastructures import Headers

from satchel.cookie_header import CookieTemplate
from satchel.errors import StoreUnavailable
from satchel.events import Events
from satchel.session import Session

_UNAVAILABLE_BODY = b"Service Unavailable: the session store cannot be reached. Try again shortly."
_RETRY_AFTER = "5"
_VARY = ("Vary", "Cookie")
_PRIVATE = ("Cache-Control", "private")


def become_unavailable(response: Response, app: Flask | None = None,
                       error: StoreUnavailable | None = None) -> None:
    """Turn ``response`` into a 503: the session change it reports was not saved.

    If ``app`` has its own handler for StoreUnavailable (a styled error page), the 503 is
    what that handler makes of ``error``: status, body and headers (the response's cookies
    are dropped, none of them was meant for this answer); else satchel's plain-text 503.
    """
    handler = None if app is None else app.error_handler_spec.get(None, {}).get(
        None, {}).get(StoreUnavailable)
    if handler is not None and handler is not store_unavailable and error is not None:
        own = app.make_response(handler(error))  # type: ignore[union-attr,arg-type]
        response.status_code = 503 if own.status_code < 500 else own.status_code
        response.set_data(own.get_data())
        response.headers.clear()
        response.headers.extend(own.headers)
        response.headers.setdefault("Retry-After", _RETRY_AFTER)
        response.headers.pop("Set-Cookie", None)
        return
    response.status_code = 503
    response.set_data(_UNAVAILABLE_BODY)
    response.mimetype = "text/plain"
    response.headers["Retry-After"] = _RETRY_AFTER
    response.headers.pop("Location", None)


def store_unavailable(error: StoreUnavailable) -> tuple[str, int, dict[str, str]]:
    """The default handler ``Satchel`` registers: HTTP 503, nothing written.

    Sends the ``store_error`` event (operation ``"request"``) for an error the
    session's load has not reported already: one raised by the app's own
    store calls. Register your own handler for ``StoreUnavailable`` to replace it.
    """
    session = getattr(request_ctx, "_session", None) if has_request_context() else None
    if not (isinstance(session, Session) and session.load_failed):  # reported by the load
        events = getattr(getattr(current_app.session_interface, "engine", None), "events", None)
        sid = session.sid if isinstance(session, Session) else None
        (events if isinstance(events, Events) else Events()).store_error(error, "request", sid)
    return _UNAVAILABLE_BODY.decode(), 503, {"Retry-After": _RETRY_AFTER,
                                            "Content-Type": "text/plain; charset=utf-8"}


def add_session_headers(response: Response, set_cookie: str | None) -> None:
    """``Vary: Cookie``; with ``set_cookie``, that header and ``Cache-Control: private``.

    What ``response.vary.add``, ``set_cookie`` and ``cache_control.private``
    do, in one pass over the headers instead of a parse per header. Raises
    ``ValueError`` for a ``set_cookie`` holding a newline, as Werkzeug does.

    Werkzeug's ``Headers.add`` checks each value for a newline with a regular
    expression (about a microsecond for a ``Set-Cookie``); the values here are
    checked with ``in`` instead and, on Werkzeug's own ``Headers``, appended
    to its list as ``add`` would (another ``Headers`` class gets ``add``).
    """
    headers = response.headers
    vary = cache_control = None
    for key, value in headers:
        size = len(key)  # lower() only the names that can match
        if size == 4 and key.lower() == "vary":
            vary = value
        elif size == 13 and key.lower() == "cache-control":
            cache_control = value
    # Werkzeug's own list, if it is still where Werkzeug 3.1 keeps it; else ``add``.
    items = getattr(headers, "_list", None) if type(headers) is Headers else None
    if type(items) is not list:
        items = None
    if vary is None:
        if items is not None:
            items.append(_VARY)
        else:
            headers.add("Vary", "Cookie")
    elif vary != "Cookie":
        response.vary.add("Cookie")
    if set_cookie is None:
        return
    if items is None or "\n" in set_cookie or "\r" in set_cookie:
        headers.add("Set-Cookie", set_cookie)  # ValueError for a newline
    else:
        items.append(("Set-Cookie", set_cookie))
    if cache_control is None:
        if items is not None:
            items.append(_PRIVATE)
        else:
            headers.add("Cache-Control", "private")
    else:
        response.cache_control.private = True


def serialize_sessions(app: Flask) -> None:
    """Let Flask's JSON provider serialize the session (``jsonify(session)``, ``|tojson``).

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


_TEMPLATE_CACHE_SIZE = 32
# Flask's getters of the Set-Cookie attributes, each a read of the config (Flask 3.1)
GETTERS = ("get_cookie_name", "get_cookie_domain", "get_cookie_path", "get_cookie_secure",
           "get_cookie_httponly", "get_cookie_samesite", "get_cookie_partitioned")


def cookie_template(interface: SessionInterface, app: Flask,
                    templates: dict[tuple[Any, ...], CookieTemplate],
                    flask_getters: bool) -> CookieTemplate:
    """The Set-Cookie template for the cookie attributes the config names now, from
    ``templates`` (the interface's cache, by attributes) or made and kept there.

    The attributes are what ``interface``'s ``get_cookie_*`` getters return; with
    ``flask_getters`` (no subclass overrides one), they are read from the config as
    Flask's own getters read them (seven method calls fewer per cookie sent).
    """
    if flask_getters:
        config = app.config
        attributes = (config["SESSION_COOKIE_NAME"], config["SESSION_COOKIE_DOMAIN"],
                      config["SESSION_COOKIE_PATH"] or config["APPLICATION_ROOT"],
                      config["SESSION_COOKIE_SECURE"], config["SESSION_COOKIE_HTTPONLY"],
                      config["SESSION_COOKIE_SAMESITE"], config["SESSION_COOKIE_PARTITIONED"])
    else:
        attributes = (interface.get_cookie_name(app), interface.get_cookie_domain(app),
                      interface.get_cookie_path(app), interface.get_cookie_secure(app),
                      interface.get_cookie_httponly(app), interface.get_cookie_samesite(app),
                      interface.get_cookie_partitioned(app))
    template = templates.get(attributes)
    if template is None:
        name, domain, path, secure, httponly, samesite, partitioned = attributes
        template = CookieTemplate(name, domain=domain, path=path, secure=secure,
                                  httponly=httponly, samesite=samesite, partitioned=partitioned)
        if len(templates) >= _TEMPLATE_CACHE_SIZE:
            templates.clear()
        templates[attributes] = template
    return template
