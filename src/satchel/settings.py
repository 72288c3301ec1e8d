"""The config keys satchel reads, listed in one place.

``flask satchel check`` flags a ``SATCHEL_*`` key that is not here (a typo is otherwise
silently ignored: ``SATCHEL_IDLE_TIMOUT = 900`` leaves the default idle timeout);
``tests/test_cli_check.py`` fails when a key read anywhere under ``src/satchel`` is missing
from :data:`KNOWN_KEYS`, so add a new key here when you add it there.
"""

from __future__ import annotations

PREFIX = "SATCHEL_"

KNOWN_KEYS: tuple[str, ...] = (
    "SATCHEL_ABSOLUTE_TIMEOUT",
    "SATCHEL_GRACE_PERIOD",
    "SATCHEL_IDLE_TIMEOUT",
    "SATCHEL_MAX_SESSIONS_PER_USER",
    "SATCHEL_ON_STORE_ERROR",
    "SATCHEL_PREFETCH",
    "SATCHEL_READ_FLASK_COOKIES",
    "SATCHEL_RECORD_DEVICE",
    "SATCHEL_STORE",
    "SATCHEL_STORE_TIMEOUT",
    "SATCHEL_USER_KEY",
)
"""Every ``SATCHEL_*`` config key satchel reads, sorted."""
