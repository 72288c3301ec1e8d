"""Apps and listeners for the tests of satchel's lifecycle signals (``satchel.signals``)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session
from flask.testing import FlaskClient

from satchel import signals
from satchel.ids import storage_key
from tests.clock import FakeClock
from tests.modes import mode_app

NAMES = ("session_created", "session_rotated", "session_destroyed", "session_expired",
         "session_rejected", "session_revoked", "store_error")
HOUR = 3600.0


class Heard(list[tuple[str, dict[str, Any]]]):
    """What satchel's signals sent for one app, in order: (signal name, keyword arguments)."""

    def names(self) -> list[str]:
        return [name for name, _ in self]


def add_routes(app: Flask) -> Flask:
    @app.get("/set/<key>/<value>")
    def set_value(key: str, value: str) -> str:
        session[key] = value
        return "ok"

    @app.get("/get/<key>")
    def get_value(key: str) -> str:
        return str(session.get(key, "-"))

    @app.get("/pop/<key>")
    def pop(key: str) -> str:
        session.pop(key, None)
        return "ok"

    @app.get("/regenerate")
    def regenerate() -> str:
        session.regenerate()  # type: ignore[attr-defined]
        return "ok"

    @app.get("/destroy")
    def destroy() -> str:
        session.destroy()  # type: ignore[attr-defined]
        return "ok"

    @app.get("/empty-and-regenerate")
    def empty_and_regenerate() -> str:
        session.clear()
        session.regenerate()  # type: ignore[attr-defined]
        return "ok"

    @app.get("/nothing")
    def nothing() -> str:
        return "nothing"

    return app


def listen(app: Flask, cleanup: ExitStack) -> Heard:
    heard = Heard()
    for name in NAMES:
        def receive(sender: Any, _name: str = name, **kwargs: Any) -> None:
            assert sender is app
            heard.append((_name, kwargs))

        cleanup.enter_context(getattr(signals, name).connected_to(receive, sender=app))
    return heard


def build(mode: str, clock: FakeClock, tmp_path: Path, cleanup: ExitStack,
          **config: Any) -> tuple[Flask, Heard]:
    app = add_routes(mode_app(mode, clock, tmp_path, cleanup, **config))
    return app, listen(app, cleanup)


def sid_of(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value.split(".")[0]


def cookie_value(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def assert_never_named(heard: Heard, caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    """No id, storage key or cookie among the receivers' arguments or the log lines."""
    seen = repr(list(heard)) + caplog.text + repr([r.args for r in caplog.records])
    for secret in secrets:
        for value in (secret, storage_key(secret.split(".")[0])):
            assert value not in seen
