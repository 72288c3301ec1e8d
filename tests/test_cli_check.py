"""``flask satchel check``: one config per finding, and clean ones, through Flask's CLI runner."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask

from satchel import MemoryStore, Satchel
from satchel.settings import KNOWN_KEYS

CLEAN: dict[str, Any] = {
    "SECRET_KEY": "k" * 32,
    "SESSION_COOKIE_SECURE": True,
    "SATCHEL_IDLE_TIMEOUT": timedelta(hours=2),
    "SATCHEL_ABSOLUTE_TIMEOUT": timedelta(hours=12),
}


def check(store: Any = None, *, debug: bool = False, after_init: dict[str, Any] | None = None,
          **config: Any) -> Result:
    """``flask satchel check`` on an app with the clean config updated by ``config``;
    ``after_init`` is set once satchel is installed (keys init_app would refuse)."""
    app = Flask(__name__)
    app.config.update({**CLEAN, **config})
    Satchel(app, store=store if store is not None else MemoryStore())
    app.config.update(after_init or {})
    env = {"FLASK_DEBUG": "1" if debug else "0"}  # what `flask --debug satchel check` sets
    return app.test_cli_runner().invoke(args=["satchel", "check"], env=env)


@pytest.mark.parametrize("store", [None, "cookie://", "memory://"])
def test_a_clean_config_has_no_findings(store: Any) -> None:
    result = check(store)
    assert (result.exit_code, result.output) == (0, "no findings\n")


def test_an_insecure_cookie_is_fine_in_debug_mode() -> None:
    result = check(SESSION_COOKIE_SECURE=False, debug=True)
    assert (result.exit_code, result.output) == (0, "no findings\n")


def test_an_idle_timeout_of_one_day_is_fine() -> None:
    result = check(SATCHEL_IDLE_TIMEOUT=86400)
    assert (result.exit_code, result.output) == (0, "no findings\n")


ONE_FINDING: list[tuple[dict[str, Any], str]] = [
    ({"SESSION_COOKIE_SECURE": False}, "SESSION_COOKIE_SECURE is off"),
    ({"SESSION_COOKIE_HTTPONLY": False}, "SESSION_COOKIE_HTTPONLY is off"),
    ({"SESSION_COOKIE_SAMESITE": "None", "SESSION_COOKIE_SECURE": False, "debug": True},
     "SESSION_COOKIE_SAMESITE 'None' without SESSION_COOKIE_SECURE"),
    ({"SESSION_COOKIE_PARTITIONED": True, "SESSION_COOKIE_SECURE": False, "debug": True},
     "SESSION_COOKIE_PARTITIONED without SESSION_COOKIE_SECURE"),
    ({"SESSION_COOKIE_NAME": "__Host-session", "SESSION_COOKIE_DOMAIN": "example.com"},
     "cookie name '__Host-session' with SESSION_COOKIE_DOMAIN 'example.com'"),
    ({"SESSION_COOKIE_NAME": "__Host-session", "SESSION_COOKIE_PATH": "/app"},
     "cookie name '__Host-session' with path '/app'"),
    ({"SESSION_COOKIE_NAME": "__Host-session", "APPLICATION_ROOT": "/app"},
     "cookie name '__Host-session' with path '/app'"),
    ({"SESSION_COOKIE_NAME": "__Host-session", "SESSION_COOKIE_SECURE": False, "debug": True},
     "cookie name '__Host-session' without SESSION_COOKIE_SECURE"),
    ({"SESSION_COOKIE_NAME": "__Secure-session", "SESSION_COOKIE_SECURE": False, "debug": True},
     "cookie name '__Secure-session' without SESSION_COOKIE_SECURE"),
    ({"SESSION_COOKIE_NAME": "__host-session", "SESSION_COOKIE_DOMAIN": "example.com"},
     "cookie name '__host-session' with SESSION_COOKIE_DOMAIN 'example.com'"),
    ({"SECRET_KEY": "short"}, "SECRET_KEY (5 bytes) is shorter than 32 bytes"),
    ({"SECRET_KEY": "é" * 15}, "SECRET_KEY (30 bytes) is shorter than 32 bytes"),
    ({"SECRET_KEY_FALLBACKS": ["o" * 32, b"old"]},
     "SECRET_KEY_FALLBACKS[1] (3 bytes) is shorter than 32 bytes"),
    ({"SECRET_KEY": None}, "SECRET_KEY is not set"),
    ({"after_init": {"SECRET_KEY": 123456}}, "SECRET_KEY is an int"),
    ({"after_init": {"SECRET_KEY_FALLBACKS": "old key"}}, "SECRET_KEY_FALLBACKS is a str"),
    ({"SATCHEL_IDLE_TIMEOUT": timedelta(days=2)},
     "idle timeout of 2 days (SATCHEL_IDLE_TIMEOUT)"),
    ({"SATCHEL_IDLE_TIMEOUT": None},
     "idle timeout of 31 days (PERMANENT_SESSION_LIFETIME, as SATCHEL_IDLE_TIMEOUT is not set)"),
    ({"SATCHEL_IDLE_TIMEOUT": None, "PERMANENT_SESSION_LIFETIME": 90000},
     "idle timeout of 1 day, 1:00:00 (PERMANENT_SESSION_LIFETIME"),
    ({"after_init": {"SATCHEL_IDLE_TIMEOUT": "2h"}}, "SATCHEL_IDLE_TIMEOUT is unusable"),
    ({"SATCHEL_ABSOLUTE_TIMEOUT": None}, "SATCHEL_ABSOLUTE_TIMEOUT is not set"),
    ({"after_init": {"SATCHEL_ABSOLUTE_TIMEOUT": -1}}, "SATCHEL_ABSOLUTE_TIMEOUT is unusable"),
    ({"SATCHEL_IDLE_TIMOUT": 900}, "SATCHEL_IDLE_TIMOUT is not a key satchel reads"),
    ({"SATCHEL_IDLETIMEOUT": 900}, "fix: rename it to SATCHEL_IDLE_TIMEOUT"),
    ({"SATCHEL_STORE_TIMEOUTS": 5}, "fix: rename it to SATCHEL_STORE_TIMEOUT"),
    ({"satchel_prefetch": False}, "(config keys are case-sensitive); fix: rename it to"
                                  " SATCHEL_PREFETCH"),
    ({"SATCHEL_COLOUR": "blue"}, "SATCHEL_COLOUR is not a key satchel reads"),
]


@pytest.mark.parametrize(("config", "expected"), ONE_FINDING,
                         ids=[expected for _, expected in ONE_FINDING])
def test_each_finding_alone(config: dict[str, Any], expected: str) -> None:
    result = check(**config)
    assert result.exit_code == 1, result.output
    assert len(result.output.splitlines()) == 1, result.output
    assert expected in result.output
    assert "; fix: " in result.output  # what, why, and the fix, on one line


def test_an_unknown_key_without_a_close_match_lists_the_known_ones() -> None:
    result = check(SATCHEL_COLOUR="blue")
    assert "SATCHEL_USER_KEY" in result.output
    assert "rename it" not in result.output


def test_a_secret_key_is_never_printed() -> None:
    result = check(SECRET_KEY="hunter2", SECRET_KEY_FALLBACKS=["swordfish"])
    assert "hunter2" not in result.output
    assert "swordfish" not in result.output
    assert len(result.output.splitlines()) == 2


def test_findings_add_up_one_line_each() -> None:
    result = check(SESSION_COOKIE_SECURE=False, SECRET_KEY="short", SATCHEL_ABSOLUTE_TIMEOUT=None,
                   SESSION_COOKIE_NAME="__Host-s", SESSION_COOKIE_DOMAIN="example.com")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 4  # Secure off, the __Host- prefix (one line for all it breaks), ...
    assert "without SESSION_COOKIE_SECURE" in lines[1]
    assert "with SESSION_COOKIE_DOMAIN 'example.com'" in lines[1]


def test_the_known_keys_are_every_key_satchel_reads() -> None:
    source = Path(__file__).parent.parent / "src" / "satchel"
    read = {name for path in source.rglob("*.py") if path.name != "settings.py"
            for name in re.findall(r"\bSATCHEL_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())}
    assert read == set(KNOWN_KEYS)
    assert list(KNOWN_KEYS) == sorted(KNOWN_KEYS)
