"""Fixtures several test modules share. A module that defines its own of the same name keeps
its own (pytest's nearest definition wins)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """A clock the test moves by hand."""
    return FakeClock()


@pytest.fixture
def cleanup() -> Iterator[ExitStack]:
    """An ExitStack closed at the end of the test (stores, servers, apps)."""
    with ExitStack() as stack:
        yield stack


@pytest.fixture
def caplog_info(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """``caplog`` recording INFO and up from ``satchel`` and ``satchel.security``."""
    caplog.set_level(logging.INFO, logger="satchel")
    caplog.set_level(logging.INFO, logger="satchel.security")
    return caplog
