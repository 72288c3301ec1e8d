"""Version 1 of RedisStore's record (8-byte doubles for the times), as satchel wrote it
before version 2: the tests plant such records to check they are still read and updated.
Not collected on its own."""

from __future__ import annotations

import struct

from satchel.store import Record
from satchel.stores.redis.record import HAS_DEVICE, HAS_ULIVE, HAS_USER, PERM, field, length


def encode_v1(record: Record, ulive: float | None = None) -> bytes:
    """``record`` as version 1 wrote it (``record.device`` as its device)."""
    flags = PERM if record.permanent else 0
    tail = []
    if ulive is not None:
        flags |= HAS_ULIVE
        tail.append(struct.pack(">d", ulive))
    if record.user is not None:
        flags |= HAS_USER
        tail += (length(len(record.user.encode())), record.user.encode())
    if record.device is not None:
        flags |= HAS_DEVICE
        tail += (length(len(record.device.encode())), record.device.encode())
    tail += [field(name.encode(), value) for name, value in record.fields.items()]
    return struct.pack(">BBddd", 1, flags, record.created_at, record.last_seen,
                       record.expires_at) + b"".join(tail)
