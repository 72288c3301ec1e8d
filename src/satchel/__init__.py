"""satchel: correct, safe and fast sessions for Flask."""

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
