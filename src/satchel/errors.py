"""satchel's own exceptions. Each names the value at fault and the fix."""

from __future__ import annotations


class SatchelError(Exception):
    """Base class of every exception satchel raises on purpose."""


class ConfigError(SatchelError, ValueError):
    """A configuration value is unusable; the message names it and the fix."""


class StoreUnavailable(SatchelError):
    """The store could not be reached; raised from the driver's error."""


class CodecError(SatchelError, TypeError):
    """A session value cannot be encoded, or stored bytes cannot be decoded."""
