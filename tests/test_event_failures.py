"""satchel's ``store_error`` signal, and receivers that raise, through real Flask apps."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from satchel import signals
from satchel.errors import StoreUnavailable
from satchel.ids import fingerprint
from tests.clock import FakeClock
from tests.event_apps import assert_never_named, build, listen
from tests.test_on_store_error import build_app, down_store, signed_cookie


@pytest.mark.parametrize("on_error", ["fail", "anonymous"])
def test_a_store_error_is_sent_once_with_the_operation(
        on_error: str, tmp_path: Path, cleanup: ExitStack,
        caplog_info: pytest.LogCaptureFixture) -> None:
    store = cleanup.enter_context(down_store("sqlite", tmp_path))
    app = build_app(store, SATCHEL_ON_STORE_ERROR=on_error)
    heard = listen(app, cleanup)
    client = app.test_client()
    assert client.post("/set/x").status_code == (503 if on_error == "fail" else 200)
    cookie = signed_cookie(app)
    client.set_cookie("session", cookie)
    assert client.get("/get").status_code == (503 if on_error == "fail" else 200)
    assert [(name, kwargs["operation"], kwargs["fingerprint"]) for name, kwargs in heard] == [
        ("store_error", "save", None),
        ("store_error", "load", fingerprint(cookie.split(".")[0]))]
    assert all(isinstance(kwargs["error"], StoreUnavailable) for _, kwargs in heard)
    errors = [r for r in caplog_info.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2 and all(r.name == "satchel" for r in errors)  # one line each
    assert_never_named(heard, caplog_info, cookie)


def test_a_store_error_from_the_app_is_sent_by_the_503_handler(
        clock: FakeClock, tmp_path: Path, cleanup: ExitStack,
        caplog_info: pytest.LogCaptureFixture) -> None:
    app, heard = build("memory", clock, tmp_path, cleanup)

    @app.get("/boom")
    def boom() -> str:
        raise StoreUnavailable("the session store at 127.0.0.1 is down")

    assert app.test_client().get("/boom").status_code == 503
    assert [(name, kwargs["operation"]) for name, kwargs in heard] == [("store_error", "request")]
    assert len([r for r in caplog_info.records if r.levelno >= logging.ERROR]) == 1


def test_a_receiver_that_raises_fails_the_request_as_flasks_own_signals_do(
        clock: FakeClock, tmp_path: Path, cleanup: ExitStack,
        caplog: pytest.LogCaptureFixture) -> None:
    app, _ = build("memory", clock, tmp_path, cleanup)
    app.testing = False

    def broken(sender: Flask, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    cleanup.enter_context(signals.session_created.connected_to(broken, sender=app))
    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/set/a/1")
    assert response.status_code == 500
    assert any(r.exc_info and "receiver bug" in str(r.exc_info[1]) for r in caplog.records)
