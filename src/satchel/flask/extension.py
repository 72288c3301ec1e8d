"""The ``Satchel`` extension: resolves the store and installs the session interface."""

from __future__ import annotations

import os

from flask import Flask

from satchel.codec import TaggedCodec, default_codec
from satchel.cookie_mode import CookieEngine, SealedCookies
from satchel.engine import Engine
from satchel.errors import ConfigError, SessionLocked, StoreUnavailable
from satchel.events import Events
from satchel.flask.accounts import Accounts, handle_maker
from satchel.flask.interface import SatchelSessionInterface
from satchel.flask.lock import check_locked_views, session_locked
from satchel.flask.opening import no_key
from satchel.flask.responses import serialize_sessions, store_unavailable
from satchel.keys import as_bytes, fallback_bytes
from satchel.lifetime import Clock, seconds, system_clock
from satchel.store import Store
from satchel.tombstone import DEFAULT_GRACE
from satchel.urls import DEFAULT_SQLITE_NAME, DEFAULT_STORE_TIMEOUT, store_from_url
from satchel.users import DEFAULT_USER_KEY, UserRules

ON_STORE_ERROR = ("fail", "anonymous")


def on_store_error(app: Flask) -> str:
    """``SATCHEL_ON_STORE_ERROR``: "fail" (the default; also for None) or "anonymous".

    Raises :class:`ConfigError` naming the key and the allowed values for anything else.
    """
    value = app.config.get("SATCHEL_ON_STORE_ERROR")
    if value is None:
        return "fail"
    if type(value) is not str or value not in ON_STORE_ERROR:
        raise ConfigError(f"SATCHEL_ON_STORE_ERROR {value!r}: expected 'fail' (HTTP 503 while"
                          " the session store is unreachable, the default) or 'anonymous'"
                          " (serve an empty session that is never saved)")
    return value


def check_keys(app: Flask) -> None:
    """ConfigError for an unusable ``SECRET_KEY`` (an unset one is allowed) or fallback."""
    fallback_bytes(app.config.get("SECRET_KEY_FALLBACKS"))
    if not no_key(app.config["SECRET_KEY"]):
        as_bytes(app.config["SECRET_KEY"])


def store_timeout(app: Flask) -> float:
    """``SATCHEL_STORE_TIMEOUT`` in seconds (a number or a timedelta; default 3).

    Raises ConfigError for a value that is not a positive duration.
    """
    value = seconds(app.config.get("SATCHEL_STORE_TIMEOUT"), name="SATCHEL_STORE_TIMEOUT")
    if value is None:
        return DEFAULT_STORE_TIMEOUT
    if not 0 < value < 86400:  # NaN and infinity too
        raise ConfigError(f"SATCHEL_STORE_TIMEOUT {app.config['SATCHEL_STORE_TIMEOUT']!r}: must"
                          " be above 0 and finite; give seconds (e.g. 3) or a timedelta")
    return value


def user_rules(app: Flask) -> UserRules:
    """``SATCHEL_USER_KEY`` (default ``"_user_id"``; None turns the user features off) and
    ``SATCHEL_MAX_SESSIONS_PER_USER`` (default None: no cap; else an int of at least 1).

    Raises ConfigError naming the key for anything else.
    """
    key = app.config.get("SATCHEL_USER_KEY", DEFAULT_USER_KEY)
    if key is not None and (type(key) is not str or not key):
        raise ConfigError(f"SATCHEL_USER_KEY {key!r}: give the session key that holds the"
                          " logged-in user (a non-empty str, such as 'user'), or None")
    cap = app.config.get("SATCHEL_MAX_SESSIONS_PER_USER")
    if cap is not None and (type(cap) is not int or cap < 1):
        raise ConfigError(f"SATCHEL_MAX_SESSIONS_PER_USER {cap!r}: give how many sessions one"
                          " user may have at once (an int, at least 1), or None for no cap")
    if cap is not None and key is None:
        raise ConfigError("SATCHEL_MAX_SESSIONS_PER_USER needs SATCHEL_USER_KEY: without a"
                          " user key, sessions have no user to count them by")
    return UserRules(key, cap)


def record_device(app: Flask) -> bool:
    """``SATCHEL_RECORD_DEVICE``: True (the default) or False; ConfigError otherwise."""
    value = app.config.get("SATCHEL_RECORD_DEVICE", True)
    if type(value) is not bool:
        raise ConfigError(f"SATCHEL_RECORD_DEVICE {value!r}: True (record each session's user"
                          " agent and client address, the default) or False")
    return value


class Satchel(Accounts):
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
        timeout, ``SATCHEL_ON_STORE_ERROR``, ``SATCHEL_USER_KEY``,
        ``SATCHEL_MAX_SESSIONS_PER_USER`` or ``SATCHEL_RECORD_DEVICE`` (each read here,
        once), or a key
        (``SECRET_KEY`` or ``SECRET_KEY_FALLBACKS`` not
        ``str``/``bytes``, empty, or fallbacks given as one ``str``). Logs, on
        ``satchel``, that sessions are disabled while ``SECRET_KEY`` is not set,
        and, on ``satchel.security``, keys shorter than 32 bytes.
        """
        for name in ("SATCHEL_IDLE_TIMEOUT", "SATCHEL_ABSOLUTE_TIMEOUT", "SATCHEL_GRACE_PERIOD",
                     "SATCHEL_STORE_TIMEOUT"):
            try:
                seconds(app.config.get(name), name=name)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"{name}: {err}") from err
        store_error = on_store_error(app)
        users = user_rules(app)
        devices = record_device(app)
        check_keys(app)  # before a store is opened for nothing
        store = self._resolve_store(app, store_timeout(app))
        engine: Engine | CookieEngine
        events = Events(app, handle_of=handle_maker(app))  # the app: the signals' sender
        if isinstance(store, SealedCookies):
            engine = CookieEngine(store, codec=self.codec, clock=self.clock, events=events)
        else:
            grace = seconds(app.config.get("SATCHEL_GRACE_PERIOD"), name="SATCHEL_GRACE_PERIOD")
            engine = Engine(store, codec=self.codec, clock=self.clock,
                            grace=DEFAULT_GRACE if grace is None else grace, users=users,
                            events=events)
        check_locked_views(app, engine)
        interface = SatchelSessionInterface(engine, on_store_error=store_error,
                                            record_device=devices)
        interface.check_config(app)
        app.session_interface = interface
        serialize_sessions(app)
        app.extensions["satchel"] = self
        handlers = app.error_handler_spec[None][None]
        if StoreUnavailable not in handlers:
            app.register_error_handler(StoreUnavailable, store_unavailable)
        if SessionLocked not in handlers:
            app.register_error_handler(SessionLocked, session_locked)
        from satchel.cli import satchel_cli

        if "satchel" not in app.cli.commands:
            app.cli.add_command(satchel_cli)

    def _resolve_store(self, app: Flask, timeout: float) -> Store | SealedCookies:
        configured = self.store if self.store is not None else app.config.get("SATCHEL_STORE")
        if configured is None:
            return store_from_url(f"sqlite:///{DEFAULT_SQLITE_NAME}", base_dir=app.instance_path,
                                  clock=self.clock)
        if isinstance(configured, str):
            return store_from_url(configured, base_dir=app.instance_path, clock=self.clock,
                                  timeout=timeout)
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
