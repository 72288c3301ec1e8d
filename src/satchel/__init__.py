"""satchel: correct, safe and fast sessions for Flask.

Every store imports from here: ``from satchel import RedisStore, PostgresStore, SQLiteStore,
MemoryStore, SealedCookies``. ``RedisStore`` and ``PostgresStore`` are loaded on first use
(PEP 562), so ``import satchel`` never imports redis-py or psycopg; without its driver, using
one raises ImportError naming the command that installs it.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from satchel.codec import Tag, TaggedCodec
from satchel.cookie_mode import SealedCookies
from satchel.errors import (
    CodecError,
    ConfigError,
    NotSupported,
    SatchelError,
    SessionLocked,
    SessionTooLarge,
    StoreUnavailable,
)
from satchel.flask import Satchel, SatchelSessionInterface
from satchel.flask.accounts import ListedSession
from satchel.flask.lock import session_lock
from satchel.lifetime import Lifetime
from satchel.session import Session
from satchel.store import Lockable, Patch, Purgeable, Record, Store
from satchel.stores.memory import MemoryStore
from satchel.stores.sqlite import SQLiteStore

if TYPE_CHECKING:
    from satchel.stores.postgres import PostgresStore as PostgresStore
    from satchel.stores.redis import RedisStore as RedisStore

try:
    __version__: str = version("satchel")
except PackageNotFoundError:  # a checkout on the path that was never installed
    __version__ = "0+unknown"

# The stores whose driver is an extra: name -> the module that defines it, imported on first use.
_LAZY = {
    "PostgresStore": "satchel.stores.postgres",
    "RedisStore": "satchel.stores.redis",
}


def __getattr__(name: str) -> Any:
    """``satchel.RedisStore`` and ``satchel.PostgresStore``, imported on first use.

    Raises ImportError naming the install command when the store's driver is missing, and
    AttributeError for a name satchel does not have.
    """
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'satchel' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


# The lazy stores are left out: `from satchel import *` must work without their drivers.
__all__ = [
    "CodecError",
    "ConfigError",
    "Lifetime",
    "ListedSession",
    "Lockable",
    "MemoryStore",
    "NotSupported",
    "Patch",
    "Purgeable",
    "Record",
    "SQLiteStore",
    "Satchel",
    "SatchelError",
    "SatchelSessionInterface",
    "SealedCookies",
    "Session",
    "SessionLocked",
    "SessionTooLarge",
    "Store",
    "StoreUnavailable",
    "Tag",
    "TaggedCodec",
    "session_lock",
]
