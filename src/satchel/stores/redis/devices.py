"""A session's device description as RedisStore keeps it: packed, where that is shorter.

A recorded device is a user agent and a client address, ``"<agent> (<address>)"`` (see
:func:`satchel.users.describe_device`). Kept as text, a browser's user agent alone takes
100-140 bytes of every session's record, more than a typical session's data. Packed:

- the address as its 4 (IPv4) or 16 (IPv6) bytes, not as text;
- the user agent raw-deflated against :data:`DICTIONARY`, a preset dictionary of the
  phrases that common user agents share (zlib's ``zdict``, RFC 1950 section 2.2): a desktop
  Chrome's 111-character user agent takes 9 bytes, Werkzeug's test client's 5.

Layout (the device's bytes in the record, after their length; see
:mod:`~satchel.stores.redis.record`)::

    text      the device, UTF-8                            (first byte below 0xF8)
    packed    1 byte: 0xF8 | DEFLATED (4) | address kind (0 none, 1 IPv4, 2 IPv6),
              the address (0, 4 or 16 bytes), the user agent (UTF-8, or deflated)

No UTF-8 text starts with a byte from 0xF8 (RFC 3629 section 3: 0xF8-0xFF never occur), so
the first byte tells the two apart. A device is packed only when that is shorter and
unpacks to exactly the same string (an address that is not in its canonical form, an IPv6
zone, any other shape stays text). Lua never looks inside a device: the scripts move its
bytes as they are.

:data:`DICTIONARY` is part of the stored format: changing one byte of it would garble every
packed device already stored. A new dictionary needs a new first byte.
"""

from __future__ import annotations

import ipaddress
import zlib

from satchel.store import DEVICE_MAX

PACKED = 0xF8
DEFLATED = 4
_KINDS = {1: (ipaddress.IPv4Address, 4), 2: (ipaddress.IPv6Address, 16)}
_WINDOW = -11
"""Raw deflate (no header, no checksum) with a 2 KiB window: the dictionary fits, and
setting up a compressor costs a few µs instead of the default window's 60-140 µs."""
_MOST = DEVICE_MAX * 4
"""Bytes the longest device's UTF-8 can take: inflating never produces more."""

DICTIONARY = (
    b"Go-http-client/1.1 Java/ node-fetch axios/ PostmanRuntime/7. okhttp/4. Dalvik/2.1.0 ("
    b"Linux; U; Android CFNetwork/ Darwin/ python-httpx/ python-requests/2. curl/8. Wget/1."
    b" Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html) bingbot/2.0"
    b" OPR/1 YaBrowser/ SamsungBrowser/2 CriOS/1 FxiOS/1 Mozilla/5.0 (iPad; CPU OS 17_ like"
    b" Mac OS X) Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:140.0) Gecko/20100101"
    b" Firefox/140.0 Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:140.0) Gecko/20100101"
    b" Firefox/140.0 Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
    b" Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
    b" Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML,"
    b" like Gecko) Version/18.0 Mobile/15E148 Safari/604.1 Mozilla/5.0 (Macintosh; Intel Mac"
    b" OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15"
    b" Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/1"
    b"30.0.0.0 Mobile Safari/537.36 Werkzeug/3.1. Mozilla/5.0 (X11; Linux x86_64)"
    b" AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/1"
    b" Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    b" Chrome/130.0.0.0 Safari/537.36"
)
"""The preset dictionary of packed user agents (frozen: see the module's docstring).
Phrases nearer its end are cheaper to refer to, so the commonest come last."""

_unpacked: dict[bytes, str] = {}
"""Recently unpacked devices: a session's device is read on each of its requests, and
inflating one costs a few µs. Emptied when it holds :data:`_CACHED` entries."""
_CACHED = 1024


def pack(device: str) -> bytes:
    """The stored bytes of ``device`` (already cut to :data:`~satchel.store.DEVICE_MAX`
    characters): packed when that is shorter and gives ``device`` back, else its UTF-8.

    Raises UnicodeEncodeError for a string that is not valid Unicode (a lone surrogate)."""
    text = device.encode()
    agent, address = _split(device)
    if address is None and len(text) < 8:  # nothing to gain: deflate's few bytes at best
        return text
    first, body = PACKED, b""
    if address is not None:
        first |= 1 if address.version == 4 else 2
        body = address.packed
    squeezed = agent.encode()
    if squeezed:
        deflate = zlib.compressobj(9, zlib.DEFLATED, _WINDOW, 2, zlib.Z_DEFAULT_STRATEGY,
                                   DICTIONARY)
        deflated = deflate.compress(squeezed) + deflate.flush()
        if len(deflated) < len(squeezed):
            first |= DEFLATED
            squeezed = deflated
    packed = bytes((first,)) + body + squeezed
    if len(packed) >= len(text) or _unpack(packed) != device:
        return text
    return packed


def unpack(data: bytes) -> str:
    """The device ``data`` (what :func:`pack` gave) stands for.

    Raises ValueError for bytes that are neither text nor a packed device."""
    if not data or data[0] < PACKED:
        return data.decode()
    device = _unpacked.get(data)
    if device is None:
        device = _unpack(data)
        if len(_unpacked) >= _CACHED:
            _unpacked.clear()
        _unpacked[bytes(data)] = device
    return device


def _split(device: str) -> tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address | None]:
    """``device``'s user agent and address, if it ends in ``(<address>)``; else itself and
    None."""
    if device.endswith(")") and (at := device.rfind("(")) >= 0:
        try:
            address = ipaddress.ip_address(device[at + 1:-1])
        except ValueError:
            return device, None
        return device[:at].removesuffix(" "), address
    return device, None


def _unpack(data: bytes) -> str:
    first = data[0]
    kind = first & 3
    at = 1
    address = ""
    if kind:
        if kind not in _KINDS:
            raise ValueError(f"unknown device address kind {kind}")
        build, size = _KINDS[kind]
        if len(data) < at + size:
            raise ValueError("device cut short")
        address = str(build(data[at:at + size]))
        at += size
    agent = data[at:]
    if first & DEFLATED:
        inflate = zlib.decompressobj(_WINDOW, zdict=DICTIONARY)
        try:
            agent = inflate.decompress(agent, _MOST)
        except zlib.error as err:
            raise ValueError(f"device does not inflate ({err})") from None
        if not inflate.eof or inflate.unconsumed_tail or inflate.unused_data:
            raise ValueError("device does not inflate to its end")
    text = agent.decode()
    if not address:
        return text
    return f"{text} ({address})" if text else f"({address})"
